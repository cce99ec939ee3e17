package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/resolve"
)

// startConfig runs a proxy on loopback with cfg (Listen, Sensor and
// AllowClients filled in when empty) and a resolver that knows no name.
func startConfig(t *testing.T, cfg Config) *fixture {
	t.Helper()
	res, err := resolve.New(nil, []string{nxServer(t)}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Sensor == "" {
		cfg.Sensor = "test"
	}
	if cfg.AllowClients == nil {
		cfg.AllowClients = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}
	rec := newRecorder()
	s, err := New(cfg, Deps{Resolver: res, Recorder: rec})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	u, _ := url.Parse("http://" + s.Addr().String())
	return &fixture{proxyURL: u, rec: rec, srv: s}
}

// TestLoops: a target is a loop when it is one of our listeners. A
// listener on all interfaces answers on every loopback address too, but a
// remote host that uses the same port, such as an upstream Squid on 3128
// in front of a tetrascope on :3128, is not one.
func TestLoops(t *testing.T) {
	s := &Server{}
	s.addrs = append(ownAddrs(":3128"), ownAddrs("127.0.0.1:8128")...)
	s.addrs = append(s.addrs, ownAddrs("localhost:9000")...)
	cases := []struct {
		target string
		loop   bool
	}{
		{"127.0.0.1:3128", true},
		{"127.0.0.9:3128", true},
		{"[::1]:3128", true},
		{"0.0.0.0:3128", true},
		{"[::ffff:127.0.0.1]:3128", true},
		{"192.0.2.10:3128", false}, // an upstream proxy elsewhere
		{"[2001:db8::1]:3128", false},
		{"127.0.0.1:8128", true}, // the page
		{"127.0.0.2:8128", false},
		{"127.0.0.1:8129", false},
		{"[::1]:9000", true},
		{"127.0.0.1:9000", true},
	}
	for _, tc := range cases {
		ap := netip.MustParseAddrPort(tc.target)
		if got := s.isOwn(ap); got != tc.loop {
			t.Errorf("isOwn(%s) = %v, want %v (own addresses %v)", tc.target, got, tc.loop, s.addrs)
		}
		if why := s.forbidden(ap); (why != "") != tc.loop && !ap.Addr().IsUnspecified() {
			t.Errorf("forbidden(%s) = %q, want a refusal: %v", tc.target, why, tc.loop)
		}
	}
	if got := ownAddrs("not an address"); got != nil {
		t.Errorf("ownAddrs of garbage = %v, want nil", got)
	}
}

// TestOtherListenerRefused: the page listens on loopback so that only this
// host reaches it; the proxy must not carry a client there.
func TestOtherListenerRefused(t *testing.T) {
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "the page")
	}))
	t.Cleanup(page.Close)
	pageAddr := page.Listener.Addr().String()
	f := startConfig(t, Config{OtherListeners: []string{pageAddr}})

	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(f.proxyURL)}}
	resp, err := c.Get("http://" + pageAddr + "/api/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	ev := f.rec.next(t)
	if resp.StatusCode != http.StatusForbidden || strings.Contains(string(b), "the page") {
		t.Fatalf("GET of the page through the proxy: %s %q, want 403", resp.Status, b)
	}
	if ev.Outcome != inspect.Denied || ev.Status != http.StatusForbidden ||
		!strings.Contains(ev.Detail, "loop") {
		t.Fatalf("event %+v, want denied as a loop", ev)
	}
}

