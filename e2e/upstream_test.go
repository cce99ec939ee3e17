package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// TestUpstreamSquid puts tetrascope in front of a real Squid (issue 3):
// Squid asks Basic credentials for the tetra host, refuses one domain and
// resolves names through the test's DNS server. tetrascope passes each
// client's own credentials through, so a 407 from Squid must reach curl as
// a 407, and every failure must be recorded with the right outcome, status,
// user and lasterror.
func TestUpstreamSquid(t *testing.T) {
	squidBin := requireSquid(t)
	requireTool(t, "curl")
	const (
		tetra    = "tetra-defs.amp.cisco.com"
		nxName   = "tetra-defs.eu.amp.cisco.com"
		denied   = "intake.amp.cisco.com" // an amp host, so its events are stored
		password = "Sq1d-Secret-77"
	)
	dir := t.TempDir()
	pki := newPKI(t, dir)
	srv := startTLSServer(t, pki, tlsServerOptions{})
	dns53 := startDNS53(t, []string{tetra, denied}, nil)
	htpasswd := filepath.Join(dir, "htpasswd")
	writeHtpasswd(t, htpasswd, "alice", password)
	sq := startSquid(t, squidBin, squidConfig{
		DNS: dns53.Addr, Htpasswd: htpasswd, SSLPorts: []int{srv.Port},
		AuthDomain: tetra, DenyDomain: denied,
	})

	p := newServeProc(t, needBinary(t), serveConfig{AllowPorts: []int{srv.Port}},
		"TETRASCOPE_UPSTREAM_URL=http://"+sq.Addr,
		"TETRASCOPE_UPSTREAM_PASS_CLIENT_CREDENTIALS=true")
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	api := newAPIClient(p.UIAddr())
	target := func(host string) string { return fmt.Sprintf("https://%s:%d/defs.bin", host, srv.Port) }

	cases := []struct {
		name     string
		host     string
		user     string // --proxy-user, empty for none
		connect  int    // status curl sees for its CONNECT
		outcomes []inspect.Outcome
		status   int
		code     uint32
		evUser   string
	}{
		{"right credentials", tetra, "alice:" + password, 200,
			[]inspect.Outcome{inspect.OK}, 200, 0, "alice"},
		{"wrong credentials", tetra, "alice:wrong", 407,
			[]inspect.Outcome{inspect.AuthFailed}, 407, 4294965196, "alice"},
		{"no credentials", tetra, "", 407,
			[]inspect.Outcome{inspect.AuthRequired}, 407, 0, ""},
		{"denied domain", denied, "", 403,
			[]inspect.Outcome{inspect.UpstreamRefused}, 403, 0, ""},
		// Squid 5 answers a name it cannot resolve with ERR_CANNOT_FORWARD
		// or ERR_DNS_FAIL depending on the path: either is what it says.
		{"unresolvable name", nxName, "", 0,
			[]inspect.Outcome{inspect.DNSFailure, inspect.Unreachable}, 0, 4294965187, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append(curlVia(p.ProxyAddr()), "--cacert", pki.CAFile)
			if tc.user != "" {
				args = append(args, "--proxy-user", tc.user, "--proxy-basic")
			}
			res := runCurl(t, append(args, target(tc.host))...)
			if tc.connect != 0 && res.ConnectCode != tc.connect && res.HTTPCode != tc.connect {
				t.Fatalf("curl saw %v, want CONNECT answered %d", res, tc.connect)
			}
			if tc.connect == 200 && (res.Exit != 0 || res.SizeDown != int64(len(body()))) {
				t.Fatalf("download through the chain failed: %v", res)
			}
			since := time.Now().Add(-2 * time.Second).UTC().Format(time.RFC3339Nano)
			ev, err := api.WaitEvent(url.Values{"host": {tc.host}, "since": {since}},
				func(e *inspect.Event) bool { return slices.Contains(tc.outcomes, e.Outcome) },
				10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if ev.ClientUser != tc.evUser || ev.Endpoint == "" {
				t.Fatalf("event %+v", ev.Event)
			}
			if tc.status != 0 && (ev.Status != tc.status || ev.UpstreamStatus != tc.status) {
				t.Fatalf("status %d, upstream_status %d, want %d", ev.Status, ev.UpstreamStatus,
					tc.status)
			}
			if ev.Endpoint == inspect.EndpointTetra && ev.LastError != tc.code {
				t.Fatalf("lasterror %d, want %d", ev.LastError, tc.code)
			}
			if tc.host == nxName && !strings.Contains(ev.Detail, "X-Squid-Error") {
				t.Fatalf("detail %q does not quote the upstream", ev.Detail)
			}
		})
	}

	t.Run("squid stopped", func(t *testing.T) {
		sq.Stop()
		res := runCurl(t, append(curlVia(p.ProxyAddr()), "--cacert", pki.CAFile,
			"--proxy-user", "alice:"+password, "--proxy-basic", target(tetra))...)
		if res.ConnectCode != 502 {
			t.Fatalf("curl saw %v, want 502", res)
		}
		ev, err := api.WaitEvent(url.Values{"outcome": {"upstream_unreachable"}, "limit": {"1"}},
			func(e *inspect.Event) bool { return true }, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Status != 502 || ev.LastError != 4294965187 || ev.ClientUser != "alice" {
			t.Fatalf("event %+v", ev.Event)
		}
	})

	// The password never reaches the API, the log or the database.
	resp, err := http.Get("http://" + p.UIAddr() + "/api/v1/events?limit=1000")
	if err != nil {
		t.Fatal(err)
	}
	apiBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if bytes.Contains(apiBody, []byte(password)) || !bytes.Contains(apiBody, []byte(`"alice"`)) {
		t.Errorf("the API answer shows the password, or lost the user: %.300s", apiBody)
	}
	p.Stop()
	for _, path := range []string{p.LogPath, p.cfg.DB} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, []byte(password)) {
			t.Errorf("the password is in %s", filepath.Base(path))
		}
	}
}
