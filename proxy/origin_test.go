package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// scriptedOrigin is an origin on loopback that serves each connection with
// a function of the test, and counts what it saw.
type scriptedOrigin struct {
	port     int
	conns    atomic.Int64
	requests atomic.Int64
	mu       sync.Mutex
	seen     []string // "METHOD /path" of every request, in order
}

func newScriptedOrigin(t *testing.T,
	serve func(o *scriptedOrigin, c net.Conn, br *bufio.Reader)) *scriptedOrigin {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &scriptedOrigin{port: ln.Addr().(*net.TCPAddr).Port}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			o.conns.Add(1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(o, c, bufio.NewReader(c))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return o
}

// read reads one request and notes it; false when the proxy closed.
func (o *scriptedOrigin) read(br *bufio.Reader) (*http.Request, bool) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, false
	}
	_, _ = io.Copy(io.Discard, req.Body)
	o.requests.Add(1)
	o.mu.Lock()
	o.seen = append(o.seen, req.Method+" "+req.URL.Path)
	o.mu.Unlock()
	return req, true
}

func (o *scriptedOrigin) requestsSeen() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.seen...)
}

// okAnswer is a keep-alive 200 whose body is the request's path.
func okAnswer(req *http.Request) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URL.Path),
		req.URL.Path)
}

// proxyClient is one keep-alive client connection to the proxy.
type proxyClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialProxy(t *testing.T, f *fixture) *proxyClient {
	t.Helper()
	c, err := net.Dial("tcp4", f.proxyURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return &proxyClient{t: t, c: c, br: bufio.NewReader(c)}
}

// do sends a request for rawURL in absolute form and returns the answer
// with its body.
func (pc *proxyClient) do(method, rawURL, body string) (*http.Response, string) {
	pc.t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		pc.t.Fatal(err)
	}
	req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\n", method, rawURL, u.Host)
	if body != "" {
		req += fmt.Sprintf("Content-Length: %d\r\n", len(body))
	}
	if _, err := io.WriteString(pc.c, req+"\r\n"+body); err != nil {
		pc.t.Fatal(err)
	}
	resp, err := http.ReadResponse(pc.br, &http.Request{Method: method})
	if err != nil {
		pc.t.Fatalf("%s %s: reading the answer: %v", method, rawURL, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		pc.t.Fatalf("%s %s: reading the body: %v", method, rawURL, err)
	}
	return resp, string(b)
}

// TestOriginKeepAlive: requests of one client go to the origin over one
// kept connection, whatever the shape of the answers (a HEAD, a chunked
// body, an empty body), until an answer says the connection closes.
func TestOriginKeepAlive(t *testing.T) {
	origin := newScriptedOrigin(t, func(o *scriptedOrigin, c net.Conn, br *bufio.Reader) {
		for {
			req, ok := o.read(br)
			if !ok {
				return
			}
			switch req.URL.Path {
			case "/chunked":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"+
					"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n")
			case "/empty":
				io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
			case "/last":
				io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n"+
					"Content-Length: 4\r\n\r\nlast")
				return
			default:
				if req.Method == http.MethodHead {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
				} else {
					io.WriteString(c, okAnswer(req))
				}
			}
		}
	})
	f := start(t, nil, "crl.identrust.com")
	pc := dialProxy(t, f)
	base := fmt.Sprintf("http://crl.identrust.com:%d", origin.port)

	steps := []struct {
		method, path string
		status       int
		body         string
		conns        int64 // origin connections opened so far
	}{
		{"GET", "/a.crl", 200, "/a.crl", 1},
		{"HEAD", "/a.crl", 200, "", 1},
		{"GET", "/chunked", 200, "abcdefg", 1},
		{"GET", "/empty", 204, "", 1},
		{"GET", "/last", 200, "last", 1},
		{"GET", "/b.crl", 200, "/b.crl", 2},
		{"GET", "/c.crl", 200, "/c.crl", 2},
	}
	for _, st := range steps {
		resp, body := pc.do(st.method, base+st.path, "")
		ev := f.rec.next(t)
		if resp.StatusCode != st.status || body != st.body || ev.Outcome != inspect.OK ||
			ev.Status != st.status {
			t.Fatalf("%s %s: %s %q, event %+v; want %d %q", st.method, st.path, resp.Status, body,
				ev, st.status, st.body)
		}
		if n := origin.conns.Load(); n != st.conns {
			t.Fatalf("after %s %s: %d origin connections, want %d", st.method, st.path, n, st.conns)
		}
	}
}

