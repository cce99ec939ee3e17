package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tetrascope/tetrascope/probe/probetest"
)

// Names of the probe tests. The definition servers keep their real names;
// they and the revocation hosts are mapped to loopback with --resolve or
// by the test proxy, never looked up through the system.
const (
	probeTetra   = "tetra-defs.amp.cisco.com"
	probeEU      = "tetra-defs.eu.amp.cisco.com"
	probeCRL     = "crl.test.invalid"
	probeOCSP    = "ocsp.test.invalid"
	probeCA      = "tetrascope probe test CA"
	probeSecret  = "Sup3r-Secret-Pw"
	probeUser    = "alice"
	probeLocalIP = "127.0.0.1"
)

// probeWorld is a definition server for both regions' names with its CA
// file and revocation server.
type probeWorld struct {
	port   int
	caFile string
}

func newProbeWorld(t *testing.T) *probeWorld {
	t.Helper()
	ca := probetest.NewCA(t, probeCA)
	rev := probetest.StartRevocation(t)
	cert := ca.Leaf(t, probetest.LeafOptions{
		Hosts:    []string{probeTetra, probeEU},
		CRLURLs:  []string{rev.CRLURL(probeCRL, ca)},
		OCSPURLs: []string{rev.OCSPURL(probeOCSP, ca)},
	})
	srv := probetest.StartTLS(t, cert)
	// The test CA is the expected issuer here; the defaults name IdenTrust.
	t.Setenv("TETRASCOPE_CORRELATION_EXPECTED_ISSUERS", probeCA)
	return &probeWorld{port: srv.Port, caFile: ca.WriteFile(t, t.TempDir())}
}

// directArgs probes the world without a proxy.
func (w *probeWorld) directArgs(extra ...string) []string {
	return append([]string{"probe", "--port", fmt.Sprint(w.port), "--ca", w.caFile,
		"--resolve", probeTetra + "=" + probeLocalIP,
		"--resolve", probeEU + "=" + probeLocalIP,
		"--resolve", probeCRL + "=" + probeLocalIP + "," + probeOCSP + "=" + probeLocalIP,
	}, extra...)
}

// proxiedArgs probes the world through proxy; proxyURL may carry a user.
func (w *probeWorld) proxiedArgs(proxyURL string, extra ...string) []string {
	return append([]string{"probe", "--port", fmt.Sprint(w.port), "--ca", w.caFile,
		"--upstream", proxyURL}, extra...)
}

func startProbeProxy(t *testing.T, user, password string) *probetest.Proxy {
	return probetest.StartProxy(t, probetest.ProxyOptions{
		Hosts: map[string]string{probeTetra: probeLocalIP, probeEU: probeLocalIP,
			probeCRL: probeLocalIP, probeOCSP: probeLocalIP},
		Username: user, Password: password,
	})
}

// runCaptured runs a command line and returns its exit status, stdout and
// stderr.
func runCaptured(t *testing.T, args []string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// probeJSON is the Probe JSON of DESIGN.md.
type probeJSON struct {
	OK    bool `json:"ok"`
	Steps []struct {
		Name      string  `json:"name"`
		OK        bool    `json:"ok"`
		MS        float64 `json:"ms"`
		Detail    string  `json:"detail"`
		Advice    string  `json:"advice"`
		LastError uint32  `json:"lasterror"`
	} `json:"steps"`
}

// decodeProbe decodes stdout strictly: an unknown or missing key fails.
func decodeProbe(t *testing.T, stdout string) probeJSON {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	var p probeJSON
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("stdout is not Probe JSON: %v\n%s", err, stdout)
	}
	for _, key := range []string{`"ok"`, `"steps"`, `"name"`, `"ms"`, `"detail"`, `"advice"`,
		`"lasterror"`} {
		if !strings.Contains(stdout, key+":") {
			t.Errorf("stdout lacks %s:\n%s", key, stdout)
		}
	}
	return p
}

func (p probeJSON) summary() []string {
	var out []string
	for _, s := range p.Steps {
		out = append(out, fmt.Sprintf("%s:%v:%d", s.Name, s.OK, s.LastError))
	}
	return out
}

