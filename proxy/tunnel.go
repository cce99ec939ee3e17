package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/inspect/tlsrec"
)

const (
	// chunk is how much one splice call may move before the byte counts
	// are updated, so /api/v1/active shows live figures.
	chunk = 1 << 20
	// tick bounds how long a read waits before the counts and the idle
	// timer are looked at again.
	tick = time.Second
	// sniffBuf is the read size while the handshake is being watched.
	sniffBuf = 16 << 10
)

var sniffPool = sync.Pool{New: func() any { b := make([]byte, sniffBuf); return &b }}

// established is the answer to a CONNECT whose tunnel is up; a variable, so
// that writing it does not convert and allocate for every tunnel.
var established = []byte("HTTP/1.1 200 Connection established\r\n\r\n")

// connect serves a CONNECT directly: dial, answer, relay.
func (s *Server) connect(w http.ResponseWriter, r *http.Request, o *inspect.Observation,
	start time.Time) {
	// A client may half-close its side right after the CONNECT; net/http
	// then cancels the request's context, but the tunnel is still wanted.
	server, err := s.dial(context.WithoutCancel(r.Context()), o.Event.Host, o.Event.Port)
	if err != nil {
		s.refuse(w, o, start, err.(*dialError))
		return
	}
	s.tunnel(w, r, o, start, server, nil)
}

// tunnel takes the client connection over, answers 200 and relays between
// it and server, watching the handshake. early are bytes the server side
// already sent.
func (s *Server) tunnel(w http.ResponseWriter, r *http.Request, o *inspect.Observation,
	start time.Time, server *net.TCPConn, early []byte) {
	ev := &o.Event
	hj, ok := w.(http.Hijacker)
	if !ok {
		_ = server.Close()
		ev.Outcome, ev.Status = inspect.BadRequest, http.StatusInternalServerError
		ev.Detail = "connection cannot be taken over for a tunnel"
		http.Error(w, ev.Detail, ev.Status)
		s.finish(o, start)
		return
	}
	c, rw, err := hj.Hijack()
	if err != nil {
		_ = server.Close()
		ev.Outcome, ev.Detail = inspect.DownloadAborted, "taking over the connection: "+err.Error()
		s.finish(o, start)
		return
	}
	cc := c.(*clientConn)
	client := cc.release()

	ev.Status = http.StatusOK
	t := &tunnel{s: s, o: o, client: client, server: server}
	t.last.Store(time.Now().UnixNano())
	s.wg.Add(1)
	s.tunnels.Store(ev.ID, t)
	s.openTunnels.Add(1)
	defer func() {
		s.tunnels.Delete(ev.ID)
		s.openTunnels.Add(-1)
		cc.done()
		s.wg.Done()
	}()

	if _, err := client.Write(established); err != nil {
		_ = client.Close()
		_ = server.Close()
		ev.Close = inspect.ClientRST
		t.finish(start)
		return
	}

	// Bytes the client sent right behind the CONNECT (often the
	// ClientHello) sit in the server's read buffer: relay them first.
	var fromClient []byte
	if n := rw.Reader.Buffered(); n > 0 {
		fromClient, _ = rw.Reader.Peek(n)
	}
	t.run(fromClient, early)
	t.finish(start)
}

// tunnel is one relayed CONNECT.
type tunnel struct {
	s              *Server
	o              *inspect.Observation
	client, server *net.TCPConn
	tls            tlsrec.Tracker

	up, down atomic.Int64
	last     atomic.Int64 // unix nanos of the last byte moved

	// limit bounds each splice of a direction to a chunk; kept here, so
	// that a chunk does not allocate one.
	limit [2]io.LimitedReader

	closeMu  sync.Mutex
	close    inspect.Close // the first way it ended wins
	stopping atomic.Bool
}

// run relays both directions until both have ended. fromClient and
// fromServer are bytes already read from each side.
func (t *tunnel) run(fromClient, fromServer []byte) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t.pump(t.server, t.client, tlsrec.ServerToClient, fromServer)
	}()
	t.pump(t.client, t.server, tlsrec.ClientToServer, fromClient)
	wg.Wait()
	_ = t.client.Close()
	_ = t.server.Close()
}