// TestOriginStale: a kept connection that the origin closed while it was
// idle is not used for a request that cannot be sent twice, and a request
// that can is sent again on a new connection when a kept one fails before
// any answer. A request that cannot be sent twice is never sent twice.
func TestOriginStale(t *testing.T) {
	t.Run("closed while idle", func(t *testing.T) {
		// Each connection serves one request, answered as if it stayed
		// open, and is then closed; the next request waits for that, as
		// an origin's keep-alive timeout would have passed.
		shut := make(chan struct{}, 10)
		origin := newScriptedOrigin(t, func(o *scriptedOrigin, c net.Conn, br *bufio.Reader) {
			if req, ok := o.read(br); ok {
				io.WriteString(c, okAnswer(req))
			}
			c.(*net.TCPConn).CloseWrite()
			shut <- struct{}{}
			_, _ = io.Copy(io.Discard, br)
		})
		f := start(t, nil, "crl.identrust.com")
		pc := dialProxy(t, f)
		for i, req := range []struct{ method, body string }{
			{"GET", ""},
			{"GET", ""}, // on the stale connection, then again
			{"POST", "ocsp-request"},
			{"POST", "ocsp-request"},
		} {
			path := fmt.Sprintf("/%d", i)
			resp, body := pc.do(req.method,
				fmt.Sprintf("http://crl.identrust.com:%d%s", origin.port, path), req.body)
			ev := f.rec.next(t)
			if resp.StatusCode != 200 || body != path || ev.Outcome != inspect.OK {
				t.Fatalf("%s %s: %s %q, event %+v", req.method, path, resp.Status, body, ev)
			}
			<-shut
		}
		seen := origin.requestsSeen()
		want := []string{"GET /0", "GET /1", "POST /2", "POST /3"}
		if strings.Join(seen, ",") != strings.Join(want, ",") || origin.conns.Load() != 4 {
			t.Fatalf("the origin saw %q on %d connections, want %q on 4", seen,
				origin.conns.Load(), want)
		}
	})

	t.Run("dies under the request", func(t *testing.T) {
		// Each connection answers its first request and takes the second
		// without answering it.
		origin := newScriptedOrigin(t, func(o *scriptedOrigin, c net.Conn, br *bufio.Reader) {
			if req, ok := o.read(br); ok {
				io.WriteString(c, okAnswer(req))
			}
			o.read(br)
		})
		f := start(t, nil, "crl.identrust.com")
		pc := dialProxy(t, f)
		base := fmt.Sprintf("http://crl.identrust.com:%d", origin.port)

		if resp, _ := pc.do("GET", base+"/first", ""); resp.StatusCode != 200 {
			t.Fatalf("first GET: %s", resp.Status)
		}
		f.rec.next(t)
		resp, body := pc.do("GET", base+"/again", "")
		ev := f.rec.next(t)
		if resp.StatusCode != 200 || body != "/again" || ev.Outcome != inspect.OK {
			t.Fatalf("GET on a dying connection: %s %q, event %+v; want it sent again", resp.Status,
				body, ev)
		}

		resp, _ = pc.do("POST", base+"/once", "ocsp-request")
		ev = f.rec.next(t)
		if resp.StatusCode != http.StatusBadGateway || ev.Outcome != inspect.DownloadAborted ||
			ev.UpstreamStatus != 0 || !strings.Contains(ev.Detail, "before answering") {
			t.Fatalf("POST on a dying connection: %s, event %+v; want 502, download_aborted",
				resp.Status, ev)
		}
		var posts int
		for _, s := range origin.requestsSeen() {
			if s == "POST /once" {
				posts++
			}
		}
		if posts != 1 {
			t.Fatalf("the origin got the POST %d times, want once: %q", posts,
				origin.requestsSeen())
		}
	})
}

