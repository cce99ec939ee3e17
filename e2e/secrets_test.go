package e2e

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/probe/probetest"
)

// Secrets (issue 9, part 3): the page's token, the upstream proxy's
// password (from the environment, a password file, the upstream URL or the
// config file) and the credentials clients send never show in the log, the
// database, the API, the stream or /metrics. A config file or password
// file that others can read is warned about at start.

const (
	secretToken     = "ui-T0ken-e2e-7f3a9c"
	secretPassword  = "Upstr3am-Pa55-e2e-41d0"
	secretClient    = "Cl1ent-Pa55-e2e-88be"
	secretURLPass   = "Url-Pa55-e2e-2c6f"
	secretQuery     = "QueryT0k-e2e-9b17"
	upstreamAccount = "svc-tetra"
)

// secretForms are the secrets as they could leak: plain, and as the Basic
// credentials that carry them.
var secretForms = map[string]string{
	"ui.token":               secretToken,
	"upstream password":      secretPassword,
	"client password":        secretClient,
	"URL password":           secretURLPass,
	"query token":            secretQuery,
	"upstream Basic":         b64(upstreamAccount + ":" + secretPassword),
	"client Basic":           b64("alice:" + secretClient),
	"URL userinfo as Basic":  b64("urluser:" + secretURLPass),
	"upstream password, b64": b64(secretPassword),
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// leaks returns which secrets data shows.
func leaks(data []byte) []string {
	var out []string
	for name, s := range secretForms {
		if bytes.Contains(data, []byte(s)) {
			out = append(out, name)
		}
	}
	return out
}

// uiGet fetches path from the page's server with token (none when empty).
func uiGet(t *testing.T, uiAddr, path, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+uiAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// bearer adds the page's token to every request of an apiClient.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

func TestSecretsNeverShown(t *testing.T) {
	needBinary(t)
	requireTool(t, "curl")
	pki := newPKI(t, t.TempDir())
	srv := startTLSServer(t, pki, tlsServerOptions{})
	rev := startRevocationServer(t, pki)
	up := probetest.StartProxy(t, probetest.ProxyOptions{
		Hosts:    map[string]string{hostTetra: "127.0.0.1", hostCRL: "127.0.0.1"},
		Username: upstreamAccount, Password: secretPassword,
	})
	upURL := "http://" + up.URL.Host

	// writeFile writes a file of the test with mode perm.
	writeFile := func(t *testing.T, name, data string, perm os.FileMode) string {
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, []byte(data), perm); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, perm); err != nil { // whatever the umask
			t.Fatal(err)
		}
		return path
	}
	base := []string{"TETRASCOPE_UI_TOKEN=" + secretToken, "TETRASCOPE_UPSTREAM_URL=" + upURL,
		"TETRASCOPE_UPSTREAM_USERNAME=" + upstreamAccount}

	cases := []struct {
		name string
		// setup returns the extra environment and the --config file.
		setup func(t *testing.T) (env []string, config string)
		warn  bool // the start warns about a file others can read
	}{
		{"password_from_env", func(t *testing.T) ([]string, string) {
			return append(base, "TETRASCOPE_UPSTREAM_PASSWORD="+secretPassword), ""
		}, false},
		{"password_file_0600", func(t *testing.T) ([]string, string) {
			f := writeFile(t, "upstream.pass", secretPassword+"\n", 0o600)
			return append(base, "TETRASCOPE_UPSTREAM_PASSWORD_FILE="+f), ""
		}, false},
		{"password_file_0644", func(t *testing.T) ([]string, string) {
			f := writeFile(t, "upstream.pass", secretPassword+"\n", 0o644)
			return append(base, "TETRASCOPE_UPSTREAM_PASSWORD_FILE="+f), ""
		}, true},
		{"password_in_upstream_url", func(t *testing.T) ([]string, string) {
			u := fmt.Sprintf("http://%s:%s@%s", upstreamAccount, secretPassword, up.URL.Host)
			return []string{"TETRASCOPE_UI_TOKEN=" + secretToken, "TETRASCOPE_UPSTREAM_URL=" + u}, ""
		}, false},
		{"config_file_0644", func(t *testing.T) ([]string, string) {
			yaml := fmt.Sprintf("ui:\n  token: %q\nupstream:\n  url: %q\n  username: %q\n"+
				"  password: %q\n", secretToken, upURL, upstreamAccount, secretPassword)
			return nil, writeFile(t, "config.yaml", yaml, 0o644)
		}, true},
		{"config_file_0600", func(t *testing.T) ([]string, string) {
			yaml := fmt.Sprintf("ui:\n  token: %q\nupstream:\n  url: %q\n  username: %q\n"+
				"  password: %q\n", secretToken, upURL, upstreamAccount, secretPassword)
			return nil, writeFile(t, "config.yaml", yaml, 0o600)
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env, config := tc.setup(t)
			// Debug logs a line per connection: they must not leak either.
			env = append(env, "TETRASCOPE_LOG_LEVEL=debug")
			p := newServeProc(t, needBinary(t), serveConfig{
				Resolve: []string{hostTetra + "=127.0.0.1"}, AllowPorts: []int{srv.Port},
				Config: config,
			}, env...)
			if err := p.start(); err != nil {
				t.Fatal(err)
			}
			checkSecrets(t, p, pki, srv, rev, up)

			log, _ := os.ReadFile(p.LogPath)
			warned := bytes.Contains(log, []byte("a file with credentials is readable by others"))
			if warned != tc.warn {
				t.Errorf("warning about a readable credentials file: %v, want %v", warned, tc.warn)
			}
		})
	}
}

