package probe_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/probe"
	"github.com/tetrascope/tetrascope/probe/probetest"
)

// Names the tests use. The definition server has its real name, so that
// the certificate and the region table are exercised; it and the
// revocation hosts reach loopback through overrides or the test proxy,
// never through the system resolver.
const (
	tetraHost = "tetra-defs.amp.cisco.com"
	euHost    = "tetra-defs.eu.amp.cisco.com"
	crlHost   = "crl.test.invalid"
	ocspHost  = "ocsp.test.invalid"
	caName    = "tetrascope probe test CA"
	loopback  = "127.0.0.1"
	password  = "s3cr3t-Pa55word!"
)

var lo = netip.MustParseAddr(loopback)

// world is one definition server with its CA and revocation server.
type world struct {
	ca   *probetest.CA
	rev  *probetest.Revocation
	srv  *probetest.TLSServer
	port int
}

type worldOptions struct {
	noCRL, noOCSP bool
	intermediate  bool // leaf issued by an intermediate that names its own servers
	leaf          func(*probetest.LeafOptions)
	silent        bool // the server completes the handshake, then says nothing
}

func newWorld(t *testing.T, o worldOptions) *world {
	t.Helper()
	w := &world{ca: probetest.NewCA(t, caName), rev: probetest.StartRevocation(t)}
	issuer := w.ca
	if o.intermediate {
		issuer = w.ca.Intermediate(t, "tetrascope probe test intermediate",
			[]string{w.rev.CRLURL(crlHost, w.ca)}, []string{w.rev.OCSPURL(ocspHost, w.ca)})
	}
	lo := probetest.LeafOptions{Hosts: []string{tetraHost}}
	if !o.noCRL {
		lo.CRLURLs = []string{w.rev.CRLURL(crlHost, issuer)}
	}
	if !o.noOCSP {
		lo.OCSPURLs = []string{w.rev.OCSPURL(ocspHost, issuer)}
	}
	if o.leaf != nil {
		o.leaf(&lo)
	}
	cert := issuer.Leaf(t, lo)
	if o.silent {
		w.port = probetest.StartSilent(t, cert)
	} else {
		w.srv = probetest.StartTLS(t, cert)
		w.port = w.srv.Port
	}
	return w
}

// direct is a Config reaching the world without a proxy.
func (w *world) direct() probe.Config {
	return probe.Config{
		Host: tetraHost,
		Port: w.port,
		Overrides: map[string][]netip.Addr{
			tetraHost: {lo}, euHost: {lo}, crlHost: {lo}, ocspHost: {lo},
		},
		Roots:           w.ca.Pool(),
		ExpectedIssuers: []string{"tetrascope probe test"},
		Timeout:         3 * time.Second,
	}
}

// proxied is a Config reaching the world through p; nothing is resolved
// here, the proxy knows the names.
func (w *world) proxied(p *probetest.Proxy) probe.Config {
	c := w.direct()
	c.Overrides = nil
	c.Proxy = p.URL
	return c
}

func (w *world) proxy(t *testing.T, o probetest.ProxyOptions) *probetest.Proxy {
	if o.Hosts == nil {
		o.Hosts = map[string]string{tetraHost: loopback, crlHost: loopback, ocspHost: loopback}
	}
	return probetest.StartProxy(t, o)
}

// want describes one expected step; an empty detail is not checked.
type want struct {
	name   string
	ok     bool
	code   inspect.LastError
	basis  inspect.Basis
	detail string
}

func pass(name, detail string) want { return want{name: name, ok: true, detail: detail} }

func fail(name string, code inspect.LastError, basis inspect.Basis, detail string) want {
	return want{name: name, code: code, basis: basis, detail: detail}
}

const (
	connectErr = inspect.LastErrorProxyConnect
	authErr    = inspect.LastErrorProxyAuth
	downErr    = inspect.LastErrorDownloadFailed
	doc        = inspect.Documented
	inf        = inspect.Inferred
)

