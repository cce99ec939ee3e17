package e2e

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// connector plays a Windows endpoint's definition update from source
// address src: a CONNECT to the tetra host through the proxy, a TLS 1.2
// handshake whose certificate check first fetches the CRL named in the
// certificate through the same proxy (when fetchCRL is set) and then
// rejects the certificate as schannel does when revocation cannot be
// checked. Debian's curl never fetches revocation data itself, hence this
// client.
type connector struct {
	proxy string
	src   string
}

func (c connector) dial() (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(c.src)}, Timeout: 5 * time.Second}
	return d.Dial("tcp", c.proxy)
}

// fetch GETs an absolute URL through the proxy and returns the status.
func (c connector) fetch(rawURL string) (int, error) {
	conn, err := c.dial()
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", rawURL,
		mustHost(rawURL))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func mustHost(raw string) string {
	u, _ := url.Parse(raw)
	return u.Host
}

// update runs one attempt; accept says whether the certificate is trusted
// in the end. It returns the handshake's error, if any.
func (c connector) update(target string, fetchCRL, accept bool) error {
	conn, err := c.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("CONNECT answered %d", resp.StatusCode)
	}
	host, _, _ := net.SplitHostPort(target)
	tc := tls.Client(&bufConn{Conn: conn, r: br}, &tls.Config{
		ServerName:         host,
		MaxVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // the check below stands in for schannel's
		VerifyConnection: func(cs tls.ConnectionState) error {
			if fetchCRL {
				for _, dp := range cs.PeerCertificates[0].CRLDistributionPoints {
					if status, err := c.fetch(dp); err != nil || status != 200 {
						return errors.New("revocation server unreachable")
					}
				}
			}
			if !accept {
				return errors.New("the revocation function was unable to check revocation")
			}
			return nil
		},
	})
	if err := tc.Handshake(); err != nil {
		return err
	}
	fmt.Fprintf(tc, "GET /defs.bin HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host)
	got, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, got.Body)
	got.Body.Close()
	return err
}

// resigningPKI is a second CA, as an inspecting proxy would use, with a leaf
// for the tetra hosts.
func resigningPKI(t *testing.T, base *testPKI) *testPKI {
	t.Helper()
	now := time.Now()
	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(10),
		Subject:      pkix.Name{CommonName: "Corp Inspection CA", Organization: []string{"Corp"}},
		NotBefore:    now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true, IsCA: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafKey := newKey(t)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(11),
		Subject:      pkix.Name{CommonName: hostTetra},
		DNSNames:     base.LeafX.DNSNames,
		NotBefore:    now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(leafDER)
	p := *base
	p.Leaf = tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey, Leaf: leaf}
	p.LeafX = leaf
	return &p
}

// TestDiagnoses drives three connectors from three addresses and checks the
// per-client diagnosis each one gets (issue 4).
func TestDiagnoses(t *testing.T) {
	pki := newPKI(t, t.TempDir())
	good := startTLSServer(t, pki, tlsServerOptions{MaxVersion: tls.VersionTLS12})
	resigned := startTLSServer(t, resigningPKI(t, pki), tlsServerOptions{MaxVersion: tls.VersionTLS12})
	p := newServeProc(t, needBinary(t), serveConfig{
		AllowPorts: []int{good.Port, resigned.Port},
		// The CRL host maps to a loopback address where nothing listens on
		// port 80: the revocation fetch is refused, as a blocking firewall
		// or proxy rule would do.
		Resolve: []string{hostTetra + "=127.0.0.1", hostCRL + "=127.0.0.9"},
	}, "TETRASCOPE_CORRELATION_EXPECTED_ISSUERS=tetrascope e2e,IdenTrust")
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	goodTarget := fmt.Sprintf("%s:%d", hostTetra, good.Port)
	resignedTarget := fmt.Sprintf("%s:%d", hostTetra, resigned.Port)

	blocked := connector{proxy: p.ProxyAddr(), src: "127.0.0.2"}
	if err := blocked.update(goodTarget, true, false); err == nil {
		t.Fatal("the connector trusted a certificate it could not check")
	}
	outside := connector{proxy: p.ProxyAddr(), src: "127.0.0.3"}
	if err := outside.update(goodTarget, false, false); err == nil {
		t.Fatal("the connector trusted a certificate it could not check")
	}
	intercepted := connector{proxy: p.ProxyAddr(), src: "127.0.0.4"}
	if err := intercepted.update(resignedTarget, false, true); err != nil {
		t.Fatalf("download through the re-signing server: %v", err)
	}

	cases := []struct {
		client    string
		diagnosis string
		evidence  int // at least this many events
	}{
		{"127.0.0.2", inspect.DiagnosisRevocationBlocked, 2},
		{"127.0.0.3", inspect.DiagnosisRevocationOutside, 1},
		{"127.0.0.4", inspect.DiagnosisTLSInterception, 1},
	}
	for _, tc := range cases {
		t.Run(tc.diagnosis, func(t *testing.T) {
			var got inspect.Client
			ok := waitFor(10*time.Second, 100*time.Millisecond, func() bool {
				c, err := getClient(p.UIAddr(), tc.client)
				if err != nil {
					return false
				}
				got = c
				return slices.ContainsFunc(c.Diagnoses, func(d inspect.Diagnosis) bool {
					return d.Name == tc.diagnosis
				})
			})
			if !ok {
				t.Fatalf("client %s: diagnoses %+v, want %s", tc.client, got.Diagnoses, tc.diagnosis)
			}
			if got.Diagnosis != tc.diagnosis {
				t.Fatalf("client %s: main diagnosis %q, want %q", tc.client, got.Diagnosis,
					tc.diagnosis)
			}
			d := got.Diagnoses[0]
			if len(d.Evidence) < tc.evidence || d.Advice == "" {
				t.Fatalf("diagnosis %+v", d)
			}
			if tc.diagnosis != inspect.DiagnosisTLSInterception &&
				(got.ExpectedLastError != inspect.LastErrorDownloadFailed ||
					got.LastErrorBasis != inspect.Inferred) {
				t.Fatalf("expected lasterror %d (%s)", got.ExpectedLastError, got.LastErrorBasis)
			}
		})
	}
}

func getClient(uiAddr, ip string) (inspect.Client, error) {
	resp, err := http.Get("http://" + uiAddr + "/api/v1/clients?client=" + url.QueryEscape(ip))
	if err != nil {
		return inspect.Client{}, err
	}
	defer resp.Body.Close()
	var page struct {
		Clients []inspect.Client `json:"clients"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		return inspect.Client{}, err
	}
	if len(page.Clients) != 1 {
		return inspect.Client{}, fmt.Errorf("%d clients for %s", len(page.Clients), ip)
	}
	return page.Clients[0], nil
}
