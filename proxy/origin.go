package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Plain HTTP to origins goes through our own keep-alive client rather than
// net/http's Transport: the request is written and the answer read on the
// goroutine that serves the client, so a GET costs no goroutine hand-off
// and no channel round trip; idle connections hold no buffers.

const (
	// originIdlePerHost and originIdleMax bound the idle connections kept
	// for one origin (host and port) and for all of them.
	originIdlePerHost = 256
	originIdleMax     = 1024
	// originIdleTime is how long an idle origin connection is kept.
	originIdleTime = 90 * time.Second
	// originSweep is how often idle connections are looked at, to close
	// the ones too old or that the origin closed.
	originSweep = 10 * time.Second
	// originMaxHeader bounds the header block of an origin's answer.
	originMaxHeader = 1 << 20
	// max1xx bounds the informational answers (100 Continue, 103) skipped
	// before the final one.
	max1xx = 5
)

// originReaders and originWriters are the buffers of origin connections in
// use; an idle connection gives its reader back, and the writer is needed
// only while a request is written.
var (
	originReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4096) }}
	originWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4096) }}
)

var (
	// errOriginSilent is an origin that stopped sending in the middle of
	// a body for timeouts.idle.
	errOriginSilent = errors.New("the origin sent nothing")
	// errHeaderTooLarge is an answer whose header block does not end
	// within originMaxHeader.
	errHeaderTooLarge = fmt.Errorf("origin's answer headers are larger than %d bytes",
		originMaxHeader)
)

// originKey names an origin: the host as the client named it, and a port.
type originKey struct {
	host string
	port int
}

// originConn is a keep-alive connection to an origin.
type originConn struct {
	conn   *net.TCPConn
	key    originKey
	br     *bufio.Reader // while in use; nil when idle
	limit  int64         // bytes left for the answer's header block; < 0: no limit
	reused bool          // served a request before this one
	idleAt time.Time
	// left says the client of the request under way went away, and its
	// deadline was moved to end the wait (clientConn.leave).
	left atomic.Bool
}

// Read feeds the buffered reader, within the header limit while the header
// block is read.
func (c *originConn) Read(p []byte) (int, error) {
	if c.limit >= 0 {
		if c.limit == 0 {
			return 0, errHeaderTooLarge
		}
		if int64(len(p)) > c.limit {
			p = p[:c.limit]
		}
	}
	n, err := c.conn.Read(p)
	if c.limit >= 0 {
		c.limit -= int64(n)
	}
	return n, err
}

func (c *originConn) close() {
	if c.br != nil {
		c.br.Reset(nil)
		originReaders.Put(c.br)
		c.br = nil
	}
	_ = c.conn.Close()
}

// originPool keeps idle connections to origins, the most recently used
// first, so that the next request takes the one least likely to be stale.
type originPool struct {
	mu     sync.Mutex
	idle   map[originKey][]*originConn
	n      int
	sweep  *time.Timer // armed while a connection is idle
	closed bool
}

// get returns an idle connection to key, or nil. With check, a connection
// is first made sure to be open, which costs a system call: for requests
// that cannot be sent again if it turns out stale.
func (p *originPool) get(key originKey, check bool) *originConn {
	for {
		p.mu.Lock()
		list := p.idle[key]
		if len(list) == 0 {
			p.mu.Unlock()
			return nil
		}
		c := list[len(list)-1]
		list[len(list)-1] = nil
		p.idle[key] = list[:len(list)-1]
		p.n--
		p.mu.Unlock()

		if !check || idleOpen(c.conn) {
			c.br = originReaders.Get().(*bufio.Reader)
			c.br.Reset(c)
			return c
		}
		_ = c.conn.Close()
	}
}