func TestRun(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T) probe.Config
		want  []want
	}{
		{
			name: "direct, every step passes",
			setup: func(t *testing.T) probe.Config {
				return newWorld(t, worldOptions{}).direct()
			},
			want: []want{
				pass("dns", "resolves to 127.0.0.1 (static override)"),
				pass("connect", "connected directly"),
				pass("tls", "server name "+tetraHost),
				pass("certificate", "trusted, issuer expected (tetrascope probe test)"),
				pass("revocation", "OCSP http://"+ocspHost),
				pass("http", "answered 200 OK"),
			},
		},
		{
			name: "direct, name does not exist at the DNS server",
			setup: func(t *testing.T) probe.Config {
				c := newWorld(t, worldOptions{}).direct()
				c.Overrides = nil
				c.DNSServers = []string{probetest.StartDNS(t, map[string]string{crlHost: loopback}).Addr}
				return c
			},
			want: []want{fail("dns", downErr, inf, "NXDOMAIN")},
		},
		{
			name: "direct, name resolves at the DNS server",
			setup: func(t *testing.T) probe.Config {
				c := newWorld(t, worldOptions{}).direct()
				c.Overrides = nil
				c.DNSServers = []string{probetest.StartDNS(t, map[string]string{
					tetraHost: loopback, crlHost: loopback, ocspHost: loopback}).Addr}
				return c
			},
			want: []want{
				pass("dns", "resolves to 127.0.0.1 (DNS 127.0.0.1:"),
				pass("connect", ""), pass("tls", ""), pass("certificate", ""),
				pass("revocation", ""), pass("http", ""),
			},
		},
		{
			name: "direct, port closed",
			setup: func(t *testing.T) probe.Config {
				c := newWorld(t, worldOptions{}).direct()
				c.Port = probetest.ClosedPort(t)
				return c
			},
			want: []want{pass("dns", ""), fail("connect", downErr, inf, "connection refused")},
		},
		{
			name: "direct, connection closed during the handshake",
			setup: func(t *testing.T) probe.Config {
				c := newWorld(t, worldOptions{}).direct()
				c.Port = probetest.StartCloser(t)
				return c
			},
			want: []want{pass("dns", ""), pass("connect", ""),
				fail("tls", downErr, inf, "closed during the handshake")},
		},
		{
			name: "direct, handshake then no HTTP answer",
			setup: func(t *testing.T) probe.Config {
				return newWorld(t, worldOptions{silent: true}).direct()
			},
			want: []want{pass("dns", ""), pass("connect", ""), pass("tls", ""),
				pass("certificate", ""), pass("revocation", ""),
				fail("http", downErr, inf, "closed before an HTTP answer")},
		},
		{
			name: "certificate from an untrusted authority: no revocation check, http still runs",
			setup: func(t *testing.T) probe.Config {
				c := newWorld(t, worldOptions{}).direct()
				c.Roots = probetest.NewCA(t, "some other CA").Pool()
				return c
			},
			want: []want{pass("dns", ""), pass("connect", ""), pass("tls", ""),
				fail("certificate", downErr, inf, "not trusted"),
				pass("http", "")},
		},
		{
			name: "trusted certificate from an unexpected issuer",
			setup: func(t *testing.T) probe.Config {
				c := newWorld(t, worldOptions{}).direct()
				c.ExpectedIssuers = []string{"IdenTrust", "HydrantID"}
				return c
			},
			want: []want{pass("dns", ""), pass("connect", ""), pass("tls", ""),
				fail("certificate", downErr, inf, "not one of the expected (IdenTrust, HydrantID)"),
				pass("revocation", ""), pass("http", "")},
		},
		{
			name: "certificate for another name",
			setup: func(t *testing.T) probe.Config {
				c := newWorld(t, worldOptions{}).direct()
				c.Host = euHost
				return c
			},
			want: []want{pass("dns", ""), pass("connect", ""), pass("tls", ""),
				fail("certificate", downErr, inf, "not valid for "+euHost),
				pass("revocation", ""), pass("http", "")},
		},
		{
			name: "expired certificate",
			setup: func(t *testing.T) probe.Config {
				return newWorld(t, worldOptions{leaf: func(o *probetest.LeafOptions) {
					o.NotBefore = time.Now().Add(-48 * time.Hour)
					o.NotAfter = time.Now().Add(-30 * time.Minute)
				}}).direct()
			},
			want: []want{pass("dns", ""), pass("connect", ""), pass("tls", ""),
				fail("certificate", downErr, inf, "outside its validity"),
				pass("revocation", ""), pass("http", "")},
		},
		{
			name: "revocation servers answer 404",
			setup: func(t *testing.T) probe.Config {
				w := newWorld(t, worldOptions{})
				w.rev.Set(probetest.CRLNotFound, probetest.OCSPNotFound)
				return w.direct()
			},
			want: []want{pass("dns", ""), pass("connect", ""), pass("tls", ""),
				pass("certificate", ""),
				fail("revocation", downErr, inf, "answered 404 Not Found"),
				pass("http", "")},
		},
		{
			name: "OCSP says revoked",
			setup: func(t *testing.T) probe.Config {
				w := newWorld(t, worldOptions{})
				w.rev.Set(probetest.CRLGood, probetest.OCSPRevoked)
				return w.direct()
			},
			want: []want{pass("dns", ""), pass("connect", ""), pass("tls", ""),
				pass("certificate", ""), fail("revocation", downErr, inf, ": revoked at"),
				pass("http", "")},
		},
		{
			name: "CRL lists the certificate although OCSP says good",
			setup: func(t *testing.T) probe.Config {
				w := newWorld(t, worldOptions{})
				w.rev.Set(probetest.CRLRevoked, probetest.OCSPGood)
				return w.direct()
			},
			want: []want{pass("dns", ""), pass("connect", ""), pass("tls", ""),
				pass("certificate", ""),
				fail("revocation", downErr, inf, "lists the certificate as revoked"),
				pass("http", "")},
		},
		{
			name: "CRL missing but OCSP answers good",
			setup: func(t *testing.T) probe.Config {
				w := newWorld(t, worldOptions{})
				w.rev.Set(probetest.CRLNotFound, probetest.OCSPGood)
				return w.direct()
			},
			want: []want{pass("dns", ""), pass("connect", ""), pass("tls", ""),
				pass("certificate", ""), pass("revocation", "answered 404"), pass("http", "")},
		},
		{
			name: "OCSP unknown and no CRL",
			setup: func(t *testing.T) probe.Config {
				w := newWorld(t, worldOptions{noCRL: true})
				w.rev.Set(probetest.CRLGood, probetest.OCSPUnknown)
				return w.direct()
			},
			want: []want{pass("dns", ""), pass("connect", ""), pass("tls", ""),
				pass("certificate", ""), fail("revocation", downErr, inf, "unknown"),
				pass("http", "")},
		},
		{
			name: "stale OCSP answer",
			setup: func(t *testing.T) probe.Config {
				w := newWorld(t, worldOptions{noCRL: true})
				w.rev.Set(probetest.CRLGood, probetest.OCSPStale)
				return w.direct()
			},
			want: []want{pass("dns", ""), pass("connect", ""), pass("tls", ""),
				pass("certificate", ""), fail("revocation", downErr, inf, "stale"),
				pass("http", "")},
		},
		{
			name: "expired CRL",
			setup: func(t *testing.T) probe.Config {
				w := newWorld(t, worldOptions{noOCSP: true})
				w.rev.Set(probetest.CRLExpired, probetest.OCSPGood)
				return w.direct()
			},
			want: []want{pass("dns", ""), pass("connect", ""), pass("tls", ""),
				pass("certificate", ""), fail("revocation", downErr, inf, "CRL expired"),
				pass("http", "")},
		},
		{
			name: "CRL signed by another key",
			setup: func(t *testing.T) probe.Config {
				w := newWorld(t, worldOptions{noOCSP: true})
				w.rev.Set(probetest.CRLForeign, probetest.OCSPGood)
				return w.direct()
			},
			want: []want{pass("dns", ""), pass("connect", ""), pass("tls", ""),
				pass("certificate", ""), fail("revocation", downErr, inf, "not signed by"),
				pass("http", "")},
		},
		{
			name: "CRL only, good",
			setup: func(t *testing.T) probe.Config {
				return newWorld(t, worldOptions{noOCSP: true}).direct()
			},
			want: []want{pass("dns", ""), pass("connect", ""), pass("tls", ""),
				pass("certificate", ""), pass("revocation", "certificate not listed"),
				pass("http", "")},
		},
		{
			name: "leaf names no revocation server",
			setup: func(t *testing.T) probe.Config {
				return newWorld(t, worldOptions{noCRL: true, noOCSP: true}).direct()
			},
			want: []want{pass("dns", ""), pass("connect", ""), pass("tls", ""),
				pass("certificate", ""),
				fail("revocation", downErr, inf, "names no CRL or OCSP server"),
				pass("http", "")},
		},
		{
			name: "intermediate checked too",
			setup: func(t *testing.T) probe.Config {
				return newWorld(t, worldOptions{intermediate: true}).direct()
			},
			want: []want{pass("dns", ""), pass("connect", ""), pass("tls", ""),
				pass("certificate", "<- tetrascope probe test intermediate <- "+caName),
				pass("revocation", "intermediate tetrascope probe test intermediate OCSP"),
				pass("http", "")},
		},
		{
			name: "proxy, every step passes",
			setup: func(t *testing.T) probe.Config {
				w := newWorld(t, worldOptions{})
				return w.proxied(w.proxy(t, probetest.ProxyOptions{}))
			},
			want: []want{
				pass("dns", "is resolved by the proxy, not here"),
				pass("proxy_tcp", "connected to the proxy at 127.0.0.1:"),
				pass("proxy_auth", "did not ask for credentials"),
				pass("connect", "tunnel to "+tetraHost),
				pass("tls", ""), pass("certificate", ""),
				pass("revocation", "fetched through the proxy"), pass("http", ""),
			},
		},
		{
			name: "proxy asks for credentials, none given",
			setup: func(t *testing.T) probe.Config {
				w := newWorld(t, worldOptions{})
				return w.proxied(w.proxy(t, probetest.ProxyOptions{Username: "alice", Password: password}))
			},
			want: []want{pass("dns", ""), pass("proxy_tcp", ""),
				fail("proxy_auth", authErr, doc, `it offers Basic realm="probetest"`)},
		},
		{
			name: "proxy rejects the credentials",
			setup: func(t *testing.T) probe.Config {
				w := newWorld(t, worldOptions{})
				c := w.proxied(w.proxy(t, probetest.ProxyOptions{Username: "alice",
					Password: "other-password"}))
				c.Username, c.Password = "alice", password
				return c
			},
			want: []want{pass("dns", ""), pass("proxy_tcp", ""),
				fail("proxy_auth", authErr, doc, `rejected the Basic credentials of user "alice"`)},
		},
		{
			name: "proxy accepts credentials from the URL",
			setup: func(t *testing.T) probe.Config {
				w := newWorld(t, worldOptions{})
				c := w.proxied(w.proxy(t, probetest.ProxyOptions{Username: "alice", Password: password}))
				u := *c.Proxy
				u.User = url.UserPassword("alice", password)
				c.Proxy = &u
				return c
			},
			want: []want{pass("dns", ""), pass("proxy_tcp", ""),
				pass("proxy_auth", `accepted the Basic credentials of user "alice"`),
				pass("connect", ""), pass("tls", ""), pass("certificate", ""),
				pass("revocation", ""), pass("http", "")},
		},
		{
			name: "proxy wants NTLM only",
			setup: func(t *testing.T) probe.Config {
				w := newWorld(t, worldOptions{})
				c := w.proxied(w.proxy(t, probetest.ProxyOptions{Username: "alice",
					Password: password, Challenge: []string{"NTLM", "Negotiate"}}))
				c.Username, c.Password = "alice", "wrong"
				return c
			},
			want: []want{pass("dns", ""), pass("proxy_tcp", ""),
				fail("proxy_auth", authErr, inf, "it asks for NTLM, Negotiate")},
		},
		{
			name: "proxy port closed",
			setup: func(t *testing.T) probe.Config {
				c := newWorld(t, worldOptions{}).direct()
				c.Proxy = &url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", probetest.ClosedPort(t))}
				return c
			},
			want: []want{pass("dns", "is an address"),
				fail("proxy_tcp", connectErr, doc, "connection refused")},
		},
		{
			name: "proxy name does not exist",
			setup: func(t *testing.T) probe.Config {
				w := newWorld(t, worldOptions{})
				c := w.proxied(w.proxy(t, probetest.ProxyOptions{}))
				c.Proxy = &url.URL{Scheme: "http", Host: "proxy.test.invalid:3128"}
				c.DNSServers = []string{probetest.StartDNS(t, nil).Addr}
				return c
			},
			want: []want{fail("dns", connectErr, doc, "proxy name proxy.test.invalid does not resolve")},
		},
		{
			name: "proxy name resolves at the DNS server",
			setup: func(t *testing.T) probe.Config {
				w := newWorld(t, worldOptions{})
				p := w.proxy(t, probetest.ProxyOptions{})
				c := w.proxied(p)
				c.Proxy = &url.URL{Scheme: "http", Host: fmt.Sprintf("proxy.test.invalid:%d", p.Port)}
				c.DNSServers = []string{probetest.StartDNS(t, map[string]string{
					"proxy.test.invalid": loopback}).Addr}
				return c
			},
			want: []want{pass("dns", "proxy proxy.test.invalid resolves to 127.0.0.1"),
				pass("proxy_tcp", ""), pass("proxy_auth", ""), pass("connect", ""),
				pass("tls", ""), pass("certificate", ""), pass("revocation", ""),
				pass("http", "")},
		},
		{
			name: "proxy cannot resolve the definition server",
			setup: func(t *testing.T) probe.Config {
				w := newWorld(t, worldOptions{})
				return w.proxied(w.proxy(t, probetest.ProxyOptions{Hosts: map[string]string{}}))
			},
			want: []want{pass("dns", ""), pass("proxy_tcp", ""), pass("proxy_auth", ""),
				fail("connect", downErr, doc,
					"(X-Squid-Error: ERR_DNS_FAIL 0): name does not resolve")},
		},
		{
			name: "proxy cannot reach the definition server",
			setup: func(t *testing.T) probe.Config {
				w := newWorld(t, worldOptions{})
				c := w.proxied(w.proxy(t, probetest.ProxyOptions{}))
				c.Port = probetest.ClosedPort(t)
				return c
			},
			want: []want{pass("dns", ""), pass("proxy_tcp", ""), pass("proxy_auth", ""),
				fail("connect", downErr, doc, "ERR_CONNECT_FAIL")},
		},
		{
			name: "proxy closes without answering",
			setup: func(t *testing.T) probe.Config {
				c := newWorld(t, worldOptions{}).direct()
				c.Proxy = &url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", probetest.StartCloser(t))}
				return c
			},
			want: []want{pass("dns", ""), pass("proxy_tcp", ""),
				fail("connect", downErr, doc, "closed the connection without answering")},
		},
		{
			name: "proxy, revocation servers answer 404",
			setup: func(t *testing.T) probe.Config {
				w := newWorld(t, worldOptions{})
				w.rev.Set(probetest.CRLNotFound, probetest.OCSPNotFound)
				return w.proxied(w.proxy(t, probetest.ProxyOptions{}))
			},
			want: []want{pass("dns", ""), pass("proxy_tcp", ""), pass("proxy_auth", ""),
				pass("connect", ""), pass("tls", ""), pass("certificate", ""),
				fail("revocation", downErr, inf, "fetched through the proxy"),
				pass("http", "")},
		},
		{
			name: "proxy, certificate unknown to the system roots",
			setup: func(t *testing.T) probe.Config {
				w := newWorld(t, worldOptions{})
				c := w.proxied(w.proxy(t, probetest.ProxyOptions{}))
				c.Roots = nil // the system roots do not know the test CA
				return c
			},
			want: []want{pass("dns", ""), pass("proxy_tcp", ""), pass("proxy_auth", ""),
				pass("connect", ""), pass("tls", ""),
				fail("certificate", downErr, doc, "not trusted"),
				pass("http", "")},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rep := probe.Run(context.Background(), tc.setup(t))
			checkReport(t, rep, tc.want)
		})
	}
}

