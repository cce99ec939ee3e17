package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// Self-tests of the servers and clients the proxy cases rely on, run
// directly against each other (curl with its own --resolve, no proxy, no
// DNS): each proves the server behaves the way a case assumes.

func TestHarnessTLSServers(t *testing.T) {
	p := newPKI(t, t.TempDir())
	want := body()

	// directURL returns curl arguments for a request to the server that map
	// the tetra name to loopback with curl's own --resolve.
	direct := func(s *tlsServer) []string {
		return []string{"--resolve", fmt.Sprintf("%s:%d:127.0.0.1", hostTetra, s.Port),
			fmt.Sprintf("https://%s:%d/defs.bin", hostTetra, s.Port)}
	}

	t.Run("download with curl", func(t *testing.T) {
		s := startTLSServer(t, p, tlsServerOptions{})
		out := filepath.Join(t.TempDir(), "defs.bin")
		r := runCurl(t, append([]string{"--cacert", p.CAFile, "-o", out}, direct(s)...)...)
		if r.Exit != 0 || r.HTTPCode != 200 || r.SizeDown != bodySize {
			t.Fatalf("%v; want exit 0, 200, %d bytes", r, bodySize)
		}
		got, err := os.ReadFile(out)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("downloaded body differs (len %d, err %v)", len(got), err)
		}
		hs := s.WaitHandshakes(1, 5*time.Second)
		if len(hs) != 1 || hs[0].SNI != hostTetra || hs[0].Version != tls.VersionTLS13 {
			t.Fatalf("handshakes = %+v, want one TLS 1.3 with SNI %s", hs, hostTetra)
		}
	})

	t.Run("pinned to TLS 1.2", func(t *testing.T) {
		s := startTLSServer(t, p, tlsServerOptions{MaxVersion: tls.VersionTLS12})
		r := runCurl(t, append([]string{"--cacert", p.CAFile, "--tlsv1.2", "--tls-max", "1.2"},
			direct(s)...)...)
		if r.Exit != 0 || r.HTTPCode != 200 {
			t.Fatalf("%v; want exit 0, 200", r)
		}
		r = runCurl(t, append([]string{"--cacert", p.CAFile, "--tlsv1.3"}, direct(s)...)...)
		if r.Exit == 0 {
			t.Fatalf("%v; a TLS 1.3-only client must fail", r)
		}
		hs := s.WaitHandshakes(2, 5*time.Second)
		if len(hs) != 2 || hs[0].Version != tls.VersionTLS12 || hs[1].Err == nil {
			t.Fatalf("handshakes = %+v, want a TLS 1.2 one and a failed one", hs)
		}
	})

	// The tls_aborted cases rely on the client rejecting the unknown CA
	// with the unknown_ca alert. On TLS 1.2 it crosses in clear. On TLS 1.3
	// Go's client encrypts it; curl with OpenSSL 3.0 sends it in clear (it
	// has not switched to its handshake keys yet), so the server cannot
	// decrypt it and says "bad record MAC". The e2e case takes whatever
	// the server saw in clear as the expected tls_alert.
	t.Run("curl rejects unknown CA on TLS 1.2", func(t *testing.T) {
		s := startTLSServer(t, p, tlsServerOptions{MaxVersion: tls.VersionTLS12})
		r := runCurl(t, append([]string{"--tlsv1.2", "--tls-max", "1.2"}, direct(s)...)...)
		if r.Exit != 60 {
			t.Fatalf("%v; want exit 60 (peer certificate cannot be authenticated)", r)
		}
		hs := s.WaitHandshakes(1, 5*time.Second)
		if len(hs) != 1 || hs[0].ClearAlert != "unknown_ca" ||
			!strings.Contains(fmt.Sprint(hs[0].Err), "unknown certificate authority") {
			t.Fatalf("handshakes = %+v, want one failed with unknown_ca in clear", hs)
		}
	})

	t.Run("curl rejects unknown CA on TLS 1.3", func(t *testing.T) {
		s := startTLSServer(t, p, tlsServerOptions{})
		r := runCurl(t, direct(s)...)
		if r.Exit != 60 {
			t.Fatalf("%v; want exit 60 (peer certificate cannot be authenticated)", r)
		}
		hs := s.WaitHandshakes(1, 5*time.Second)
		if len(hs) != 1 || hs[0].Err == nil {
			t.Fatalf("handshakes = %+v, want one failed", hs)
		}
		switch {
		case hs[0].ClearAlert == "unknown_ca":
			t.Logf("this curl sends the TLS 1.3 alert in clear (%v)", hs[0].Err)
		case strings.Contains(hs[0].Err.Error(), "unknown certificate authority"):
			t.Logf("this curl encrypts the TLS 1.3 alert")
		default:
			t.Fatalf("handshake %+v: no unknown_ca alert, in clear or encrypted", hs[0])
		}
	})

	t.Run("Go client rejects unknown CA on TLS 1.3", func(t *testing.T) {
		s := startTLSServer(t, p, tlsServerOptions{})
		c, err := net.Dial("tcp", s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _, _, err = fetchOverTLS(c, hostTetra, x509.NewCertPool(), "/defs.bin", nil)
		if err == nil {
			t.Fatal("handshake succeeded with no trusted roots")
		}
		hs := s.WaitHandshakes(1, 5*time.Second)
		if len(hs) != 1 || hs[0].ClearAlert != "" ||
			!strings.Contains(fmt.Sprint(hs[0].Err), "remote error") {
			t.Fatalf("handshakes = %+v, want one failed by an encrypted alert", hs)
		}
	})

	t.Run("reset mid-download with curl", func(t *testing.T) {
		s := startTLSServer(t, p, tlsServerOptions{ResetAfter: bodySize / 4})
		r := runCurl(t, append([]string{"--cacert", p.CAFile}, direct(s)...)...)
		if r.Exit == 0 || r.HTTPCode != 200 || r.SizeDown <= 0 || r.SizeDown >= bodySize {
			t.Fatalf("%v; want a failure after 200 with 0 < size_download < %d", r, bodySize)
		}
	})

	t.Run("reset is a TCP reset", func(t *testing.T) {
		s := startTLSServer(t, p, tlsServerOptions{ResetAfter: bodySize / 4})
		c, err := net.Dial("tcp", s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		_, status, b, err := fetchOverTLS(c, hostTetra, p.RootsCA, "/defs.bin", nil)
		if status != 200 || !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("status %d, error %v; want 200 then ECONNRESET", status, err)
		}
		if len(b) != bodySize/4 || !bytes.Equal(b, want[:bodySize/4]) {
			t.Fatalf("got %d body bytes before the reset, want the first %d", len(b), bodySize/4)
		}
	})

	t.Run("ClientHello a byte at a time", func(t *testing.T) {
		s := startTLSServer(t, p, tlsServerOptions{})
		c, err := net.Dial("tcp", s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		sc := &slowConn{Conn: c}
		st, status, b, err := fetchOverTLS(sc, hostTetra, p.RootsCA, "/defs.bin", sc.Fast)
		if err != nil || status != 200 || !bytes.Equal(b, want) {
			t.Fatalf("status %d, %d bytes, error %v; want 200 and the body", status, len(b), err)
		}
		if st.Version != tls.VersionTLS13 || sc.writes.Load() < 200 {
			t.Fatalf("version %x after %d single-byte writes; want TLS 1.3 after at least 200",
				st.Version, sc.writes.Load())
		}
		if hs := s.WaitHandshakes(1, 5*time.Second); len(hs) != 1 || hs[0].SNI != hostTetra {
			t.Fatalf("handshakes = %+v, want SNI %s", hs, hostTetra)
		}
	})

	t.Run("ClientHello in three records", func(t *testing.T) {
		s := startTLSServer(t, p, tlsServerOptions{})
		c, err := net.Dial("tcp", s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		sc := &splitHelloConn{Conn: c, parts: 3}
		_, status, b, err := fetchOverTLS(sc, hostTetra, p.RootsCA, "/defs.bin", nil)
		if err != nil || status != 200 || !bytes.Equal(b, want) || sc.records != 3 {
			t.Fatalf("status %d, %d bytes, %d records, error %v; want 200, the body, 3 records",
				status, len(b), sc.records, err)
		}
		if hs := s.WaitHandshakes(1, 5*time.Second); len(hs) != 1 || hs[0].SNI != hostTetra {
			t.Fatalf("handshakes = %+v, want SNI %s", hs, hostTetra)
		}
	})

	t.Run("tunnel client", func(t *testing.T) {
		s := startTLSServer(t, p, tlsServerOptions{})
		fwd := startConnectResponder(t, s.Addr)
		target := fmt.Sprintf("%s:%d", hostTetra, s.Port)

		c, status, err := dialTunnel(fwd, target)
		if err != nil || status != 200 {
			t.Fatalf("dialTunnel: status %d, error %v", status, err)
		}
		_, status, b, err := fetchOverTLS(c, hostTetra, p.RootsCA, "/defs.bin", nil)
		if err != nil || status != 200 || !bytes.Equal(b, want) {
			t.Fatalf("through the tunnel: status %d, %d bytes, error %v", status, len(b), err)
		}

		c, status, err = dialTunnel(fwd, "refused.example.test:443")
		if err != nil || status != 403 || c != nil {
			t.Fatalf("dialTunnel to a refused target: conn %v, status %d, error %v; want nil, 403",
				c, status, err)
		}
	})

	t.Run("raw exchange", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		defer srv.Close()
		line, err := rawExchange(srv.Listener.Addr().String(), "THIS IS NOT HTTP\r\n\r\n")
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 400 ") {
			t.Fatalf("first line %q, error %v; want HTTP/1.1 400", line, err)
		}
	})
}

