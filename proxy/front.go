package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The front reads the first request of every client connection itself. A
// CONNECT, what the endpoints send for every download, is served at once
// on the goroutine that accepted it: no net/http connection state, no
// background read to stop at the hijack, no per-request context or
// response buffers. Anything else, and any CONNECT that is not plainly
// well formed, goes to net/http with the bytes read so far, so that
// net/http answers it exactly as before (400, 431, 417, 505, plain HTTP and
// its keep-alive).

// frontSize is the longest request head the front reads; a longer one goes
// to net/http, which allows limits.max_header_bytes plus 4 KiB of slack, so
// that whatever fits here fits there too.
const frontSize = 4096

// rstAvoidanceDelay bounds how long a connection closed after an answer
// waits for the client to close first, so that bytes the client sent and
// the proxy did not read do not turn the close into a reset that destroys
// the answer (net/http waits as long).
const rstAvoidanceDelay = 500 * time.Millisecond

var connectHead = []byte("CONNECT ")

// frontBuf is what the front reads request heads with: br over the
// connection, and pr over a copy of one whole head for http.ReadRequest,
// so that br still holds the bytes if net/http is to read them after all.
type frontBuf struct {
	br *bufio.Reader
	pr *bufio.Reader
	rd bytes.Reader
}

var frontPool = sync.Pool{New: func() any {
	return &frontBuf{
		br: bufio.NewReaderSize(nil, frontSize),
		pr: bufio.NewReaderSize(nil, frontSize),
	}
}}