// pump copies src to dst: first read by read while the handshake is
// watched, then by splice in chunks.
func (t *tunnel) pump(src, dst *net.TCPConn, dir tlsrec.Direction, early []byte) {
	count := &t.up
	if dir == tlsrec.ServerToClient {
		count = &t.down
	}
	sniffing := true
	if len(early) > 0 {
		// Feed before forwarding, so the answer cannot be fed first.
		sniffing = !t.tls.Feed(dir, early)
		if _, err := dst.Write(early); err != nil {
			t.fail(dir, false)
			return
		}
		count.Add(int64(len(early)))
	}

	var bp *[]byte
	if sniffing {
		bp = sniffPool.Get().(*[]byte)
		defer func() {
			if bp != nil {
				sniffPool.Put(bp)
			}
		}()
	}
	for {
		_ = src.SetReadDeadline(time.Now().Add(tick))
		var n int64
		var err error
		var eof bool
		if sniffing {
			var m int
			m, err = src.Read(*bp)
			n = int64(m)
			if m > 0 {
				done := t.tls.Feed(dir, (*bp)[:m])
				if _, werr := dst.Write((*bp)[:m]); werr != nil {
					count.Add(n)
					t.fail(dir, false)
					return
				}
				if done {
					sniffing = false
					sniffPool.Put(bp)
					bp = nil
				}
			}
			eof = errors.Is(err, io.EOF)
		} else {
			lr := &t.limit[dir]
			lr.R, lr.N = src, chunk
			n, err = dst.ReadFrom(lr)
			eof = err == nil && n < chunk
		}
		if n > 0 {
			count.Add(n)
			t.last.Store(time.Now().UnixNano())
		}

		switch {
		case eof:
			t.ended(dir, false)
			_ = dst.CloseWrite()
			return
		case err == nil:
			continue
		case errors.Is(err, os.ErrDeadlineExceeded):
			if t.stopping.Load() {
				return
			}
			last := time.Unix(0, t.last.Load())
			if time.Since(last) < t.s.cfg.IdleTimeout {
				if n == 0 {
					// Nothing came this tick: sleep until something
					// does or the tunnel may have gone idle, so that
					// a quiet tunnel costs no wake-up every tick.
					waitReadable(src, last.Add(t.s.cfg.IdleTimeout))
				}
				continue
			}
			t.setClose(inspect.IdleTimeout)
			t.abort()
			return
		default:
			if t.stopping.Load() {
				return
			}
			t.fail(dir, !alive(src))
			return
		}
	}
}

// fail ends the tunnel after an error in direction dir. srcDead says the
// source side broke; otherwise the destination did.
func (t *tunnel) fail(dir tlsrec.Direction, srcDead bool) {
	if srcDead {
		t.ended(dir, true)
	} else {
		t.ended(1-dir, true)
	}
	t.abort()
}

// ended notes the first way the tunnel ended: a FIN or a reset from the
// side that dir reads.
func (t *tunnel) ended(dir tlsrec.Direction, reset bool) {
	var c inspect.Close
	switch {
	case dir == tlsrec.ClientToServer && reset:
		c = inspect.ClientRST
	case dir == tlsrec.ClientToServer:
		c = inspect.ClientFIN
	case reset:
		c = inspect.ServerRST
	default:
		c = inspect.ServerFIN
	}
	t.setClose(c)
}

func (t *tunnel) setClose(c inspect.Close) {
	t.closeMu.Lock()
	switch {
	case t.close == "":
		t.close = c
	case t.close == inspect.ClientFIN && c == inspect.ClientRST:
		// The client closed while the server was still sending, and its
		// side reset the data that kept coming: it gave up mid-transfer.
		t.close = c
	}
	t.closeMu.Unlock()
}

// abort tears both sides down with a reset, as the broken side did, so the
// endpoint sees the failure rather than a clean end.
func (t *tunnel) abort() {
	t.stopping.Store(true)
	_ = t.client.SetLinger(0)
	_ = t.server.SetLinger(0)
	_ = t.client.Close()
	_ = t.server.Close()
}

// shutdown ends a tunnel that outlived the proxy's grace period.
func (t *tunnel) shutdown() {
	t.setClose(inspect.ProxyShutdown)
	t.abort()
}

// alive reports whether c can still be read: a peek that would block or
// finds data means the peer did not reset it.
func alive(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	_ = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		ok = n > 0 || err == syscall.EAGAIN
		return true
	})
	return ok
}

// waitReadable blocks until c has bytes or its end to read, or until
// deadline, and reads nothing.
func waitReadable(c *net.TCPConn, deadline time.Time) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = c.SetReadDeadline(deadline)
	_ = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN
	})
}

func (t *tunnel) snapshot() inspect.Event {
	ev := t.o.Event
	ev.BytesUp, ev.BytesDown = t.up.Load(), t.down.Load()
	ev.DurationMS = float64(time.Since(ev.Time).Microseconds()) / 1000
	r := t.tls.Result()
	ev.SNI, ev.TLSVersion = r.SNI, r.Version
	return ev
}

func (t *tunnel) finish(start time.Time) {
	ev := &t.o.Event
	ev.BytesUp, ev.BytesDown = t.up.Load(), t.down.Load()
	t.closeMu.Lock()
	ev.Close = t.close
	t.closeMu.Unlock()
	if ev.Close == "" {
		ev.Close = inspect.ClientFIN
	}
	r := t.tls.Result()
	t.o.TLS = &r
	t.s.finish(t.o, start)
}