// put keeps c for the next request to its origin, or closes it when the
// pool is full or closed.
func (p *originPool) put(c *originConn) {
	if c.br.Buffered() > 0 {
		// The origin sent more than its answer: the next answer would be
		// out of step.
		c.close()
		return
	}
	// TODO: bytes that an origin sends once its connection is idle are
	// not looked for before a GET takes it (only requests that cannot be
	// sent twice check): that GET would get them as its answer. Only a
	// broken origin does this, and only its own requests are affected.
	c.br.Reset(nil)
	originReaders.Put(c.br)
	c.br = nil
	c.reused = true
	c.idleAt = time.Now()

	p.mu.Lock()
	list := p.idle[c.key]
	if p.closed || len(list) >= originIdlePerHost || p.n >= originIdleMax {
		p.mu.Unlock()
		_ = c.conn.Close()
		return
	}
	if p.idle == nil {
		p.idle = make(map[originKey][]*originConn)
	}
	p.idle[c.key] = append(list, c)
	p.n++
	if p.sweep == nil {
		p.sweep = time.AfterFunc(originSweep, p.sweepIdle)
	}
	p.mu.Unlock()
}

// sweepIdle closes the connections idle for longer than originIdleTime
// and those the origin has closed, and comes back while any is left. Only
// connections unused since the last sweep are looked at, so that a busy
// pool costs no system call per connection.
func (p *originPool) sweepIdle() {
	now := time.Now()
	old, unused := now.Add(-originIdleTime), now.Add(-originSweep)
	var drop []*originConn
	p.mu.Lock()
	for key, list := range p.idle {
		kept := list[:0]
		for _, c := range list {
			if c.idleAt.Before(old) || c.idleAt.Before(unused) && !idleOpen(c.conn) {
				drop = append(drop, c)
			} else {
				kept = append(kept, c)
			}
		}
		clear(list[len(kept):])
		if len(kept) == 0 {
			delete(p.idle, key)
		} else {
			p.idle[key] = kept
		}
	}
	p.n -= len(drop)
	if p.n > 0 && !p.closed {
		p.sweep.Reset(originSweep)
	} else {
		p.sweep = nil
	}
	p.mu.Unlock()
	for _, c := range drop {
		_ = c.conn.Close()
	}
}

// close closes every idle connection; connections in use are closed when
// their requests end.
func (p *originPool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle, p.n = nil, 0
	if p.sweep != nil {
		p.sweep.Stop()
		p.sweep = nil
	}
	p.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			_ = c.conn.Close()
		}
	}
}

// idleOpen reports whether an idle connection is still open with nothing
// to read: the origin neither closed it nor sent anything unasked.
func idleOpen(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	open := false
	_ = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		open = err == syscall.EAGAIN
		return true
	})
	return open
}

// originRoundTrip sends a plain-HTTP request straight to its origin on a
// kept connection or a new one, and returns the answer's head; its body
// gives the connection back once read to its end. A kept connection that
// the origin closed in the meantime is found out when it fails before any
// answer, and the request is sent once more on a new connection when that
// is safe (an idempotent request without a body); other requests take a
// kept connection only once it is seen to be open.
func (s *Server) originRoundTrip(r *http.Request, st *httpObs) (*http.Response, error) {
	ctx := r.Context()
	key := originKey{st.o.Event.Host, st.o.Event.Port}
	replayable := replayable(r)
	for retry := false; ; retry = true {
		var c *originConn
		if !retry {
			c = s.origins.get(key, !replayable)
		}
		if c == nil {
			conn, err := s.dial(ctx, key.host, key.port)
			if err != nil && ctx.Err() != nil {
				return nil, s.originError(ctx, nil, "connecting to the origin", err)
			}
			if err != nil {
				return nil, err
			}
			c = &originConn{conn: conn, key: key, limit: -1}
			c.br = originReaders.Get().(*bufio.Reader)
			c.br.Reset(c)
		}
		resp, answered, err := s.exchange(c, r, st.cc)
		if err == nil {
			return resp, nil
		}
		c.close()
		if !c.reused || answered || !replayable || c.left.Load() || ctx.Err() != nil {
			return nil, err
		}
	}
}