// startConnectResponder is the smallest CONNECT responder that checks
// dialTunnel: it answers CONNECT to refused.example.test with 403 and any
// other CONNECT with 200, then relays to upstream, whatever the target.
func startConnectResponder(t *testing.T, upstream string) string {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil || req.Method != http.MethodConnect {
					return
				}
				if strings.HasPrefix(req.Host, "refused.") {
					io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
					return
				}
				up, err := net.Dial("tcp", upstream)
				if err != nil {
					return
				}
				defer up.Close()
				io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
				go io.Copy(up, br)
				io.Copy(c, up)
			}()
		}
	}()
	return ln.Addr().String()
}

func TestHarnessRevocationServer(t *testing.T) {
	p := newPKI(t, t.TempDir())
	s := startRevocationServer(t, p)
	resolve := func(host string) []string {
		return []string{"--resolve", fmt.Sprintf("%s:%d:127.0.0.1", host, s.Port)}
	}

	out := filepath.Join(t.TempDir(), "good.crl")
	r := runCurl(t, append(resolve(hostCRL), "-o", out,
		fmt.Sprintf("http://%s:%d/good.crl", hostCRL, s.Port))...)
	if r.Exit != 0 || r.HTTPCode != 200 || r.SizeDown != int64(len(p.CRL)) {
		t.Fatalf("%v; want 200 and %d bytes", r, len(p.CRL))
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, p.CRL) {
		t.Fatalf("CRL body differs")
	}

	r = runCurl(t, append(resolve(hostCRL), fmt.Sprintf("http://%s:%d/missing.crl", hostCRL, s.Port))...)
	if r.Exit != 0 || r.HTTPCode != 404 {
		t.Fatalf("%v; want 404", r)
	}

	reqFile := filepath.Join(t.TempDir(), "req.der")
	if err := os.WriteFile(reqFile, p.OCSPRequest(t), 0o644); err != nil {
		t.Fatal(err)
	}
	out = filepath.Join(t.TempDir(), "resp.der")
	r = runCurl(t, append(resolve(hostOCSP), "-o", out,
		"-H", "Content-Type: application/ocsp-request", "--data-binary", "@"+reqFile,
		fmt.Sprintf("http://%s:%d/", hostOCSP, s.Port))...)
	if r.Exit != 0 || r.HTTPCode != 200 {
		t.Fatalf("%v; want 200", r)
	}
	der, _ := os.ReadFile(out)
	resp, err := ocsp.ParseResponseForCert(der, p.LeafX, p.CA)
	if err != nil || resp.Status != ocsp.Good {
		t.Fatalf("OCSP response: %v, %v; want a good status", resp, err)
	}

	got := s.Requests()
	wantReqs := []revocationRequest{
		{"GET", fmt.Sprintf("%s:%d", hostCRL, s.Port), "/good.crl", 200},
		{"GET", fmt.Sprintf("%s:%d", hostCRL, s.Port), "/missing.crl", 404},
		{"POST", fmt.Sprintf("%s:%d", hostOCSP, s.Port), "/", 200},
	}
	if fmt.Sprint(got) != fmt.Sprint(wantReqs) {
		t.Fatalf("requests = %+v, want %+v", got, wantReqs)
	}
}
