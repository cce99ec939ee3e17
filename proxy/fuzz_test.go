package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
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

// errorLog keeps the messages logged at error level.
type errorLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *errorLog) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelError }

func (l *errorLog) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	l.msgs = append(l.msgs, b.String())
	l.mu.Unlock()
	return nil
}

func (l *errorLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *errorLog) WithGroup(string) slog.Handler      { return l }

func (l *errorLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.msgs
	l.msgs = nil
	return m
}

func TestServerLogPanicIsError(t *testing.T) {
	el := &errorLog{}
	w := serverLog{slog.New(el)}
	_, _ = w.Write([]byte("http: TLS handshake error from 127.0.0.1:1: EOF\n"))
	_, _ = w.Write([]byte("http: panic serving 127.0.0.1:2: boom\ngoroutine 7 [running]:\n"))
	got := el.take()
	if len(got) != 1 || !strings.Contains(got[0], "panic serving 127.0.0.1:2: boom") ||
		!strings.Contains(got[0], "goroutine 7") {
		t.Fatalf("error-level messages %q, want the panic alone, with its stack", got)
	}
}

// byClient is a Recorder that sorts finished events by client address.
type byClient struct {
	mu   sync.Mutex
	want map[string]bool // addresses whose events are kept
	got  map[string][]inspect.Event
}

func (r *byClient) Open(*inspect.Event) {}

func (r *byClient) Done(ev *inspect.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.want[ev.ClientIP] {
		r.got[ev.ClientIP] = append(r.got[ev.ClientIP], *ev)
	}
}

func (r *byClient) expect(ip string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.want[ip] = true
	r.got[ip] = nil
}