// replayable reports whether r may be sent again after a kept connection
// failed under it: an idempotent method, or a request that says it is
// idempotent, without a body.
func replayable(r *http.Request) bool {
	if r.Body != nil && r.Body != http.NoBody {
		return false
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return r.Header.Get("Idempotency-Key") != "" || r.Header.Get("X-Idempotency-Key") != ""
}

// exchange writes r on c and reads the head of the answer, then hands c
// to the answer's body. answered says the origin had begun to answer when
// an error came. On error the caller closes c.
func (s *Server) exchange(c *originConn, r *http.Request, cc *clientConn) (*http.Response,
	bool, error) {
	// Writing the request (its body too) and waiting for the answer end
	// at timeouts.idle, or as soon as the client goes away: its connection
	// watches c until the answer's head is in, and no longer, since c may
	// go back to the pool right after.
	_ = c.conn.SetDeadline(time.Now().Add(s.cfg.IdleTimeout))
	if cc != nil && !cc.plainWait.CompareAndSwap(nil, c) {
		return nil, false, errors.New("sending the request to the origin: the client went away")
	}
	resp, whole, answered, err := s.send(c, r)
	if cc != nil && !cc.plainWait.CompareAndSwap(c, nil) && err == nil {
		// The client left just as the answer came, and c is being cut.
		err = errors.New("reading the origin's answer: the client went away")
	}
	if err != nil {
		return nil, answered, err
	}

	keep := whole && !resp.Close && !r.Close && resp.StatusCode != http.StatusSwitchingProtocols
	switch {
	case resp.Body != http.NoBody:
		resp.Body = &originBody{body: resp.Body, c: c, s: s, keep: keep, set: time.Now()}
	case keep:
		s.origins.put(c)
	default:
		c.close()
	}
	return resp, true, nil
}

// send writes r on c and reads the head of the final answer. whole says
// the whole request went out.
func (s *Server) send(c *originConn, r *http.Request) (resp *http.Response, whole, answered bool,
	err error) {
	bw := originWriters.Get().(*bufio.Writer)
	bw.Reset(c.conn)
	if !writeHead(bw, r) {
		err = r.Write(bw)
	}
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	originWriters.Put(bw)
	if err != nil {
		// An origin may answer before it has read the whole request (a
		// refusal of its body): that answer still counts.
		if resp, rerr := readHead(c, r); rerr == nil {
			return resp, false, true, nil
		}
		err = s.originError(r.Context(), c, "sending the request to the origin", err)
		return nil, false, false, err
	}

	// Nothing read yet: a kept connection that the origin has closed
	// fails here, and the request can go again.
	c.limit = originMaxHeader
	if _, err := c.br.Peek(1); err != nil {
		err = s.originError(r.Context(), c, "waiting for the origin's answer", err)
		return nil, true, false, err
	}
	resp, err = readHead(c, r)
	if err != nil {
		return nil, true, true, s.originError(r.Context(), c, "reading the origin's answer", err)
	}
	return resp, true, true, nil
}

// readHead reads the head of the final answer to r, skipping informational
// ones.
func readHead(c *originConn, r *http.Request) (*http.Response, error) {
	for n := 0; ; n++ {
		c.limit = originMaxHeader
		resp, err := http.ReadResponse(c.br, r)
		c.limit = -1
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
		if n == max1xx {
			return nil, fmt.Errorf("more than %d informational answers", max1xx)
		}
	}
}

// clientLeft marks a client connection that has gone away, in its plainWait
// slot, so that no later wait begins.
var clientLeft = new(originConn)

// leave ends the wait of the plain-HTTP request that this client has under
// way, if any, and any wait to come: the client closed its connection or
// broke it. Taking the origin connection out of plainWait first makes sure
// that it is that request's, never one that a later request took from the
// pool.
func (c *clientConn) leave() {
	if oc := c.plainWait.Swap(clientLeft); oc != nil && oc != clientLeft {
		oc.left.Store(true)
		_ = oc.conn.SetDeadline(time.Unix(1, 0))
	}
}

// originError words a failed exchange with an origin. A client that went
// away, and an origin silent for timeouts.idle, are said so.
func (s *Server) originError(ctx context.Context, c *originConn, doing string, err error) error {
	switch {
	case c != nil && c.left.Load() || ctx.Err() != nil:
		return fmt.Errorf("%s: the client went away", doing)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%s: nothing for timeouts.idle (%v): %w", doing, s.cfg.IdleTimeout,
			context.DeadlineExceeded)
	}
	return fmt.Errorf("%s: %w", doing, unwrapSyscall(err))
}