func checkReport(t *testing.T, rep probe.Report, want []want) {
	t.Helper()
	var got, exp []string
	for _, s := range rep.Steps {
		got = append(got, fmt.Sprintf("%s:%v", s.Name, s.OK))
	}
	allOK := true
	for _, w := range want {
		exp = append(exp, fmt.Sprintf("%s:%v", w.name, w.ok))
		allOK = allOK && w.ok
	}
	if !slices.Equal(got, exp) {
		t.Fatalf("steps = %v, want %v\n%s", got, exp, dump(rep))
	}
	if rep.OK != allOK {
		t.Errorf("report ok = %v, want %v", rep.OK, allOK)
	}
	for i, w := range want {
		s := rep.Steps[i]
		if s.MS < 0 {
			t.Errorf("%s: ms = %v", s.Name, s.MS)
		}
		if s.Detail == "" {
			t.Errorf("%s: empty detail", s.Name)
		}
		if w.detail != "" && !strings.Contains(s.Detail, w.detail) {
			t.Errorf("%s: detail %q does not contain %q", s.Name, s.Detail, w.detail)
		}
		if s.LastError != w.code || s.Basis != w.basis {
			t.Errorf("%s: lasterror %d %q, want %d %q", s.Name, s.LastError, s.Basis, w.code, w.basis)
		}
		if !s.OK {
			tag := fmt.Sprintf("lasterror %d (%d", uint32(w.code), w.code.Signed())
			if !strings.Contains(s.Advice, tag) || !strings.Contains(s.Advice, string(w.basis)) {
				t.Errorf("%s: advice %q does not name %s and %s", s.Name, s.Advice, tag, w.basis)
			}
		}
	}
	if f, failed := rep.Failed(); failed != !allOK || (failed && f.Name != firstFailed(want)) {
		t.Errorf("Failed() = %q %v", f.Name, failed)
	}
}