var allDirect = []string{"dns:true:0", "connect:true:0", "tls:true:0", "certificate:true:0",
	"revocation:true:0", "http:true:0"}

var allProxied = []string{"dns:true:0", "proxy_tcp:true:0", "proxy_auth:true:0",
	"connect:true:0", "tls:true:0", "certificate:true:0", "revocation:true:0", "http:true:0"}

func TestProbeCommand(t *testing.T) {
	w := newProbeWorld(t)
	open := startProbeProxy(t, "", "")
	authed := startProbeProxy(t, probeUser, probeSecret)
	dnsSrv := probetest.StartDNS(t, map[string]string{probeCRL: probeLocalIP})
	closed := probetest.ClosedPort(t)
	pwFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pwFile, []byte(probeSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	yaml := "upstream:\n  password_file: " + pwFile + "\n"
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	withUser := func(p *probetest.Proxy, password string) string {
		u := *p.URL
		u.User = url.User(probeUser)
		if password != "" {
			u.User = url.UserPassword(probeUser, password)
		}
		return u.String()
	}

	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		code  int
		steps []string // for --format json
		out   string   // in stdout, for text
		err   string   // in stderr
	}{
		{name: "direct, all pass", args: w.directArgs("--format", "json"), code: 0, steps: allDirect},
		{name: "direct, eu region, text", args: w.directArgs("--region", "eu"), code: 0,
			out: fmt.Sprintf("probe of %s:%d without a proxy", probeEU, w.port)},
		{name: "through the proxy", code: 0, steps: allProxied,
			args: w.proxiedArgs(open.URL.String(), "--format", "json")},
		{name: "password in the URL", code: 0, steps: allProxied,
			args: w.proxiedArgs(withUser(authed, probeSecret), "--format", "json")},
		{name: "password from the environment", code: 0, steps: allProxied,
			args: w.proxiedArgs(withUser(authed, ""), "--format", "json"),
			env:  map[string]string{"TETRASCOPE_UPSTREAM_PASSWORD": probeSecret}},
		{name: "user and password from the environment", code: 0, steps: allProxied,
			args: w.proxiedArgs(authed.URL.String(), "--format", "json"),
			env: map[string]string{"TETRASCOPE_UPSTREAM_USERNAME": probeUser,
				"TETRASCOPE_UPSTREAM_PASSWORD": probeSecret}},
		{name: "password file from --config", code: 0, steps: allProxied,
			args: w.proxiedArgs(withUser(authed, ""), "--format", "json", "--config", cfgFile)},
		{name: "no credentials", code: 1,
			args:  w.proxiedArgs(authed.URL.String(), "--format", "json"),
			steps: []string{"dns:true:0", "proxy_tcp:true:0", "proxy_auth:false:4294965196"},
			err:   "probe failed at proxy_auth"},
		{name: "proxy port closed", code: 1,
			args:  w.proxiedArgs(fmt.Sprintf("http://127.0.0.1:%d", closed), "--format", "json"),
			steps: []string{"dns:true:0", "proxy_tcp:false:4294965193"},
			err:   "probe failed at proxy_tcp"},
		{name: "name does not exist, text", code: 1,
			args: []string{"probe", "--dns", dnsSrv.Addr, "--port", fmt.Sprint(w.port)},
			out: "result: failed at dns; an endpoint on this path would most likely record " +
				"lasterror 4294965187 (-2109, connected to the proxy, download failed), inferred"},

		{name: "bad region", args: []string{"probe", "--region", "mars"}, code: 2, err: "--region"},
		{name: "bad format", args: []string{"probe", "--format", "xml"}, code: 2, err: "--format"},
		{name: "port zero", args: []string{"probe", "--port", "0"}, code: 2, err: "--port"},
		{name: "port too big", args: []string{"probe", "--port", "70000"}, code: 2, err: "--port"},
		{name: "port not a number", args: []string{"probe", "--port", "https"}, code: 2, err: "port"},
		{name: "host with port", args: []string{"probe", "--host", "a.example:443"}, code: 2,
			err: "--host"},
		{name: "relative path", args: []string{"probe", "--path", "defs"}, code: 2, err: "--path"},
		{name: "missing CA file", args: []string{"probe", "--ca", "/nonexistent/ca.pem"}, code: 2,
			err: "--ca"},
		{name: "CA file without certificates", args: []string{"probe", "--ca", cfgFile}, code: 2,
			err: "no PEM certificate"},
		{name: "bad override", args: []string{"probe", "--resolve", "nonsense"}, code: 2,
			err: "resolve"},
		{name: "bad DNS server", args: []string{"probe", "--dns", "dns.example"}, code: 2,
			err: "dns.servers"},
		{name: "https proxy", args: []string{"probe", "--upstream", "https://p.example:443"},
			code: 2, err: "upstream.url"},
		{name: "stray argument", args: []string{"probe", "extra"}, code: 2},
		{name: "unknown flag", args: []string{"probe", "--bogus"}, code: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, stdout, stderr := runCaptured(t, tc.args)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout, stderr)
			}
			if tc.steps != nil {
				p := decodeProbe(t, stdout)
				if got := p.summary(); !slices.Equal(got, tc.steps) {
					t.Errorf("steps %v, want %v\n%s", got, tc.steps, stdout)
				}
				if p.OK != (tc.code == 0) {
					t.Errorf("ok %v with exit %d", p.OK, tc.code)
				}
			}
			if tc.out != "" && !strings.Contains(stdout, tc.out) {
				t.Errorf("stdout lacks %q:\n%s", tc.out, stdout)
			}
			if tc.err != "" && !strings.Contains(stderr, tc.err) {
				t.Errorf("stderr lacks %q:\n%s", tc.err, stderr)
			}
			if tc.code == 2 && stdout != "" {
				t.Errorf("bad usage printed a report:\n%s", stdout)
			}
		})
	}
}

