package main

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tetrascope/tetrascope"
	"github.com/tetrascope/tetrascope/resolve"
)

// exitStatus is the status run gives for err: 0 for none, 2 for bad usage
// or configuration, 1 for anything else.
func exitStatus(err error) int {
	var ce *configError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ce) || isUsage(err):
		return 2
	}
	return 1
}

// FuzzConfig gives arbitrary YAML to --config. Loading it must never
// panic and must end as the program would before listening: exit 0 with a
// configuration that serve can use, or 2 with a message. Anything else
// (exit 1, a panic) means a bad file is not reported as one.
func FuzzConfig(f *testing.F) {
	for _, seed := range []string{
		string(tetrascope.DefaultConfig),
		"",
		"db: /tmp/x.db\ntimeouts:\n  idle: 1m\n",
		"timeouts:\n  idle: 5\n",
		"timeouts:\n  idle: -1s\n",
		"listen: :3128\nui:\n  listen: 0.0.0.0:8128\n  token: abc\n",
		"upstream:\n  url: http://u:p@proxy.example:3128\n  pass_client_credentials: true\n",
		"upstream:\n  url: ftp://x\n  password: a\n  password_file: /nonexistent\n",
		"allow:\n  clients: [\"::/0\", 10.0.0.0/33]\n  connect_ports: [443, 70000]\n",
		"resolve: [\"a.test=127.0.0.1\", \"bad\"]\ndns:\n  servers: [\"127.0.0.1:53\"]\n",
		"endpoints:\n  tetra: [\"*.example\", \"bad/host\"]\n",
		"limits:\n  max_header_bytes: 10\n  max_connections: 0\n",
		"events: {queue: 0, record_other: maybe}\n",
		"log: {level: loud}\n",
		"a: [\n",
		"listne: :1\n",
		"ui: 5\n",
		"sensor: [1, 2]\n",
		"x: &a [*a, *a]\n",
		"correlation:\n  expected_issuers: {}\n",
		"probe:\n  interval: 30s\n",
		"\xff\xfe",
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	path := filepath.Join(dir, "config.yaml")

	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := loadConfig(serveFlags(t, "--config", path))
		if code := exitStatus(err); code != 0 {
			if code != 2 {
				t.Fatalf("config %q: exit %d (%v), want 0 or 2", data, code, err)
			}
			if err.Error() == "" {
				t.Fatalf("config %q: exit 2 without a message", data)
			}
			return
		}

		// What serve derives from the configuration before it listens
		// must hold for every configuration that loaded.
		if err := c.Validate(); err != nil {
			t.Fatalf("config %q loaded but does not validate: %v", data, err)
		}
		if _, err := c.clientPrefixes(); err != nil {
			t.Fatalf("config %q: allow.clients: %v", data, err)
		}
		static, err := c.overrides()
		if err != nil {
			t.Fatalf("config %q: resolve: %v", data, err)
		}
		if _, err := c.catalog(); err != nil {
			t.Fatalf("config %q: endpoints: %v", data, err)
		}
		if _, err := resolve.New(static, c.DNS.Servers, c.Timeouts.Connect); err != nil {
			t.Fatalf("config %q: dns.servers: %v", data, err)
		}
		if _, err := c.upstream(); exitStatus(err) == 1 {
			t.Fatalf("config %q: upstream: %v is not reported as a bad configuration", data, err)
		}
	})
}