func firstFailed(want []want) string {
	for _, w := range want {
		if !w.ok {
			return w.name
		}
	}
	return ""
}

func dump(rep probe.Report) string {
	var b bytes.Buffer
	rep.WriteText(&b)
	return b.String()
}

// TestProxyCarriesEverything checks that with a proxy nothing is fetched
// around it: the tunnel and both revocation fetches go through it, with
// the credentials, and the definition server sees the request.
func TestProxyCarriesEverything(t *testing.T) {
	w := newWorld(t, worldOptions{})
	p := w.proxy(t, probetest.ProxyOptions{Username: "alice", Password: password})
	c := w.proxied(p)
	c.Username, c.Password = "alice", password
	c.Path = "/av64bit/versions.id"
	rep := probe.Run(context.Background(), c)
	if !rep.OK {
		t.Fatalf("probe failed:\n%s", dump(rep))
	}

	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:"+password))
	var kinds []string
	for _, r := range p.Requests() {
		if r.Auth != auth || r.Status != 200 {
			t.Errorf("proxy request %s %s: auth %q status %d", r.Method, r.Target, r.Auth, r.Status)
		}
		switch {
		case r.Method == "CONNECT" && r.Target == fmt.Sprintf("%s:%d", tetraHost, w.port):
			kinds = append(kinds, "tunnel")
		case r.Method == "GET" && strings.HasPrefix(r.Target, "http://"+crlHost+":"):
			kinds = append(kinds, "crl")
		case r.Method == "POST" && strings.HasPrefix(r.Target, "http://"+ocspHost+":"):
			kinds = append(kinds, "ocsp")
		default:
			t.Errorf("unexpected proxy request %s %s", r.Method, r.Target)
		}
	}
	slices.Sort(kinds)
	if !slices.Equal(kinds, []string{"crl", "ocsp", "tunnel"}) {
		t.Errorf("proxy saw %v, want a tunnel, a CRL and an OCSP fetch", kinds)
	}

	var sawOCSP bool
	for _, r := range w.rev.Requests() {
		if r.Method == "POST" {
			sawOCSP = r.ContentType == "application/ocsp-request" && r.Status == 200
		}
	}
	if !sawOCSP {
		t.Errorf("no OCSP POST with application/ocsp-request answered 200: %+v", w.rev.Requests())
	}
	if got := w.srv.Paths(); !slices.Equal(got, []string{"/av64bit/versions.id"}) {
		t.Errorf("definition server saw %v", got)
	}
}

