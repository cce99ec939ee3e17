package probetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/crypto/ocsp"
)

// TLSServer is a definition server on loopback: HTTP/1.1 over TLS with a
// given certificate, answering every path 200 with a short body.
type TLSServer struct {
	Port int

	mu    sync.Mutex
	paths []string
}

// StartTLS starts a definition server with cert.
func StartTLS(t testing.TB, cert tls.Certificate) *TLSServer {
	t.Helper()
	s := &TLSServer{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.paths = append(s.paths, r.URL.RequestURI())
		s.mu.Unlock()
		w.Header().Set("Server", "probetest")
		io.WriteString(w, "definitions\n")
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	s.Port = portOf(t, srv.Listener.Addr())
	return s
}

// Paths returns the request paths the server answered.
func (s *TLSServer) Paths() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.paths...)
}

// StartCloser starts a listener that closes every connection as soon as
// it has read something: a server or filter that drops TLS hellos. It
// returns the port.
func StartCloser(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("probetest: listening: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.Read(make([]byte, 512))
				c.Close()
			}()
		}
	}()
	return portOf(t, ln.Addr())
}

// StartSilent starts a TLS server with cert that completes the handshake,
// reads the request and closes without an answer: a device that lets the
// handshake through and then cuts the tunnel. It returns the port.
func StartSilent(t testing.TB, cert tls.Certificate) int {
	t.Helper()
	ln, err := tls.Listen("tcp4", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatalf("probetest: listening: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				c.Read(make([]byte, 4096))
				c.Close()
			}()
		}
	}()
	return portOf(t, ln.Addr())
}

// ClosedPort returns a loopback port that nothing listens on.
func ClosedPort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("probetest: listening: %v", err)
	}
	p := portOf(t, ln.Addr())
	ln.Close()
	return p
}

func portOf(t testing.TB, a net.Addr) int {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatalf("probetest: address %s: %v", a, err)
	}
	return int(ap.Port())
}

// CRLMode is how the revocation server answers CRL requests.
type CRLMode int

// The CRL answers.
const (
	CRLGood     CRLMode = iota // signed, current, listing an unrelated serial
	CRLRevoked                 // lists every certificate the CA issued
	CRLNotFound                // 404
	CRLExpired                 // its next update lies in the past
	CRLForeign                 // signed by a key other than the issuer's
)

// OCSPMode is how the revocation server answers OCSP requests.
type OCSPMode int

// The OCSP answers.
const (
	OCSPGood OCSPMode = iota
	OCSPRevoked
	OCSPUnknown
	OCSPNotFound // 404
	OCSPStale    // good, but its next update lies in the past
)

// Revocation is a CRL and OCSP server on loopback. Its URLs name whatever
// host the test chooses; the probe reaches it through a name override or
// through the test proxy.
type Revocation struct {
	Port int

	mu       sync.Mutex
	crlMode  CRLMode
	ocspMode OCSPMode
	cas      map[string]*CA
	requests []RevocationRequest
}

// RevocationRequest is one request the revocation server answered.
type RevocationRequest struct {
	Method, Path, ContentType string
	Status                    int
}

// StartRevocation starts a revocation server answering CRLGood and
// OCSPGood.
func StartRevocation(t testing.TB) *Revocation {
	t.Helper()
	r := &Revocation{cas: map[string]*CA{}}
	srv := httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(srv.Close)
	r.Port = portOf(t, srv.Listener.Addr())
	return r
}

// Set changes the answers.
func (r *Revocation) Set(crl CRLMode, o OCSPMode) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.crlMode, r.ocspMode = crl, o
}

// CRLURL returns the URL, on host, of the CRL of ca.
func (r *Revocation) CRLURL(host string, ca *CA) string {
	return r.register(host, "/crl/", ca) + ".crl"
}

// OCSPURL returns the URL, on host, of the OCSP responder of ca.
func (r *Revocation) OCSPURL(host string, ca *CA) string {
	return r.register(host, "/ocsp/", ca)
}

func (r *Revocation) register(host, prefix string, ca *CA) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := ca.Cert.SerialNumber.String() + "-" + ca.Cert.Subject.CommonName
	id = strings.NewReplacer(" ", "_", "/", "_").Replace(id)
	r.cas[id] = ca
	return "http://" + net.JoinHostPort(host, strconv.Itoa(r.Port)) + prefix + url.PathEscape(id)
}

// Requests returns what the server was asked.
func (r *Revocation) Requests() []RevocationRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]RevocationRequest(nil), r.requests...)
}

func (r *Revocation) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	crlMode, ocspMode := r.crlMode, r.ocspMode
	r.mu.Unlock()
	status, body, ctype := r.answer(req, crlMode, ocspMode)

	r.mu.Lock()
	r.requests = append(r.requests, RevocationRequest{
		Method: req.Method, Path: req.URL.Path,
		ContentType: req.Header.Get("Content-Type"), Status: status})
	r.mu.Unlock()
	if ctype != "" {
		w.Header().Set("Content-Type", ctype)
	}
	w.WriteHeader(status)
	w.Write(body)
}

