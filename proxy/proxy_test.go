package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/resolve"
)

// recorder is a hand-written Recorder that keeps every event.
type recorder struct {
	mu    sync.Mutex
	opens []inspect.Event
	done  chan inspect.Event
}

func newRecorder() *recorder { return &recorder{done: make(chan inspect.Event, 100)} }

func (r *recorder) Open(ev *inspect.Event) {
	r.mu.Lock()
	r.opens = append(r.opens, *ev)
	r.mu.Unlock()
}

func (r *recorder) Done(ev *inspect.Event) { r.done <- *ev }

func (r *recorder) next(t *testing.T) inspect.Event {
	t.Helper()
	select {
	case ev := <-r.done:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
		return inspect.Event{}
	}
}

// nxServer answers NXDOMAIN for every name, on a loopback UDP port.
func nxServer(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(q, dns.RcodeNameError)
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String()
}

type fixture struct {
	proxyURL *url.URL
	rec      *recorder
	srv      *Server
}

// start runs a proxy on loopback that maps every name in names to
// 127.0.0.1 and asks an NXDOMAIN server about the rest.
func start(t *testing.T, ports []int, names ...string) *fixture {
	t.Helper()
	return startWith(t, Config{AllowPorts: ports, IdleTimeout: 5 * time.Second}, names...)
}

// startWith is start with more of the configuration given; the listen
// address, sensor and allowed clients are filled in.
func startWith(t *testing.T, cfg Config, names ...string) *fixture {
	t.Helper()
	rec := newRecorder()
	f := startConfigured(t, cfg, rec, names...)
	f.rec = rec
	return f
}

// startRecorded is start with a Recorder of the caller's.
func startRecorded(tb testing.TB, rec Recorder, names ...string) *fixture {
	tb.Helper()
	return startConfigured(tb, Config{IdleTimeout: 5 * time.Second}, rec, names...)
}

// startConfigured runs the proxy of startWith, handing events to rec.
func startConfigured(tb testing.TB, cfg Config, rec Recorder, names ...string) *fixture {
	tb.Helper()
	static := map[string][]netip.Addr{}
	for _, n := range names {
		static[n] = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
	}
	res, err := resolve.New(static, []string{nxServer(tb)}, time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	cat, err := inspect.NewCatalog(inspect.DefaultTetraHosts, []string{"crl.identrust.com"}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.Listen, cfg.Sensor = "127.0.0.1:0", "test"
	cfg.AllowClients = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	s, err := New(cfg, Deps{Resolver: res, Catalog: cat, Recorder: rec})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	tb.Cleanup(func() { cancel(); <-done })
	u, _ := url.Parse("http://" + s.Addr().String())
	return &fixture{proxyURL: u, srv: s}
}

func port(t *testing.T, rawURL string) int {
	u, _ := url.Parse(rawURL)
	var p int
	fmt.Sscanf(u.Port(), "%d", &p)
	return p
}

func tlsServer(t *testing.T, maxVersion uint16, h http.Handler) (*httptest.Server, *x509.CertPool) {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	ts.TLS = &tls.Config{MaxVersion: maxVersion}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	pool := x509.NewCertPool()
	pool.AddCert(ts.Certificate())
	return ts, pool
}

func TestTunnelOK(t *testing.T) {
	body := strings.Repeat("x", 300<<10)
	for _, v := range []struct {
		max  uint16
		name string
	}{{tls.VersionTLS12, "TLS 1.2"}, {tls.VersionTLS13, "TLS 1.3"}} {
		t.Run(v.name, func(t *testing.T) {
			ts, pool := tlsServer(t, v.max, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				io.WriteString(w, body)
			}))
			p := port(t, ts.URL)
			f := start(t, []int{p}, "tetra-defs.amp.cisco.com")
			c := &http.Client{Transport: &http.Transport{
				Proxy: http.ProxyURL(f.proxyURL),
				// httptest certificates name example.com.
				TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: "example.com"},
				DisableKeepAlives: true,
			}}
			resp, err := c.Get(fmt.Sprintf("https://tetra-defs.amp.cisco.com:%d/defs", p))
			if err != nil {
				t.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if n != int64(len(body)) {
				t.Fatalf("got %d bytes", n)
			}
			ev := f.rec.next(t)
			if ev.Outcome != inspect.OK || ev.Endpoint != inspect.EndpointTetra || ev.Status != 200 ||
				ev.TLSVersion != v.name || ev.SNI != "example.com" || ev.BytesDown < int64(len(body)) ||
				ev.BytesUp == 0 || (ev.Close != inspect.ClientFIN && ev.Close != inspect.ServerFIN) ||
				ev.LastError != 0 {
				t.Fatalf("event %+v", ev)
			}
		})
	}
}

