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
	// tick is how long a read may wait before the counts and the idle
	// timer are looked at again. The deadline is set again only when it
	// has passed, not before every read: setting it costs a timer update,
	// several per tunnel that lasts a moment.
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
	// (The front's requests have no cancellation to shed.)
	ctx := r.Context()
	if ctx.Done() != nil {
		ctx = context.WithoutCancel(ctx)
	}
	server, err := s.dial(ctx, o.Event.Host, o.Event.Port)
	if err != nil {
		s.refuse(w, o, start, err.(*dialError))
		return
	}
	s.tunnel(w, r, o, start, server, nil)
}

// tunnel takes the client connection over, answers 200 and relays between
// it and server, watching the handshake. early are bytes the server side
// already sent.
func (s *Server) tunnel(w http.ResponseWriter, _ *http.Request, o *inspect.Observation,
	start time.Time, server *net.TCPConn, early []byte) {
	ev := &o.Event
	cc, fromClient, err := takeOver(w)
	if err != nil {
		_ = server.Close()
		if errors.Is(err, errNoTakeOver) {
			ev.Outcome, ev.Status = inspect.BadRequest, http.StatusInternalServerError
			ev.Detail = err.Error()
			http.Error(w, ev.Detail, ev.Status)
		} else {
			ev.Outcome, ev.Detail = inspect.DownloadAborted, err.Error()
		}
		s.finish(o, start)
		return
	}
	client := cc.release()

	ev.Status = http.StatusOK
	t := &tunnel{s: s, o: o, client: client, server: server}
	t.last.Store(time.Now().UnixNano())
	s.wg.Add(1)
	defer s.wg.Done()
	defer cc.done()
	s.tunnels.add(uint64(ev.ID), t)
	s.openTunnels.Add(1)
	if s.closing.Load() {
		// The grace period is over: the tunnel is not wanted anymore.
		t.shutdown()
	}

	if _, err := client.Write(established); err == nil {
		t.run(fromClient, early)
	} else {
		t.setClose(inspect.ClientRST)
		_ = client.Close()
		_ = server.Close()
	}

	// Out of the listing before its event is completed, so that a listing
	// never reads an event being written.
	s.tunnels.remove(uint64(ev.ID), t)
	s.openTunnels.Add(-1)
	t.finish(start)
}

// tunnel is one relayed CONNECT.
type tunnel struct {
	s              *Server
	o              *inspect.Observation
	client, server *net.TCPConn
	tls            tlsrec.Tracker

	up, down atomic.Int64
	// last is when bytes were last seen moving, in unix nanos, and moved
	// the bytes moved by then in both directions. They are brought up to
	// date when a read's deadline passes (lastMoved), a tick at a time,
	// rather than by reading the clock after every read.
	last, moved atomic.Int64

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
	t.s.work.run(func() {
		defer wg.Done()
		t.pump(t.server, t.client, tlsrec.ServerToClient, fromServer)
	})
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
	_ = src.SetReadDeadline(time.Now().Add(tick))
	for {
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
			now := time.Now()
			last := t.lastMoved(now)
			if now.Sub(last) < t.s.cfg.IdleTimeout {
				if n == 0 {
					// Nothing came this tick: sleep until something
					// does or the tunnel may have gone idle, so that
					// a quiet tunnel costs no wake-up every tick.
					waitReadable(src, last.Add(t.s.cfg.IdleTimeout))
				}
				_ = src.SetReadDeadline(time.Now().Add(tick))
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

// lastMoved returns when bytes last moved in either direction, as seen at
// now: now itself if some moved since the previous look.
func (t *tunnel) lastMoved(now time.Time) time.Time {
	if total := t.up.Load() + t.down.Load(); t.moved.Swap(total) != total {
		t.last.Store(now.UnixNano())
		return now
	}
	return time.Unix(0, t.last.Load())
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
