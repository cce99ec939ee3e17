package probe

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509/pkix"
	"encoding/json"
	"flag"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/tetrascope/tetrascope/inspect"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestWriteText compares the text form of a fixed report with
// testdata/text.golden; -update rewrites it.
func TestWriteText(t *testing.T) {
	for _, tc := range []struct {
		file string
		rep  Report
	}{
		{"text_fail.golden", Report{
			Target: "tetra-defs.amp.cisco.com:443", Proxy: "http://proxy.example:8080",
			User: "alice",
			Steps: []Step{
				{Name: StepDNS, OK: true, MS: 1.25, Detail: "proxy proxy.example resolves to 10.0.0.5"},
				{Name: StepProxyTCP, OK: true, MS: 0.5, Detail: "connected to the proxy at 10.0.0.5:8080"},
				{Name: StepProxyAuth, MS: 12, Detail: "the proxy rejected the credentials",
					Advice: "Check the password.", LastError: inspect.LastErrorProxyAuth,
					Basis: inspect.Documented},
			},
		}},
		{"text_ok.golden", Report{
			OK: true, Target: "tetra-defs.eu.amp.cisco.com:443",
			Steps: []Step{
				{Name: StepDNS, OK: true, MS: 2, Detail: "resolves"},
				{Name: StepRevocation, OK: true, MS: 30.04, Detail: "fetched directly",
					Advice: "1 of the sources above failed."},
			},
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			var b bytes.Buffer
			if err := tc.rep.WriteText(&b); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.file)
			if *update {
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if b.String() != string(want) {
				t.Errorf("text differs from %s:\n--- got\n%s--- want\n%s", path, b.String(), want)
			}
		})
	}
}

// TestStepOrder checks that steps run out of order are reported in the
// order of DESIGN.md.
func TestStepOrder(t *testing.T) {
	steps := []Step{{Name: StepRevocation}, {Name: StepDNS}, {Name: StepHTTP},
		{Name: StepCertificate}, {Name: StepConnect}}
	sortSteps(steps)
	var got []string
	for _, s := range steps {
		got = append(got, s.Name)
	}
	if strings.Join(got, ",") != "dns,connect,certificate,revocation,http" {
		t.Errorf("order %v", got)
	}
}

// TestIssuerMatches checks the rule shared with
// correlation.expected_issuers.
func TestIssuerMatches(t *testing.T) {
	expected := []string{"IdenTrust", " hydrantid "}
	for _, tc := range []struct {
		cn   string
		org  []string
		want bool
	}{
		{"HydrantID Server CA O1", []string{"IdenTrust"}, true},
		{"Some CA", []string{"IDENTRUST Inc."}, true},
		{"Corp Inspection CA", []string{"Corp Ltd"}, false},
		{"", nil, false},
	} {
		n := pkixName(tc.cn, tc.org)
		if got := issuerMatches(n, expected); got != tc.want {
			t.Errorf("issuerMatches(%q, %q) = %v", tc.cn, tc.org, got)
		}
	}
}

// TestRedact checks that the password is removed in every form it could
// take, and that short passwords are left alone.
func TestRedact(t *testing.T) {
	s := &session{user: "alice", password: "p@ss word"}
	in := "a p@ss word b p%40ss+word c p@ss%20word d Basic YWxpY2U6cEBzcyB3b3Jk"
	out := s.redact(in)
	for _, leak := range []string{"p@ss word", "p%40ss+word", "p@ss%20word", "YWxpY2U6cEBzcyB3b3Jk"} {
		if strings.Contains(out, leak) {
			t.Errorf("redact left %q in %q", leak, out)
		}
	}
	short := &session{user: "alice", password: "ab"}
	if got := short.redact("about"); got != "about" {
		t.Errorf("short password redacted ordinary text: %q", got)
	}
}

const fuzzPassword = "fuzz-Secret-77"

// FuzzProxyAnswer feeds arbitrary answers to the CONNECT and checks that
// the probe records one or two sane steps, prints only printable text, and
// never shows the password.
func FuzzProxyAnswer(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 200 Connection established\r\n\r\n",
		"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: NTLM\r\n" +
			"Proxy-Authenticate: Basic realm=\"x\"\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 503 Service Unavailable\r\nX-Squid-Error: ERR_DNS_FAIL 0\r\n" +
			"Content-Type: text/plain\r\nContent-Length: 20\r\n\r\n" + fuzzPassword + "\x00\x01xx",
		"HTTP/1.0 403 Forbidden\r\n\r\n",
		"SSH-2.0-OpenSSH\r\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, answer []byte) {
		s := newSession(Config{
			Proxy:    &url.URL{Scheme: "http", Host: "127.0.0.1:3128"},
			Username: "alice", Password: fuzzPassword, Timeout: time.Second,
		})
		client, server := net.Pipe()
		defer client.Close()
		go func() {
			defer server.Close()
			server.SetDeadline(time.Now().Add(2 * time.Second))
			http.ReadRequest(bufio.NewReader(server))
			server.Write(answer)
		}()
		conn, ok := s.stepProxyConnect(context.Background(), client)
		rep := s.report()

		var names []string
		for _, st := range rep.Steps {
			names = append(names, st.Name)
			if !utf8.ValidString(st.Detail) || strings.IndexFunc(st.Detail, unicode.IsControl) >= 0 {
				t.Errorf("%s detail not printable: %q", st.Name, st.Detail)
			}
			if st.OK != (st.LastError == 0) {
				t.Errorf("%s ok %v with lasterror %d", st.Name, st.OK, st.LastError)
			}
		}
		switch strings.Join(names, ",") {
		case "connect", "proxy_auth", "proxy_auth,connect":
		default:
			t.Fatalf("steps %v", names)
		}
		if ok != (conn != nil) || ok != rep.OK {
			t.Errorf("ok %v, conn %v, report ok %v", ok, conn != nil, rep.OK)
		}
		js, _ := json.Marshal(rep)
		if bytes.Contains(js, []byte(fuzzPassword)) {
			t.Errorf("password in %s", js)
		}
	})
}

// FuzzPrintable checks that printable output has no control characters
// and respects its length.
func FuzzPrintable(f *testing.F) {
	f.Add("plain text", 10)
	f.Add("a\x00b\r\nc\u0085d\ufffd", 3)
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 0 || max > 1000 {
			return
		}
		out := printable(s, max)
		if strings.IndexFunc(out, unicode.IsControl) >= 0 {
			t.Errorf("control character in %q", out)
		}
		if n := utf8.RuneCountInString(strings.TrimSuffix(out, "...")); n > max {
			t.Errorf("%d runes, max %d", n, max)
		}
	})
}

func pkixName(cn string, org []string) pkix.Name {
	return pkix.Name{CommonName: cn, Organization: org}
}