// TestOriginTimeouts: an origin that does not answer within timeouts.idle
// gets 504 for the client and connect_timeout, as before any answer; one
// that stops in the middle of a body ends the request as download_aborted
// with close idle_timeout.
func TestOriginTimeouts(t *testing.T) {
	origin := newScriptedOrigin(t, func(o *scriptedOrigin, c net.Conn, br *bufio.Reader) {
		req, ok := o.read(br)
		if !ok {
			return
		}
		if req.URL.Path == "/stalls-mid-body" {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nfirst ten.")
		}
		_, _ = io.Copy(io.Discard, br) // and nothing more
	})
	f := startWith(t, Config{IdleTimeout: time.Second}, "crl.identrust.com")
	base := fmt.Sprintf("http://crl.identrust.com:%d", origin.port)

	pc := dialProxy(t, f)
	resp, _ := pc.do("GET", base+"/never-answers", "")
	ev := f.rec.next(t)
	if resp.StatusCode != http.StatusGatewayTimeout || ev.Outcome != inspect.ConnectTimeout ||
		ev.Status != http.StatusGatewayTimeout {
		t.Fatalf("silent origin: %s, event %+v; want 504, connect_timeout", resp.Status, ev)
	}

	c, err := net.Dial("tcp4", f.proxyURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s/stalls-mid-body HTTP/1.1\r\nHost: x\r\n\r\n", base)
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	resp, err = http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err == nil || string(b) != "first ten." {
		t.Fatalf("body %q, error %v; want the first ten bytes, then the connection cut", b, err)
	}
	ev = f.rec.next(t)
	if ev.Outcome != inspect.DownloadAborted || ev.Close != inspect.IdleTimeout ||
		ev.BytesDown != 10 || !strings.Contains(ev.Detail, "cut short") {
		t.Fatalf("stalled body: event %+v; want download_aborted, idle_timeout", ev)
	}
}

// TestOriginClientGone: a client that goes away while the origin has not
// answered ends the wait at once (timeouts.idle is a minute here), and the
// origin connection is closed.
func TestOriginClientGone(t *testing.T) {
	letGo := make(chan struct{})
	origin := newScriptedOrigin(t, func(o *scriptedOrigin, c net.Conn, br *bufio.Reader) {
		if _, ok := o.read(br); ok {
			// Never answer; say when the proxy lets go.
			_, _ = io.Copy(io.Discard, br)
			close(letGo)
		}
	})
	f := startWith(t, Config{IdleTimeout: time.Minute}, "crl.identrust.com")
	c, err := net.Dial("tcp4", f.proxyURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET http://crl.identrust.com:%d/slow.crl HTTP/1.1\r\nHost: x\r\n\r\n",
		origin.port)
	for deadline := time.Now().Add(10 * time.Second); origin.requests.Load() == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the request did not reach the origin")
		}
		time.Sleep(5 * time.Millisecond)
	}
	c.Close()

	ev := f.rec.next(t)
	if ev.Outcome != inspect.DownloadAborted || !strings.Contains(ev.Detail, "client went away") {
		t.Fatalf("event %+v; want download_aborted, the client gone", ev)
	}
	select {
	case <-letGo:
	case <-time.After(10 * time.Second):
		t.Fatal("the origin connection is still open after the client left")
	}
}

// TestOriginAnswers: informational answers before the final one are
// skipped, within a bound; an answer with endless headers, or bytes beyond
// the answer, are not taken as the next answer of a kept connection.
func TestOriginAnswers(t *testing.T) {
	origin := newScriptedOrigin(t, func(o *scriptedOrigin, c net.Conn, br *bufio.Reader) {
		for {
			req, ok := o.read(br)
			if !ok {
				return
			}
			switch req.URL.Path {
			case "/hints":
				io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n"+
					"HTTP/1.1 103 Early Hints\r\nLink: </a.crl>\r\n\r\n"+okAnswer(req))
			case "/too-many-hints":
				hints := strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", 6)
				io.WriteString(c, hints+okAnswer(req))
			case "/endless-headers":
				io.WriteString(c, "HTTP/1.1 200 OK\r\n")
				line := "X-Filler: " + strings.Repeat("a", 1000) + "\r\n"
				for {
					if _, err := io.WriteString(c, line); err != nil {
						return
					}
				}
			case "/trailing-bytes":
				io.WriteString(c, okAnswer(req)+"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale")
			default:
				io.WriteString(c, okAnswer(req))
			}
		}
	})
	f := start(t, nil, "crl.identrust.com")
	base := fmt.Sprintf("http://crl.identrust.com:%d", origin.port)
	pc := dialProxy(t, f)

	resp, body := pc.do("GET", base+"/hints", "")
	if ev := f.rec.next(t); resp.StatusCode != 200 || body != "/hints" || ev.Outcome != inspect.OK {
		t.Fatalf("after 100 and 103: %s %q, event %+v; want the final 200", resp.Status, body, ev)
	}
	resp, _ = pc.do("GET", base+"/too-many-hints", "")
	if ev := f.rec.next(t); resp.StatusCode != http.StatusBadGateway ||
		ev.Outcome != inspect.DownloadAborted || !strings.Contains(ev.Detail, "informational") {
		t.Fatalf("six 103s: %s, event %+v; want 502", resp.Status, ev)
	}
	resp, _ = pc.do("GET", base+"/endless-headers", "")
	if ev := f.rec.next(t); resp.StatusCode != http.StatusBadGateway ||
		ev.Outcome != inspect.DownloadAborted || !strings.Contains(ev.Detail, "larger than") {
		t.Fatalf("endless headers: %s, event %+v; want 502", resp.Status, ev)
	}

	resp, body = pc.do("GET", base+"/trailing-bytes", "")
	f.rec.next(t)
	if resp.StatusCode != 200 || body != "/trailing-bytes" {
		t.Fatalf("answer with bytes behind it: %s %q", resp.Status, body)
	}
	before := origin.conns.Load()
	resp, body = pc.do("GET", base+"/next", "")
	f.rec.next(t)
	if resp.StatusCode != 200 || body != "/next" || origin.conns.Load() != before+1 {
		t.Fatalf("after bytes behind an answer: %s %q on %d new connections; want /next on one",
			resp.Status, body, origin.conns.Load()-before)
	}
}