// TestProbeNeverPrintsPassword rejects the credentials however the
// password was given and looks for it, plain or encoded, in everything the
// command printed.
func TestProbeNeverPrintsPassword(t *testing.T) {
	w := newProbeWorld(t)
	rejecting := startProbeProxy(t, probeUser, "another-password")
	pwFile := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pwFile, []byte(probeSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	yaml := "upstream:\n  password_file: " + pwFile + "\n"
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	inURL := *rejecting.URL
	inURL.User = url.UserPassword(probeUser, probeSecret)
	userOnly := *rejecting.URL
	userOnly.User = url.User(probeUser)

	secrets := []string{probeSecret, url.QueryEscape(probeSecret),
		base64.StdEncoding.EncodeToString([]byte(probeUser + ":" + probeSecret))}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"in the URL", w.proxiedArgs(inURL.String()), nil},
		{"in the environment", w.proxiedArgs(userOnly.String()),
			map[string]string{"TETRASCOPE_UPSTREAM_PASSWORD": probeSecret}},
		{"in a password file", w.proxiedArgs(userOnly.String(), "--config", cfgFile), nil},
	} {
		for _, format := range []string{"text", "json"} {
			t.Run(tc.name+", "+format, func(t *testing.T) {
				for k, v := range tc.env {
					t.Setenv(k, v)
				}
				code, stdout, stderr := runCaptured(t, append(tc.args, "--format", format))
				if code != 1 {
					t.Fatalf("exit %d, want 1\n%s\n%s", code, stdout, stderr)
				}
				if !strings.Contains(stdout, "proxy_auth") || !strings.Contains(stdout, probeUser) {
					t.Errorf("output does not report the rejected user:\n%s", stdout)
				}
				for _, s := range secrets {
					if strings.Contains(stdout, s) || strings.Contains(stderr, s) {
						t.Errorf("output contains %q:\nstdout:\n%s\nstderr:\n%s", s, stdout, stderr)
					}
				}
			})
		}
	}

	// A bad value that carries the password must not echo it either.
	code, stdout, stderr := runCaptured(t, []string{"probe", "--upstream",
		"ftp://" + probeUser + ":" + probeSecret + "@p.example:21"})
	if code != 2 || strings.Contains(stdout+stderr, probeSecret) {
		t.Errorf("exit %d, output:\n%s%s", code, stdout, stderr)
	}
}