// TestExpectationFailedRecorded: net/http answers an Expect header other
// than 100-continue with 417 without calling the handler; the answer must
// still be recorded, and a later request on another connection must not be
// taken for one of net/http's own answers.
func TestExpectationFailedRecorded(t *testing.T) {
	f := startConfig(t, Config{})
	c, err := net.Dial("tcp", f.proxyURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\n"+
		"Expect: something-else\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ev := f.rec.next(t)
	if resp.StatusCode != http.StatusExpectationFailed || ev.Outcome != inspect.BadRequest ||
		ev.Status != http.StatusExpectationFailed || !strings.Contains(ev.Detail, "Expect") {
		t.Fatalf("status %d, event %+v; want 417 recorded as bad_request", resp.StatusCode, ev)
	}

	// A refusal written by the handler is recorded once, by the handler.
	// Both the handler and the hook in Write record before the answer
	// leaves, so every event of this request is in by the time it is read.
	c2, err := net.Dial("tcp", f.proxyURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_, _ = io.WriteString(c2, "GET /relative HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ev = f.rec.next(t)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(ev.Detail, "relative URL") {
		t.Fatalf("status %d, event %+v", resp.StatusCode, ev)
	}
	select {
	case extra := <-f.rec.done:
		t.Fatalf("a second event for one refusal: %+v", extra)
	default:
	}
}

// upgradeOrigin answers every request, whether it asked for an upgrade or
// not, with the headers of a switch to a websocket: with status 101 as a
// switch, or with 200 and a body as if it had not switched. It holds the
// connection open and returns its port and the number of requests that
// asked for an upgrade.
func upgradeOrigin(t *testing.T, status int) (int, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		asked atomic.Int64
		mu    sync.Mutex
		conns []net.Conn
	)
	answer := "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
	if status != http.StatusSwitchingProtocols {
		answer = fmt.Sprintf("HTTP/1.1 %d %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
			"Content-Length: 5\r\n\r\nhello", status, http.StatusText(status))
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if req.Header.Get("Upgrade") != "" {
						asked.Add(1)
					}
					_, _ = io.WriteString(c, answer)
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().(*net.TCPAddr).Port, &asked
}

// TestUpgradeNotRelayed: a plain-HTTP request asking to switch protocols
// goes out as an ordinary request. An origin that switches anyway gets
// 502, and one that only sends the headers of a switch is relayed as the
// ordinary answer it is. goproxy would otherwise try to take the
// connection over for a websocket, which panics behind our response
// writer, records nothing and leaks the origin's connection.
func TestUpgradeNotRelayed(t *testing.T) {
	switched, askedSwitched := upgradeOrigin(t, http.StatusSwitchingProtocols)
	pretends, askedPretends := upgradeOrigin(t, http.StatusOK)
	f := start(t, nil, "ws.example.test")
	cases := []struct {
		name    string
		port    int
		upgrade bool
		status  int
		outcome inspect.Outcome
		body    string
	}{
		{"asked, switched", switched, true, http.StatusBadGateway, inspect.DownloadAborted, ""},
		{"not asked, switched", switched, false, http.StatusBadGateway, inspect.DownloadAborted, ""},
		{"asked, not switched", pretends, true, http.StatusOK, inspect.OK, "hello"},
	}
	for _, tc := range cases {
		c, err := net.Dial("tcp", f.proxyURL.Host)
		if err != nil {
			t.Fatal(err)
		}
		req := fmt.Sprintf("GET http://ws.example.test:%d/chat HTTP/1.1\r\nHost: ws.example.test\r\n",
			tc.port)
		if tc.upgrade {
			req += "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" +
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
		}
		_, _ = io.WriteString(c, req+"\r\n")
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%s: reading the answer: %v", tc.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		c.Close()
		ev := f.rec.next(t)
		if resp.StatusCode != tc.status || ev.Status != tc.status || ev.Outcome != tc.outcome {
			t.Errorf("%s: answer %s, event %+v; want %d, %s", tc.name, resp.Status, ev,
				tc.status, tc.outcome)
		}
		if tc.body != "" && string(b) != tc.body {
			t.Errorf("%s: body %q, want %q", tc.name, b, tc.body)
		}
		if tc.status == http.StatusBadGateway && !strings.Contains(ev.Detail, "101") {
			t.Errorf("%s: detail %q does not name the switch", tc.name, ev.Detail)
		}
	}
	if n := askedSwitched.Load() + askedPretends.Load(); n != 0 {
		t.Errorf("origins were asked to upgrade %d times; the Upgrade header must not pass", n)
	}
	ok := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if f.srv.Connections() == 0 {
			ok = true
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !ok {
		t.Fatalf("%d client connections still counted after the clients left", f.srv.Connections())
	}
}