// TestWriteHead: the head written for a plain GET or HEAD is the one
// http.Request.Write writes, line for line; any other request is left to
// Request.Write.
func TestWriteHead(t *testing.T) {
	read := func(raw string) *http.Request {
		t.Helper()
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			t.Fatalf("parsing %q: %v", raw, err)
		}
		return req
	}
	same := []string{
		"GET http://crl.identrust.com/root.crl HTTP/1.1\r\nHost: crl.identrust.com\r\n" +
			"Accept: */*\r\nX-Two: a\r\nX-Two: b\r\nUser-Agent: CiscoAMP/8.4\r\n\r\n",
		"GET http://127.0.0.1:8080/a%20b.crl?x=1&y= HTTP/1.1\r\nHost: ignored\r\n\r\n",
		"HEAD http://[::1]:80/ HTTP/1.1\r\nUser-Agent:\r\nConnection: close\r\n\r\n",
		"GET http://crl.identrust.com/? HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
		"GET http://crl.identrust.com HTTP/1.1\r\nX-Tab: a\tb\r\n\r\n",
	}
	for _, raw := range same {
		var got, want bytes.Buffer
		bw := bufio.NewWriter(&got)
		if !writeHead(bw, read(raw)) {
			t.Errorf("writeHead declined %q", raw)
			continue
		}
		bw.Flush()
		if err := read(raw).Write(&want); err != nil {
			t.Fatal(err)
		}
		if g, w := sortedLines(got.String()), sortedLines(want.String()); g != w {
			t.Errorf("for %q\nwriteHead wrote\n%s\nRequest.Write writes\n%s", raw, got.String(),
				want.String())
		}
	}

	declined := []string{
		"POST http://ocsp.example/ HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
		"POST http://ocsp.example/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
		"GET http://crl.example/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"OPTIONS http://crl.example/ HTTP/1.1\r\n\r\n",
		"GET http://[fe80::1%25eth0]/ HTTP/1.1\r\n\r\n",
		"GET http://xn--bcher-kva.example/ HTTP/1.1\r\nX-Latin: caf\xc3\xa9\r\n\r\n",
	}
	for _, raw := range declined {
		var b bytes.Buffer
		bw := bufio.NewWriter(&b)
		if writeHead(bw, read(raw)) {
			t.Errorf("writeHead took %q", raw)
		}
		bw.Flush()
		if b.Len() != 0 {
			t.Errorf("writeHead declined %q but wrote %q", raw, b.String())
		}
	}
}

// sortedLines returns the request line, then the header lines sorted: the
// order of header fields does not matter.
func sortedLines(head string) string {
	lines := strings.Split(strings.TrimSuffix(head, "\r\n\r\n"), "\r\n")
	slices.Sort(lines[1:])
	return strings.Join(lines, "\n")
}

// TestOriginPool: the sweep closes connections idle for too long and,
// among those unused since the last sweep, the ones their origin closed;
// it keeps the rest; closing the pool closes
// every idle connection, and one given back later.
func TestOriginPool(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pair := func() (*net.TCPConn, net.Conn) {
		t.Helper()
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(); s.Close() })
		return c.(*net.TCPConn), s
	}
	var p originPool
	key := originKey{"crl.identrust.com", 80}
	give := func(c *net.TCPConn) *originConn {
		oc := &originConn{conn: c, key: key, br: originReaders.Get().(*bufio.Reader)}
		oc.br.Reset(oc)
		p.put(oc)
		return oc
	}
	fresh, _ := pair()
	old, _ := pair()
	closedC, closedS := pair()
	give(fresh)
	give(old).idleAt = time.Now().Add(-2 * originIdleTime)
	give(closedC).idleAt = time.Now().Add(-2 * originSweep)
	closedS.Close()

	// The sweep is armed; run it now rather than wait for it.
	p.sweepIdle()
	p.mu.Lock()
	n, kept := p.n, append([]*originConn(nil), p.idle[key]...)
	p.mu.Unlock()
	if n != 1 || len(kept) != 1 || kept[0].conn != fresh {
		t.Fatalf("after the sweep: %d idle, %d for the origin; want only the fresh one", n,
			len(kept))
	}
	if c := p.get(key, true); c == nil || c.conn != fresh {
		t.Fatalf("get = %v, want the fresh connection", c)
	} else {
		p.put(c)
	}

	p.close()
	if c := p.get(key, false); c != nil {
		t.Fatalf("get after close = %v, want none", c)
	}
	late, peer := pair()
	give(late)
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := peer.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("a connection given back after close: read %v, want EOF", err)
	}
}