// wait returns the events of ip once one has status, or all of them after
// timeout, and forgets ip.
func (r *byClient) wait(ip string, status int, timeout time.Duration) []inspect.Event {
	deadline := time.Now().Add(timeout)
	for {
		r.mu.Lock()
		evs := r.got[ip]
		found := false
		for _, e := range evs {
			found = found || e.Status == status
		}
		if found || time.Now().After(deadline) {
			delete(r.want, ip)
			delete(r.got, ip)
			r.mu.Unlock()
			return evs
		}
		r.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
}

// fuzzUpstream is the upstream proxy of the fuzzed proxy, so that no
// fuzzed request can make it connect anywhere else: CONNECT gets 200 and
// an echo; other requests get 200 and "ok", 403 for hosts containing
// "deny", 407 for hosts containing "auth".
func fuzzUpstream(tb testing.TB) string {
	tb.Helper()
	return fmt.Sprintf("127.0.0.1:%d", serveLoopback(tb, serveFuzzUpstream))
}

func serveFuzzUpstream(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if req.Method == http.MethodConnect {
			_, _ = io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
			_, _ = io.Copy(c, br)
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		switch {
		case strings.Contains(req.Host, "deny"):
			_, _ = io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nX-Squid-Error: ERR_ACCESS_DENIED 0\r\n"+
				"Content-Length: 0\r\n\r\n")
		case strings.Contains(req.Host, "auth"):
			_, _ = io.WriteString(c, "HTTP/1.1 407 Proxy Authentication Required\r\n"+
				"Proxy-Authenticate: Basic realm=\"fuzz\"\r\nContent-Length: 0\r\n\r\n")
		default:
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	}
}

// FuzzRequest sends arbitrary bytes to a running proxy as one client
// connection. The proxy must answer or close (never hang), never panic,
// and record every answer it gives: the first answer's status is the
// status of an event of that client (bad_request for what net/http
// refuses itself). Each input comes from its own loopback address, so
// that events are told apart by client.
//
// Every request goes to a fake upstream proxy on loopback: whatever a
// fuzzed request names, the proxy connects nowhere else.
func FuzzRequest(f *testing.F) {
	for _, seed := range []string{
		"GET http://crl.identrust.com/x.crl HTTP/1.1\r\nHost: crl.identrust.com\r\n\r\n",
		"CONNECT tetra-defs.amp.cisco.com:443 HTTP/1.1\r\nHost: tetra-defs.amp.cisco.com:443\r\n" +
			"\r\n\x16\x03\x01\x00\x05hello",
		"CONNECT tetra-defs.amp.cisco.com HTTP/1.1\r\n\r\n",
		"CONNECT [::1]:443 HTTP/1.1\r\n\r\n",
		"CONNECT ::1:443 HTTP/1.1\r\n\r\n",
		"CONNECT x:8443 HTTP/1.1\r\n\r\n",
		"GET http://http://host/ HTTP/1.1\r\nHost: host\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET http://deny.example/ HTTP/1.0\r\n\r\n",
		"GET http://auth.example/ HTTP/1.1\r\nHost: auth.example\r\n" +
			"Proxy-Authorization: Basic YTpi\r\n\r\n",
		"GET http://a.example/ HTTP/1.1\r\nHost: a\r\n\r\n" +
			"GET http://b.example/ HTTP/1.1\r\nHost: b\r\n\r\n",
		"POST http://a.example/ HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
		"POST http://a.example/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"5\r\nhello\r\n0\r\n\r\n",
		"POST http://a.example/ HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
		"POST http://a.example/ HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n" +
			"Content-Length: 1\r\n\r\nx",
		"GET http://a.example/ HTTP/1.1\r\nHost: a\r\nExpect: nonsense\r\n\r\n",
		"GET http://a.example/ HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"GET http://u:secret@a.example/?token=t HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET http://a.example/ HTTP/9.9\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"GET http://a.example/ HTTP/1.1\r\nX: " + strings.Repeat("a", 9000) + "\r\n\r\n",
		"GET http://a.example:99999/ HTTP/1.1\r\n\r\n",
		"GET http://[fe80::1%25lo]/ HTTP/1.1\r\n\r\n",
		"THIS IS NOT HTTP\r\n\r\n",
		"GET http://a.example/",
		"",
	} {
		f.Add([]byte(seed))
	}

	el := &errorLog{}
	res, err := resolve.New(map[string][]netip.Addr{}, []string{nxServer(f)}, time.Second)
	if err != nil {
		f.Fatal(err)
	}
	cat, err := inspect.NewCatalog(inspect.DefaultTetraHosts, []string{"crl.identrust.com"}, nil)
	if err != nil {
		f.Fatal(err)
	}
	up, _ := url.Parse("http://" + fuzzUpstream(f))
	rec := &byClient{want: map[string]bool{}, got: map[string][]inspect.Event{}}
	s, err := New(Config{
		Listen:            "127.0.0.1:0",
		Sensor:            "fuzz",
		AllowClients:      []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		AllowPorts:        []int{443, 8443},
		ReadHeaderTimeout: 2 * time.Second,
		IdleTimeout:       2 * time.Second,
		MaxHeaderBytes:    4096,
		Upstream:          Upstream{URL: up},
	}, Deps{Resolver: res, Catalog: cat, Recorder: rec, Logger: slog.New(el)})
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	f.Cleanup(func() { cancel(); <-done })
	addr := s.Addr().String()
	var n atomic.Uint32

	f.Fuzz(func(t *testing.T, data []byte) {
		// 127.1.0.0 to 127.1.255.255, one per input.
		i := n.Add(1)
		ip := netip.AddrFrom4([4]byte{127, 1, byte(i >> 8), byte(i)})
		rec.expect(ip.String())
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip.AsSlice()}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dialing the proxy from %s: %v", ip, err)
		}
		defer c.Close()

		// A request that may be complete is answered before the client
		// shuts its side (a half-close cancels a plain request); the rest
		// is ended by the shutdown.
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = c.Write(data)
		var answer bytes.Buffer
		if bytes.Contains(data, []byte("\n\n")) || bytes.Contains(data, []byte("\n\r\n")) {
			_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			buf := make([]byte, 4096)
			k, _ := c.Read(buf)
			answer.Write(buf[:k])
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		}
		_ = c.(*net.TCPConn).CloseWrite()
		_, err = io.Copy(&answer, c)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("the proxy neither answered nor closed within 10 s; it sent %q", answer.Bytes())
		}
		if msgs := el.take(); len(msgs) > 0 {
			t.Fatalf("the proxy logged errors for input %q:\n%s", data, strings.Join(msgs, "\n"))
		}
		if answer.Len() == 0 {
			rec.wait(ip.String(), -1, 0)
			return
		}

		// The first final answer must be HTTP, and recorded.
		br := bufio.NewReader(&answer)
		var resp *http.Response
		for {
			resp, err = http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("the proxy's answer to %q is not HTTP: %v (%q)", data, err, answer.Bytes())
			}
			if resp.StatusCode >= 200 {
				break
			}
			resp.Body.Close()
		}
		evs := rec.wait(ip.String(), resp.StatusCode, 5*time.Second)
		for _, e := range evs {
			if e.Status == resp.StatusCode {
				if !e.Outcome.Valid() || e.ID == 0 {
					t.Fatalf("event %+v is not whole", e)
				}
				return
			}
		}
		t.Fatalf("the proxy answered %q with %s but recorded %+v", data, resp.Status, evs)
	})
}