// handoff is the listener net/http serves: the connections the front
// passes on.
type handoff struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newHandoff(addr net.Addr) *handoff {
	return &handoff{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// Accept returns the next connection passed on.
func (h *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept; connections passed on later are refused.
func (h *handoff) Close() error {
	h.once.Do(func() { close(h.done) })
	return nil
}

// Addr returns the proxy's own address.
func (h *handoff) Addr() net.Addr { return h.addr }

// pass hands c to net/http; false means net/http has stopped.
func (h *handoff) pass(c net.Conn) bool {
	select {
	case h.conns <- c:
		return true
	case <-h.done:
		return false
	}
}

// front serves the connection c until it becomes a tunnel, goes to
// net/http, or closes. Its caller has counted it in s.wg.
func (s *Server) front(c *clientConn) {
	defer s.wg.Done()
	fb := frontPool.Get().(*frontBuf)
	fb.br.Reset(c.TCPConn)
	passed := false
	defer func() {
		if fb != nil {
			fb.br.Reset(nil)
			frontPool.Put(fb)
		}
		if !passed {
			_ = c.Close()
		}
	}()

	for first := true; ; first = false {
		// Either closeWaiting finds the connection listed, or the
		// connection finds the proxy stopping.
		s.waiting.add(c.id, c)
		if s.stopping.Load() {
			s.waiting.remove(c.id, c)
			return
		}
		connect, err := s.readHead(c, fb.br, first)
		s.waiting.remove(c.id, c)
		if err != nil {
			return // the client left, or sent nothing in time
		}
		var r *http.Request
		if connect {
			r = parseConnect(c, fb)
		}
		if r == nil {
			passed = s.passOn(c, fb.br)
			return
		}

		fw := &frontWriter{c: c, req: r, fb: fb}
		ok := s.serveFront(fw)
		if fw.fb == nil {
			// A tunnel took the connection and the buffers; it has
			// closed the connection, unless it panicked.
			fb, passed = nil, ok
			return
		}
		if !ok || !fw.finish() {
			return
		}
	}
}

// readHead reads until br holds a whole request head, and reports whether
// it may be a CONNECT for the front: false means something else, or a head
// longer than frontSize, for net/http to read. The first request of a
// connection must arrive within timeouts.read_header; a later one may take
// timeouts.idle to start.
func (s *Server) readHead(c *clientConn, br *bufio.Reader, first bool) (bool, error) {
	wait := s.cfg.ReadHeaderTimeout
	if !first {
		wait = s.cfg.IdleTimeout
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	for {
		buf, _ := br.Peek(br.Buffered())
		if n := min(len(buf), len(connectHead)); !bytes.Equal(buf[:n], connectHead[:n]) {
			return false, nil
		}
		if headEnd(buf) > 0 {
			return true, nil
		}
		if len(buf) == frontSize {
			return false, nil
		}
		if _, err := br.Peek(len(buf) + 1); err != nil {
			var ne net.Error
			if len(buf) == 0 || errors.As(err, &ne) && ne.Timeout() {
				return false, err
			}
			return false, nil // a partial head, then the end: net/http's to answer
		}
		if !first && len(buf) == 0 {
			_ = c.SetReadDeadline(time.Now().Add(s.cfg.ReadHeaderTimeout))
		}
	}
}

// headEnd returns the length of the request head at the start of b, up to
// and including its empty line (CRLF or a bare LF), or 0 when b holds no
// whole head.
func headEnd(b []byte) int {
	for i := bytes.IndexByte(b, '\n'); i >= 0; {
		rest := b[i+1:]
		switch {
		case len(rest) > 0 && rest[0] == '\n':
			return i + 2
		case len(rest) > 1 && rest[0] == '\r' && rest[1] == '\n':
			return i + 3
		}
		j := bytes.IndexByte(rest, '\n')
		if j < 0 {
			return 0
		}
		i += 1 + j
	}
	return 0
}

// parseConnect reads the CONNECT at the start of fb.br and returns it, or
// nil, leaving fb.br unread, when net/http would answer it on its own: a
// parse error, a version other than 1.1, a Host header it could refuse,
// an Expect header, a body.
func parseConnect(c *clientConn, fb *frontBuf) *http.Request {
	buf, _ := fb.br.Peek(fb.br.Buffered())
	head := buf[:headEnd(buf)]
	if !plainHeaders(head) {
		return nil
	}
	fb.rd.Reset(head)
	fb.pr.Reset(&fb.rd)
	r, err := http.ReadRequest(fb.pr)
	fb.pr.Reset(nil)
	if err != nil || r.Method != http.MethodConnect || r.ProtoMajor != 1 || r.ProtoMinor != 1 {
		return nil
	}
	_, _ = fb.br.Discard(len(head))
	r.RemoteAddr = c.RemoteAddr().String()
	return r.WithContext(context.WithValue(context.Background(), connKey{}, c))
}

// plainHeaders reports whether a request head has none of the headers the
// front leaves to net/http: Expect (net/http answers 417 or 100), a body
// (Content-Length, Transfer-Encoding), and a Host header with characters
// beyond those of a name or address and a port (net/http refuses some
// such values with 400, and http.ReadRequest drops the header before it
// could be checked).
func plainHeaders(head []byte) bool {
	for line := range bytes.Lines(head) {
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch {
		case bytes.EqualFold(name, []byte("Expect")),
			bytes.EqualFold(name, []byte("Content-Length")),
			bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return false
		case bytes.EqualFold(name, []byte("Host")):
			for _, b := range bytes.TrimSpace(value) {
				ok := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' ||
					b == '.' || b == '-' || b == '_' || b == ':' || b == '[' || b == ']'
				if !ok {
					return false
				}
			}
		}
	}
	return true
}

// passOn hands the connection to net/http with what br holds unread.
func (s *Server) passOn(c *clientConn, br *bufio.Reader) bool {
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		c.pending = bytes.Clone(b)
	}
	return s.handoff.pass(c)
}

// serveFront runs the handler for a request the front read. It reports
// false when the handler panicked: the connection is then closed, as
// net/http closes it.
func (s *Server) serveFront(fw *frontWriter) (ok bool) {
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		ok = false
		if p != http.ErrAbortHandler {
			s.log.Error("request handler panicked; its connection was closed",
				"error", fmt.Sprint(p), "client_ip", remoteIP(fw.req.RemoteAddr),
				"stack", truncate(string(debug.Stack()), 4000))
		}
	}()
	s.ServeHTTP(fw, fw.req)
	return true
}

// frontWriter is the http.ResponseWriter of a request the front read. The
// answer is kept until the handler returns, then written at once; a tunnel
// takes the connection over instead (takeOver).
type frontWriter struct {
	c      *clientConn
	req    *http.Request
	fb     *frontBuf // nil once a tunnel took the connection
	header http.Header
	status int
	body   []byte
}

// Header returns the header of the answer.
func (w *frontWriter) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

// WriteHeader sets the status of the answer; the first call wins.
func (w *frontWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

// Write adds to the body of the answer.
func (w *frontWriter) Write(p []byte) (int, error) {
	if w.fb == nil {
		return 0, http.ErrHijacked
	}
	w.WriteHeader(http.StatusOK)
	w.body = append(w.body, p...)
	return len(p), nil
}

// takeOver gives the connection to a tunnel, with the bytes the client sent
// behind the request. The buffers go back to their pool at once, so that a
// long tunnel does not hold them.
func (w *frontWriter) takeOver() (*clientConn, []byte) {
	var early []byte
	if n := w.fb.br.Buffered(); n > 0 {
		b, _ := w.fb.br.Peek(n)
		early = bytes.Clone(b)
	}
	w.fb.br.Reset(nil)
	frontPool.Put(w.fb)
	w.fb = nil
	return w.c, early
}

// finish writes the answer the handler left and reports whether the
// connection stays open for another request.
func (w *frontWriter) finish() bool {
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	h := w.Header()
	closing := w.req.Close || hasToken(h.Get("Connection"), "close")
	if h.Get("Date") == "" {
		h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	}
	if h.Get("Content-Length") == "" {
		h.Set("Content-Length", strconv.Itoa(len(w.body)))
	}
	if h.Get("Content-Type") == "" && len(w.body) > 0 {
		h.Set("Content-Type", http.DetectContentType(w.body))
	}
	if closing && h.Get("Connection") == "" {
		h.Set("Connection", "close")
	}

	var b bytes.Buffer
	b.Grow(256 + len(w.body))
	fmt.Fprintf(&b, "HTTP/1.1 %03d %s\r\n", status, http.StatusText(status))
	_ = h.Write(&b)
	b.WriteString("\r\n")
	b.Write(w.body)
	_ = w.c.SetWriteDeadline(time.Now().Add(w.c.s.cfg.IdleTimeout))
	_, err := w.c.Write(b.Bytes())
	_ = w.c.SetWriteDeadline(time.Time{})
	if err != nil {
		return false
	}
	if closing {
		lingerClose(w.c)
		return false
	}
	return true
}

// lingerClose ends a connection after an answer: it closes the sending
// side, then waits a moment for the client to close its own, reading what
// it still sends, so that the answer is not lost to a reset.
func lingerClose(c *clientConn) {
	_ = c.CloseWrite()
	_ = c.SetReadDeadline(time.Now().Add(rstAvoidanceDelay))
	var buf [512]byte
	for {
		if _, err := c.TCPConn.Read(buf[:]); err != nil {
			return
		}
	}
}

// hasToken reports whether the comma-separated header value v holds token,
// ignoring case.
func hasToken(v, token string) bool {
	for t := range strings.SplitSeq(v, ",") {
		if strings.EqualFold(strings.TrimSpace(t), token) {
			return true
		}
	}
	return false
}

// errNoTakeOver is a response writer that cannot give its connection away.
var errNoTakeOver = errors.New("connection cannot be taken over for a tunnel")

// takeOver takes the client connection of a request from whoever read the
// request, with the bytes the client sent behind it. Its errors are
// errNoTakeOver, or a failed hijack.
func takeOver(w http.ResponseWriter) (*clientConn, []byte, error) {
	if fw, ok := w.(*frontWriter); ok {
		c, early := fw.takeOver()
		return c, early, nil
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		return nil, nil, errNoTakeOver
	}
	c, rw, err := hj.Hijack()
	if err != nil {
		return nil, nil, fmt.Errorf("taking over the connection: %w", err)
	}
	cc, ok := c.(*clientConn)
	if !ok {
		_ = c.Close()
		return nil, nil, fmt.Errorf("taking over the connection: %T is not a TCP connection", c)
	}

	// Bytes the client sent right behind the CONNECT (often the
	// ClientHello) sit in net/http's read buffer: relay them first.
	var early []byte
	if n := rw.Reader.Buffered(); n > 0 {
		early, _ = rw.Reader.Peek(n)
	}
	if len(cc.pending) > 0 {
		early = append(bytes.Clone(early), cc.pending...)
		cc.pending = nil
	}
	return cc, early, nil
}

// closeWaiting closes the connections whose next request has not come: at
// shutdown they are idle, and net/http closes its idle ones too.
func (s *Server) closeWaiting() {
	s.waiting.each(func(c *clientConn) { _ = c.Close() })
}