func TestConnectFailures(t *testing.T) {
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	f := start(t, []int{closedPort}, "tetra-defs.amp.cisco.com")

	cases := []struct {
		name, target string
		outcome      inspect.Outcome
		status       int
	}{
		{"nxdomain", fmt.Sprintf("tetra-defs.eu.amp.cisco.com:%d", closedPort), inspect.DNSFailure, 502},
		{"refused", fmt.Sprintf("tetra-defs.amp.cisco.com:%d", closedPort), inspect.ConnectRefused, 502},
		{"port", "tetra-defs.amp.cisco.com:8443", inspect.Denied, 403},
		{"no port", "tetra-defs.amp.cisco.com", inspect.BadRequest, 400},
		{"loop", f.proxyURL.Host, inspect.Denied, 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "loop" {
				f.srv.ports[int(f.srv.Addr().Port())] = true
			}
			c, err := net.Dial("tcp", f.proxyURL.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", tc.target, tc.target)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			ev := f.rec.next(t)
			if resp.StatusCode != tc.status || ev.Status != tc.status || ev.Outcome != tc.outcome {
				t.Fatalf("status %d, event %+v", resp.StatusCode, ev)
			}
			if ev.Detail == "" {
				t.Fatal("no detail")
			}
		})
	}
}

func TestPlainHTTP(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/good.crl":
			w.Header().Set("Content-Type", "application/pkix-crl")
			io.WriteString(w, "crl-bytes")
		case "/short":
			w.Header().Set("Content-Length", "1000")
			io.WriteString(w, "only a little")
			// Returning without the rest makes net/http close the
			// connection: the body is cut short.
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(origin.Close)
	p := port(t, origin.URL)
	f := start(t, nil, "crl.identrust.com")
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(f.proxyURL)}}

	cases := []struct {
		path    string
		outcome inspect.Outcome
		status  int
		code    uint32
	}{
		{"/good.crl", inspect.OK, 200, 0},
		{"/missing.crl", inspect.HTTPError, 404, 4294965187},
		{"/short", inspect.DownloadAborted, 200, 4294965187},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			u := fmt.Sprintf("http://crl.identrust.com:%d%s", p, tc.path)
			resp, err := c.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ev := f.rec.next(t)
			if ev.Outcome != tc.outcome || ev.Status != tc.status || ev.Endpoint != inspect.EndpointRevocation ||
				ev.URL != u || ev.LastError != tc.code {
				t.Fatalf("event %+v", ev)
			}
		})
	}
}

func TestMalformedRequestLine(t *testing.T) {
	f := start(t, nil)
	c, err := net.Dial("tcp", f.proxyURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "THIS IS NOT HTTP\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := f.rec.next(t)
	if resp.StatusCode != 400 || ev.Outcome != inspect.BadRequest || ev.Status != 400 ||
		ev.ClientIP != "127.0.0.1" || !strings.Contains(ev.Detail, `"THIS IS NOT HTTP"`) {
		t.Fatalf("status %d, event %+v", resp.StatusCode, ev)
	}
}

// TestClientAbandons: a client that closes in the middle of a download is
// not a success, although its own side closed with a FIN.
func TestClientAbandons(t *testing.T) {
	chunk := []byte(strings.Repeat("x", 64<<10))
	ts, pool := tlsServer(t, tls.VersionTLS13, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i < 2000; i++ { // 128 MiB, far more than the client reads
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	p := port(t, ts.URL)
	f := start(t, []int{p}, "tetra-defs.amp.cisco.com")
	c := &http.Client{Transport: &http.Transport{
		Proxy:           http.ProxyURL(f.proxyURL),
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "example.com"},
	}}
	resp, err := c.Get(fmt.Sprintf("https://tetra-defs.amp.cisco.com:%d/defs", p))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 256<<10)); err != nil {
		t.Fatal(err)
	}
	c.Transport.(*http.Transport).CloseIdleConnections()
	resp.Body.Close() // mid-body: the transport closes the connection
	ev := f.rec.next(t)
	if ev.Outcome != inspect.DownloadAborted || ev.Close != inspect.ClientRST ||
		ev.LastError != uint32(inspect.LastErrorDownloadFailed) {
		t.Fatalf("event %+v", ev)
	}
}

// TestHalfCloseAfterConnect: a client may shut its sending side right after
// the CONNECT; the tunnel is still opened.
func TestHalfCloseAfterConnect(t *testing.T) {
	origin := echoOrigin(t)
	f := start(t, []int{origin}, "tetra-defs.amp.cisco.com")
	c, err := net.Dial("tcp", f.proxyURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT tetra-defs.amp.cisco.com:%d HTTP/1.1\r\nHost: x\r\n\r\n", origin)
	c.(*net.TCPConn).CloseWrite()
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(br)
	if resp.StatusCode != 200 || string(got) != "hello" {
		t.Fatalf("status %d, tunnel carried %q", resp.StatusCode, got)
	}
	if ev := f.rec.next(t); ev.Status != 200 || ev.BytesDown != 5 {
		t.Fatalf("event %+v", ev)
	}
}

// serveLoopback listens on a free port of 127.0.0.1 until the test ends,
// runs handle on each connection in a goroutine of its own, closes the
// connection when handle returns, and returns the port.
func serveLoopback(tb testing.TB, handle func(c net.Conn)) int {
	tb.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}