// checkSecrets sends traffic that carries every secret through p, then
// looks for them in everything p shows or keeps.
func checkSecrets(t *testing.T, p *serveProc, pki *testPKI, srv *tlsServer,
	rev *revocationServer, up *probetest.Proxy) {
	t.Helper()
	api := newAPIClient(p.UIAddr())
	api.hc.Transport = bearer{secretToken, api.hc.Transport}
	if code, _ := uiGet(t, p.UIAddr(), "/api/v1/events", ""); code != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/events without the token: %d, want 401", code)
	}
	stream, err := dialStream(p.UIAddr(), url.Values{"token": {secretToken}, "backfill": {"100"}})
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	sent := len(up.Requests())

	// A download through the upstream, with the client's own credentials,
	// which tetrascope replaces with the account's.
	r := runCurl(t, "-x", "http://"+p.ProxyAddr(), "--proxy-user", "alice:"+secretClient,
		"--proxy-basic", "--cacert", pki.CAFile, tetraURL(hostTetra, srv.Port))
	if r.Exit != 0 || r.HTTPCode != 200 || r.SizeDown != bodySize {
		t.Fatalf("%v; want the download through the upstream", r)
	}
	// A revocation fetch whose URL carries a password and a token.
	crl := fmt.Sprintf("http://urluser:%s@%s:%d/good.crl?token=%s", secretURLPass, hostCRL,
		rev.Port, secretQuery)
	c, br := rawDial(t, p.ProxyAddr())
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nProxy-Authorization: Basic %s\r\n\r\n",
		crl, hostCRL, b64("alice:"+secretClient))
	if resp, b := readAnswer(t, br, http.MethodGet); resp.StatusCode != 200 || !bytes.Equal(b, pki.CRL) {
		t.Fatalf("revocation fetch: %s, %d bytes; want 200 and the CRL", resp.Status, len(b))
	}

	// The upstream got the account's credentials, not the client's.
	wantAuth := "Basic " + b64(upstreamAccount+":"+secretPassword)
	reqs := up.Requests()[sent:]
	if len(reqs) != 2 {
		t.Fatalf("the upstream got %d requests, want 2: %+v", len(reqs), reqs)
	}
	for _, rq := range reqs {
		if rq.Auth != wantAuth || rq.Status != 200 {
			t.Errorf("the upstream got %s %s with status %d and the wrong credentials",
				rq.Method, rq.Target, rq.Status)
		}
	}

	tunnel, err := api.WaitEvent(url.Values{"host": {hostTetra}},
		func(e *inspect.Event) bool { return e.Outcome == inspect.OK }, eventWait)
	if err != nil {
		t.Fatal(err)
	}
	fetch, err := api.WaitEvent(url.Values{"host": {hostCRL}},
		func(e *inspect.Event) bool { return e.Outcome == inspect.OK }, eventWait)
	if err != nil {
		t.Fatal(err)
	}
	if tunnel.ClientUser != "alice" || fetch.ClientUser != "alice" {
		t.Errorf("client_user %q, %q; want the user without the password",
			tunnel.ClientUser, fetch.ClientUser)
	}
	if !strings.Contains(fetch.URL, "xxxxx") {
		t.Errorf("url %q: the password and token should be replaced", fetch.URL)
	}
	if !stream.WaitFor(eventWait, func(m []streamMsg) bool {
		_, _, a := openThenEvent(m, tunnel.ID)
		_, _, b := openThenEvent(m, fetch.ID)
		return a && b && hasType(m, "stats")
	}) {
		t.Error("the stream did not carry both events")
	}

	// Everything the page's server shows.
	shown := map[string][]byte{}
	for _, path := range []string{"/", "/api/v1/events?limit=10000", "/api/v1/clients",
		"/api/v1/active", "/metrics", "/api/v1/events?format=csv&limit=10000",
		"/api/v1/report?format=csv", "/api/v1/report?format=html"} {
		code, b := uiGet(t, p.UIAddr(), path, secretToken)
		switch {
		case code == http.StatusOK:
			shown[path] = b
		case strings.HasPrefix(path, "/api/v1/report") && code == http.StatusNotFound:
			t.Logf("GET %s: 404, no report here yet", path)
		default:
			t.Errorf("GET %s: %d %.200s", path, code, b)
		}
	}
	msgs, _ := stream.Messages()
	var all bytes.Buffer
	for _, m := range msgs {
		all.Write(m.Raw)
		all.WriteByte('\n')
	}
	shown["stream"] = all.Bytes()

	// What it keeps: the log, and the database once the WAL is folded in;
	// and what `tetrascope report` makes of the database.
	p.Stop()
	for _, f := range []string{p.LogPath, p.cfg.DB, p.cfg.DB + "-wal"} {
		if b, err := os.ReadFile(f); err == nil {
			shown[filepath.Base(f)] = b
		}
	}
	for _, format := range []string{"csv", "json", "html"} {
		cmd := exec.Command(p.bin, "report", "--db", p.cfg.DB, "--since", "1h", "--format", format)
		cmd.Env = childEnv()
		out, err := cmd.CombinedOutput()
		switch {
		case err == nil:
			shown["report --format "+format] = out
		case bytes.Contains(out, []byte("unknown command")):
			t.Logf("no report command in this binary yet")
		default:
			t.Errorf("report --format %s: %v: %.300s", format, err, out)
		}
	}
	for where, data := range shown {
		if l := leaks(data); len(l) > 0 {
			t.Errorf("%s shows %s", where, strings.Join(l, ", "))
		}
	}

	// The places looked at do hold the traffic, so that finding no secret
	// there means something.
	for where, must := range map[string]string{
		"/api/v1/events?limit=10000": `"client_user":"alice"`, "/api/v1/clients": "alice",
		"stream": `"client_user":"alice"`, "/metrics": "tetrascope_connections_total",
		"t.db": "alice", "serve.log": `msg=connection`, "report --format csv": "alice",
	} {
		data, ok := shown[where]
		if !ok && strings.HasPrefix(where, "report") {
			continue // no report command yet
		}
		if !bytes.Contains(data, []byte(must)) {
			t.Errorf("%s does not show %s: the check looked at the wrong thing", where, must)
		}
	}
}