func (r *Revocation) answer(req *http.Request, crlMode CRLMode, ocspMode OCSPMode) (
	status int, body []byte, ctype string) {
	now := time.Now()
	if id, ok := strings.CutPrefix(req.URL.Path, "/crl/"); ok {
		ca := r.ca(strings.TrimSuffix(id, ".crl"))
		if ca == nil || crlMode == CRLNotFound || req.Method != http.MethodGet {
			return http.StatusNotFound, []byte("not found\n"), "text/plain"
		}
		var der []byte
		var err error
		switch crlMode {
		case CRLRevoked:
			der, err = ca.CRL(ca.Issued(), now.Add(-time.Minute), now.Add(time.Hour))
		case CRLExpired:
			der, err = ca.CRL(nil, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
		case CRLForeign:
			other := &CA{Cert: ca.Cert, Key: mustKey()}
			der, err = other.CRL(nil, now.Add(-time.Minute), now.Add(time.Hour))
		default:
			der, err = ca.CRL([]*big.Int{big.NewInt(99999)}, now.Add(-time.Minute), now.Add(time.Hour))
		}
		if err != nil {
			return http.StatusInternalServerError, []byte(err.Error()), "text/plain"
		}
		return http.StatusOK, der, "application/pkix-crl"
	}
	if id, ok := strings.CutPrefix(req.URL.Path, "/ocsp/"); ok {
		ca := r.ca(id)
		if ca == nil || ocspMode == OCSPNotFound || req.Method != http.MethodPost {
			return http.StatusNotFound, []byte("not found\n"), "text/plain"
		}
		raw, err := io.ReadAll(io.LimitReader(req.Body, 1<<16))
		if err != nil {
			return http.StatusBadRequest, nil, ""
		}
		q, err := ocsp.ParseRequest(raw)
		if err != nil {
			return http.StatusBadRequest, []byte(err.Error()), "text/plain"
		}
		st, next := ocsp.Good, now.Add(time.Hour)
		switch ocspMode {
		case OCSPRevoked:
			st = ocsp.Revoked
		case OCSPUnknown:
			st = ocsp.Unknown
		case OCSPStale:
			next = now.Add(-time.Hour)
		}
		this := now.Add(-time.Minute)
		if ocspMode == OCSPStale {
			this = now.Add(-2 * time.Hour)
		}
		der, err := ca.OCSPResponse(q.SerialNumber, st, q.HashAlgorithm, this, next)
		if err != nil {
			return http.StatusInternalServerError, []byte(err.Error()), "text/plain"
		}
		return http.StatusOK, der, "application/ocsp-response"
	}
	return http.StatusNotFound, []byte("not found\n"), "text/plain"
}

func (r *Revocation) ca(id string) *CA {
	if u, err := url.PathUnescape(id); err == nil {
		id = u
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cas[id]
}

// ProxyOptions configure the test proxy.
type ProxyOptions struct {
	// Hosts maps the names the proxy can resolve to IP addresses; any
	// other name gets 503 with X-Squid-Error: ERR_DNS_FAIL, as from Squid.
	Hosts map[string]string

	// Username and Password, when Username is set, are required as Basic
	// credentials; a request without them or with others gets 407.
	Username, Password string

	// Challenge are the Proxy-Authenticate values of a 407; empty means
	// Basic realm="probetest".
	Challenge []string
}

// Proxy is a minimal forward proxy on loopback: CONNECT tunnels and plain
// HTTP requests with absolute URLs.
type Proxy struct {
	URL  *url.URL // http://127.0.0.1:port
	Port int

	opts ProxyOptions
	tr   *http.Transport

	mu       sync.Mutex
	requests []ProxyRequest
	conns    map[net.Conn]struct{}
}

// ProxyRequest is one request the proxy answered. Auth is the
// Proxy-Authorization header received, as sent.
type ProxyRequest struct {
	Method, Target, Auth string
	Status               int
}

// StartProxy starts a proxy.
func StartProxy(t testing.TB, o ProxyOptions) *Proxy {
	t.Helper()
	p := &Proxy{opts: o, conns: map[net.Conn]struct{}{}}
	if len(p.opts.Challenge) == 0 {
		p.opts.Challenge = []string{`Basic realm="probetest"`}
	}
	p.tr = &http.Transport{
		Proxy:             nil,
		DialContext:       p.dial,
		DisableKeepAlives: true,
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("probetest: listening: %v", err)
	}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		p.mu.Lock()
		for c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	p.Port = portOf(t, ln.Addr())
	p.URL = &url.URL{Scheme: "http", Host: ln.Addr().String()}
	return p
}

// Requests returns what the proxy was asked, in order.
func (p *Proxy) Requests() []ProxyRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]ProxyRequest(nil), p.requests...)
}

func (p *Proxy) record(r *http.Request, target string, status int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.requests = append(p.requests, ProxyRequest{
		Method: r.Method, Target: target, Auth: r.Header.Get("Proxy-Authorization"),
		Status: status})
}