// originBody is the body of an origin's answer. Read to its end, it gives
// the connection back for the next request; closed before, it closes the
// connection rather than read the rest.
type originBody struct {
	body io.ReadCloser
	c    *originConn // nil once given back or closed
	s    *Server
	keep bool
	set  time.Time // when the read deadline was last moved
}

func (b *originBody) Read(p []byte) (int, error) {
	if b.c == nil {
		return 0, io.EOF
	}
	// timeouts.idle counts from the last byte, give or take an eighth of
	// it: moving the deadline costs a timer update, not done every read.
	if idle := b.s.cfg.IdleTimeout; time.Since(b.set) > idle/8 {
		b.set = time.Now()
		_ = b.c.conn.SetReadDeadline(b.set.Add(idle))
	}
	n, err := b.body.Read(p)
	switch {
	case err == io.EOF:
		c := b.c
		b.c = nil
		if b.keep {
			b.s.origins.put(c)
		} else {
			c.close()
		}
	case errors.Is(err, os.ErrDeadlineExceeded) && b.c.left.Load():
		err = errors.New("the client went away")
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = fmt.Errorf("%w for timeouts.idle (%v)", errOriginSilent, b.s.cfg.IdleTimeout)
	case err != nil:
		err = unwrapSyscall(err)
	}
	return n, err
}

func (b *originBody) Close() error {
	if b.c != nil {
		b.c.close()
		b.c = nil
	}
	return nil
}

// writeHead writes the head of a plain GET or HEAD without a body, what
// nearly every revocation fetch is, as http.Request.Write would (the same
// lines, a default User-Agent where the client sent none) but without its
// formatting and allocations. It writes nothing and returns false for any
// other request, and for anything in r that Request.Write would clean or
// refuse: those go through Request.Write.
func writeHead(bw *bufio.Writer, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead ||
		r.Body != nil && r.Body != http.NoBody || r.ContentLength != 0 ||
		len(r.TransferEncoding) > 0 || len(r.Trailer) > 0 || r.URL.Opaque != "" ||
		!plainHost(r.Host) {
		return false
	}
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	query := r.URL.ForceQuery || r.URL.RawQuery != ""
	if !printable(path) || !printable(r.URL.RawQuery) {
		return false
	}
	for k, vs := range r.Header {
		if !printable(k) || strings.ContainsAny(k, ": ") {
			return false
		}
		for _, v := range vs {
			if !printable(v) {
				return false
			}
		}
	}

	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(path)
	if query {
		bw.WriteByte('?')
		bw.WriteString(r.URL.RawQuery)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	if ua, ok := r.Header["User-Agent"]; !ok {
		bw.WriteString("User-Agent: " + defaultUserAgent + "\r\n")
	} else if len(ua) > 0 && ua[0] != "" {
		bw.WriteString("User-Agent: ")
		bw.WriteString(ua[0])
		bw.WriteString("\r\n")
	}
	if r.Close && !saysClose(r.Header) {
		bw.WriteString("Connection: close\r\n")
	}
	for k, vs := range r.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		for _, v := range vs {
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	bw.WriteString("\r\n")
	return true
}

// saysClose reports whether a Connection header has the close option.
func saysClose(h http.Header) bool {
	for _, v := range h["Connection"] {
		for opt := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(opt), "close") {
				return true
			}
		}
	}
	return false
}

// defaultUserAgent is what http.Request.Write sends for a request without
// a User-Agent header.
const defaultUserAgent = "Go-http-client/1.1"

// plainHost reports whether a Host value is a plain host[:port]: letters,
// digits and the punctuation of names and addresses, no zone, nothing to
// encode.
func plainHost(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '-' || c == '_' || c == ':' || c == '[' || c == ']'
		if !ok {
			return false
		}
	}
	return true
}

// printable reports whether s has no control byte (tabs aside) and no
// byte outside ASCII, so that it can go on the wire as it is.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c >= 0x7f {
			return false
		}
	}
	return true
}