// TestRegionHost checks the --region table of DESIGN.md.
func TestRegionHost(t *testing.T) {
	for region, host := range map[string]string{
		"nam": tetraHost, "EU": euHost, " apjc ": "tetra-defs.apjc.amp.cisco.com",
	} {
		if got, ok := probe.RegionHost(region); !ok || got != host {
			t.Errorf("RegionHost(%q) = %q %v, want %q", region, got, ok, host)
		}
	}
	for _, bad := range []string{"", "us", "emea", "nam,eu"} {
		if got, ok := probe.RegionHost(bad); ok {
			t.Errorf("RegionHost(%q) = %q, want not ok", bad, got)
		}
	}
}

// TestJSONShape checks the Probe JSON of DESIGN.md key by key: nothing
// more, nothing less, with the right types.
func TestJSONShape(t *testing.T) {
	w := newWorld(t, worldOptions{})
	for _, tc := range []struct {
		name string
		cfg  probe.Config
		ok   bool
	}{
		{"passing", w.direct(), true},
		{"failing", func() probe.Config {
			c := w.direct()
			c.Port = probetest.ClosedPort(t)
			return c
		}(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := json.Marshal(probe.Run(context.Background(), tc.cfg))
			if err != nil {
				t.Fatal(err)
			}
			checkJSONShape(t, data, tc.ok)
		})
	}
}