func (p *Proxy) authorized(r *http.Request) bool {
	if p.opts.Username == "" {
		return true
	}
	want := "Basic " + base64.StdEncoding.EncodeToString(
		[]byte(p.opts.Username+":"+p.opts.Password))
	return r.Header.Get("Proxy-Authorization") == want
}

// address maps host:port to ip:port, or says the name is unknown.
func (p *Proxy) address(hostport string) (string, bool) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", false
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return hostport, true
	}
	ip, ok := p.opts.Hosts[strings.ToLower(host)]
	if !ok {
		return "", false
	}
	return net.JoinHostPort(ip, port), true
}

func (p *Proxy) dial(ctx context.Context, network, hostport string) (net.Conn, error) {
	addr, ok := p.address(hostport)
	if !ok {
		return nil, fmt.Errorf("probetest proxy: no address for %s", hostport)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Host
	if r.Method != http.MethodConnect {
		target = r.URL.String()
	}
	if !p.authorized(r) {
		for _, c := range p.opts.Challenge {
			w.Header().Add("Proxy-Authenticate", c)
		}
		w.Header().Set("X-Squid-Error", "ERR_CACHE_ACCESS_DENIED 0")
		http.Error(w, "proxy authentication required", http.StatusProxyAuthRequired)
		p.record(r, target, http.StatusProxyAuthRequired)
		return
	}
	hostport := r.Host
	if r.Method != http.MethodConnect {
		hostport = r.URL.Host
		if r.URL.Port() == "" {
			hostport = net.JoinHostPort(r.URL.Hostname(), "80")
		}
	}
	if _, ok := p.address(hostport); !ok {
		w.Header().Set("X-Squid-Error", "ERR_DNS_FAIL 0")
		http.Error(w, "name does not resolve", http.StatusServiceUnavailable)
		p.record(r, target, http.StatusServiceUnavailable)
		return
	}
	if r.Method == http.MethodConnect {
		p.tunnel(w, r, hostport)
		return
	}
	p.forward(w, r, target)
}

func (p *Proxy) tunnel(w http.ResponseWriter, r *http.Request, hostport string) {
	up, err := p.dial(r.Context(), "tcp", hostport)
	if err != nil {
		w.Header().Set("X-Squid-Error", "ERR_CONNECT_FAIL 111")
		http.Error(w, "cannot connect", http.StatusServiceUnavailable)
		p.record(r, hostport, http.StatusServiceUnavailable)
		return
	}
	cc, brw, err := w.(http.Hijacker).Hijack()
	if err != nil {
		up.Close()
		return
	}
	p.record(r, hostport, http.StatusOK)
	p.track(cc, up)
	defer p.untrack(cc, up)
	defer cc.Close()
	defer up.Close()

	if _, err := io.WriteString(cc, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { relay(up, brw.Reader); done <- struct{}{} }()
	go func() { relay(cc, up); done <- struct{}{} }()
	<-done
}

func relay(dst net.Conn, src io.Reader) {
	io.Copy(dst, src)
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	} else {
		dst.Close()
	}
}

func (p *Proxy) track(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

func (p *Proxy) forward(w http.ResponseWriter, r *http.Request, target string) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.Header.Del("Proxy-Authorization")
	out.Header.Del("Proxy-Connection")
	resp, err := p.tr.RoundTrip(out)
	if err != nil {
		w.Header().Set("X-Squid-Error", "ERR_CONNECT_FAIL 111")
		http.Error(w, "cannot connect", http.StatusServiceUnavailable)
		p.record(r, target, http.StatusServiceUnavailable)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
	p.record(r, target, resp.StatusCode)
}

// DNS is an authoritative DNS server on loopback (UDP): names it knows
// answer their IPv4 address, AAAA questions for them answer empty, and
// every other name answers NXDOMAIN.
type DNS struct {
	Addr string // 127.0.0.1:port

	names map[string]net.IP
}

// StartDNS starts a DNS server knowing names (name to IPv4 address).
func StartDNS(t testing.TB, names map[string]string) *DNS {
	t.Helper()
	d := &DNS{names: map[string]net.IP{}}
	for n, ip := range names {
		d.names[dns.Fqdn(strings.ToLower(n))] = net.ParseIP(ip).To4()
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("probetest: dns: %v", err)
	}
	d.Addr = pc.LocalAddr().String()
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(d.serve)}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatalf("probetest: dns server on %s did not start", d.Addr)
	}
	t.Cleanup(func() { srv.Shutdown() })
	return d
}

func (d *DNS) serve(w dns.ResponseWriter, q *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(q)
	m.Authoritative = true
	if len(q.Question) == 1 {
		qq := q.Question[0]
		ip, ok := d.names[strings.ToLower(qq.Name)]
		switch {
		case !ok:
			m.Rcode = dns.RcodeNameError
		case qq.Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A:   ip,
			})
		}
	}
	w.WriteMsg(m)
}

// mustKey returns a fresh key, for a CRL signed with the wrong key.
func mustKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(fmt.Sprintf("probetest: generating key: %v", err))
	}
	return k
}
