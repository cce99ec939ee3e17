package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// serveFlags returns serve's flag set parsed from args, as cobra would.
func serveFlags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := newServe().Flags()
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

func TestDefaults(t *testing.T) {
	c, err := loadConfig(serveFlags(t))
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":3128" || c.UI.Listen != "127.0.0.1:8128" || c.DB != "tetrascope.db" ||
		len(c.Allow.ConnectPorts) != 1 || c.Allow.ConnectPorts[0] != 443 ||
		c.Timeouts.Idle.String() != "5m0s" || c.Events.Queue != 65536 || c.Sensor == "" {
		t.Fatalf("defaults %+v", c)
	}
	if len(c.Endpoints.Tetra) != 3 {
		t.Fatalf("tetra hosts %v", c.Endpoints.Tetra)
	}
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "c.yaml")
	// The file names only the keys it changes.
	if err := os.WriteFile(file, []byte("db: /tmp/x.db\ntimeouts:\n  idle: 1m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TETRASCOPE_TIMEOUTS_CONNECT", "3s")
	t.Setenv("TETRASCOPE_DB", "/tmp/env.db")
	c, err := loadConfig(serveFlags(t, "--config", file, "--listen", "127.0.0.1:9999",
		"--allow-ports", "443,8443", "--allow-ports", "9443", "--resolve", "a.test=127.0.0.1",
		"--resolve", "b.test=127.0.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case c.DB != "/tmp/env.db":
		t.Fatalf("db %q: the environment beats the file", c.DB)
	case c.Timeouts.Idle.String() != "1m0s":
		t.Fatalf("idle %v from the file", c.Timeouts.Idle)
	case c.Timeouts.Connect.String() != "3s":
		t.Fatalf("connect %v from the environment", c.Timeouts.Connect)
	case c.Timeouts.ReadHeader.String() != "30s":
		t.Fatalf("read_header %v: keys the file does not name keep their default",
			c.Timeouts.ReadHeader)
	case c.Listen != "127.0.0.1:9999":
		t.Fatalf("listen %q from the flag", c.Listen)
	case len(c.Allow.ConnectPorts) != 3:
		t.Fatalf("ports %v: lists take commas and repetition", c.Allow.ConnectPorts)
	case len(c.Resolve) != 2:
		t.Fatalf("resolve %v", c.Resolve)
	}
}

func TestEnvList(t *testing.T) {
	t.Setenv("TETRASCOPE_ALLOW_CONNECT_PORTS", "443,8443")
	c, err := loadConfig(serveFlags(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Allow.ConnectPorts) != 2 || c.Allow.ConnectPorts[1] != 8443 {
		t.Fatalf("ports %v", c.Allow.ConnectPorts)
	}
}

func TestBadConfigExits2(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string // in stderr
	}{
		{"bad port flag", []string{"serve", "--allow-ports", "70000"}, nil, "allow.connect_ports"},
		{"port not a number", []string{"serve", "--allow-ports", "https"}, nil, "allow-ports"},
		{"bad listen", []string{"serve", "--listen", "nowhere"}, nil, "listen"},
		{"bad client range", []string{"serve", "--allow-clients", "10.0.0.0/33"}, nil,
			"allow.clients"},
		{"bad resolve", []string{"serve", "--resolve", "host"}, nil, "resolve"},
		{"bad dns", []string{"serve", "--dns", "dns.example"}, nil, "dns.servers"},
		{"bad upstream", []string{"serve", "--upstream", "ftp://x"}, nil, "upstream.url"},
		{"bad duration env", []string{"serve"}, map[string]string{"TETRASCOPE_TIMEOUTS_IDLE": "soon"},
			"timeouts.idle"},
		{"negative duration", []string{"serve", "--config",
			write("neg.yaml", "timeouts:\n  connect: -1s\n")}, nil, "timeouts.connect"},
		{"unknown key", []string{"serve", "--config", write("typo.yaml", "listne: :1\n")}, nil,
			"listne"},
		{"not yaml", []string{"serve", "--config", write("bad.yaml", "a: [\n")}, nil, "YAML"},
		{"missing file", []string{"serve", "--config", filepath.Join(dir, "none.yaml")}, nil,
			"--config"},
		{"bad pattern", []string{"serve", "--config",
			write("pat.yaml", "endpoints:\n  tetra: [\"bad/host\"]\n")}, nil, "endpoints.tetra"},
		{"unknown flag", []string{"serve", "--nope"}, nil, "unknown flag"},
		{"unknown command", []string{"serf"}, nil, "unknown command"},
		{"bad explain", []string{"explain", "abc"}, nil, "lasterror"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out, errb bytes.Buffer
			if code := run(tc.args, &out, &errb); code != 2 {
				t.Fatalf("exit %d, want 2; stderr %q", code, errb.String())
			}
			if !strings.Contains(errb.String(), tc.want) {
				t.Fatalf("stderr %q does not name %q", errb.String(), tc.want)
			}
		})
	}
}

func TestExplain(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"explain", "-2103", "4294965196", "0xFFFFF7C3", "4294965150"},
		&out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{
		"4294965193 (signed -2103", "cannot connect to the proxy (documented)",
		"4294965196 (signed -2100", "proxy authentication failed",
		"4294965187 (signed -2109", "connected to the proxy, download failed",
		"4294965150 (signed -2146", "network or proxy class, unmapped",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("explain output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"version"}, &out, &errb); code != 0 ||
		!strings.HasPrefix(out.String(), "tetrascope ") {
		t.Fatalf("exit %d, %q", code, out.String())
	}
}

func TestRiskyConfigWarnings(t *testing.T) {
	cases := []struct {
		listen  string
		clients []string
		want    bool
	}{
		{":3128", []string{"10.0.0.0/8", "100.64.0.0/10", "fe80::/10"}, false},
		{"127.0.0.1:3128", []string{"0.0.0.0/0"}, false},
		{":3128", []string{"0.0.0.0/0"}, true},
		{"0.0.0.0:3128", []string{"10.0.0.0/7"}, true},
		{":3128", []string{"8.8.8.8"}, true},
	}
	for _, tc := range cases {
		open := !onLoopback(tc.listen) && !hasPrivateOnly(tc.clients)
		if open != tc.want {
			t.Errorf("listen %s clients %v: open proxy %v, want %v", tc.listen, tc.clients,
				open, tc.want)
		}
	}
}

func TestDurationNeedsUnit(t *testing.T) {
	file := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(file, []byte("timeouts:\n  connect: 300\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"serve", "--config", file}, &out, &errb); code != 2 ||
		!strings.Contains(errb.String(), "timeouts.connect") ||
		!strings.Contains(errb.String(), "no unit") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
	t.Setenv("TETRASCOPE_TIMEOUTS_IDLE", "soon")
	errb.Reset()
	if code := run([]string{"serve"}, &out, &errb); code != 2 ||
		!strings.Contains(errb.String(), `"soon"`) {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}