// checkJSONShape fails unless data is a Probe JSON document with the given
// ok.
func checkJSONShape(t *testing.T, data []byte, ok bool) {
	t.Helper()
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		t.Fatalf("not a JSON object: %v\n%s", err, data)
	}
	if keys := sortedKeys(top); !slices.Equal(keys, []string{"ok", "steps"}) {
		t.Fatalf("top-level keys %v, want [ok steps]", keys)
	}
	var gotOK bool
	if err := json.Unmarshal(top["ok"], &gotOK); err != nil || gotOK != ok {
		t.Errorf("ok = %s, want %v", top["ok"], ok)
	}
	var steps []map[string]json.RawMessage
	if err := json.Unmarshal(top["steps"], &steps); err != nil || len(steps) == 0 {
		t.Fatalf("steps: %v (%s)", err, top["steps"])
	}
	wantKeys := []string{"advice", "detail", "lasterror", "ms", "name", "ok"}
	for i, s := range steps {
		if keys := sortedKeys(s); !slices.Equal(keys, wantKeys) {
			t.Errorf("step %d keys %v, want %v", i, keys, wantKeys)
		}
		var (
			name, detail, advice string
			stepOK               bool
			ms                   float64
			code                 uint32
		)
		for key, dst := range map[string]any{"name": &name, "detail": &detail,
			"advice": &advice, "ok": &stepOK, "ms": &ms, "lasterror": &code} {
			if err := json.Unmarshal(s[key], dst); err != nil {
				t.Errorf("step %d %s = %s: %v", i, key, s[key], err)
			}
		}
		if !slices.Contains([]string{"dns", "proxy_tcp", "proxy_auth", "connect", "tls",
			"certificate", "revocation", "http"}, name) {
			t.Errorf("step %d has name %q", i, name)
		}
		if stepOK != (code == 0) {
			t.Errorf("step %s: ok %v with lasterror %d", name, stepOK, code)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// TestPasswordNeverInReport runs the cases where the password could leak
// (rejected credentials, a proxy that echoes the request in its answer)
// and looks for it, plain or encoded, in both output forms.
func TestPasswordNeverInReport(t *testing.T) {
	w := newWorld(t, worldOptions{})
	rejecting := w.proxy(t, probetest.ProxyOptions{Username: "alice", Password: "other-password"})
	echo := startEcho(t)

	for _, proxyURL := range []*url.URL{rejecting.URL, echo} {
		c := w.proxied(rejecting)
		u := *proxyURL
		u.User = url.UserPassword("alice", password)
		c.Proxy = &u
		rep := probe.Run(context.Background(), c)
		if rep.OK {
			t.Fatalf("probe through %s passed", proxyURL)
		}
		var text bytes.Buffer
		if err := rep.WriteText(&text); err != nil {
			t.Fatal(err)
		}
		js, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		for _, secret := range []string{password, url.QueryEscape(password),
			base64.StdEncoding.EncodeToString([]byte("alice:" + password))} {
			if strings.Contains(text.String(), secret) || strings.Contains(string(js), secret) {
				t.Errorf("output through %s contains %q:\n%s\n%s", proxyURL, secret, text.String(), js)
			}
		}
		if !strings.Contains(text.String(), `"alice"`) {
			t.Errorf("text output does not name the user:\n%s", text.String())
		}
	}
}

// startEcho starts a proxy that refuses every request with a text/plain
// 502 repeating the credentials it received, decoded and as sent: the
// worst a misbehaving proxy could do to the detail.
func startEcho(t *testing.T) *url.URL {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sent := r.Header.Get("Proxy-Authorization")
		_, b64, _ := strings.Cut(sent, " ")
		plain, _ := base64.StdEncoding.DecodeString(b64)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusBadGateway)
		fmt.Fprintf(w, "you are %s (%s)", plain, sent)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &url.URL{Scheme: "http", Host: ln.Addr().String()}
}
