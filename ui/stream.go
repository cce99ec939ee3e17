package ui

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tetrascope/tetrascope/inspect"
)

// Sizes and waits of a stream connection that tests do not change.
const (
	// readLimit bounds what a viewer may send: the stream takes no
	// messages, only control frames.
	readLimit = 512
	// closeWait bounds writing the close frame and waiting for the
	// client's answer to it.
	closeWait = time.Second
)

var (
	// errStopped ends a replay whose viewer was stopped meanwhile.
	errStopped = errors.New("viewer stopped")
	// errReplay is the store failing to answer a replay.
	errReplay = errors.New("querying events to replay")
)

// serveStream upgrades to a websocket and sends, in order: the replay from
// the store (backfill=N or after=ID), the tunnels open now as open
// messages, the clients that match the viewer's client and user filters as
// client messages, a first stats message, then live messages until the
// viewer leaves, falls behind or the server shuts down.
func (s *Server) serveStream(w http.ResponseWriter, r *http.Request) {
	sq, err := parseStreamQuery(r.URL.Query(), time.Now())
	if err != nil {
		writeParamError(w, err)
		return
	}
	bw := &batchWriter{ResponseWriter: w}
	conn, err := s.upgrader.Upgrade(bw, r, nil)
	if err != nil {
		// The upgrader has answered the client already.
		s.log.Debug("websocket upgrade refused", keyRemoteAddr, r.RemoteAddr, keyErr, err)
		return
	}
	defer conn.Close()
	if err := bw.conn.flush(); err != nil { // the 101 answer
		return
	}

	// Join the live fan-out before reading the store, so that nothing
	// that ends during the replay is missed; what the replay sends is
	// then skipped in the live queue.
	v := s.addViewer(sq.liveFilter())
	if v == nil {
		closeConn(conn, websocket.CloseGoingAway, reasonShutdown, nil)
		return
	}
	log := s.log.With(keyRemoteAddr, r.RemoteAddr)
	log.Debug("viewer joined", keyViewers, s.Viewers())

	readDone := make(chan struct{})
	go s.readLoop(conn, v, readDone)

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	go func() {
		select {
		case <-v.done:
			cancel()
		case <-ctx.Done():
		}
	}()

	sent, err := s.catchUp(ctx, conn, v, sq)
	if err == nil {
		err = bw.conn.flush()
	}
	if err == nil {
		err = s.writeLoop(conn, bw.conn, v, sent)
	}
	s.removeViewer(v)

	// A viewer stopped by the server hears why; one that failed or left
	// is just closed.
	switch {
	case errors.Is(err, errReplay):
		log.Error("stream replay failed", keyErr, err)
		closeConn(conn, websocket.CloseInternalServerErr, "querying the event store failed",
			readDone)
	case v.code == websocket.CloseTryAgainLater:
		log.Warn("viewer dropped", keyReason, v.reason, keyViewers, s.Viewers())
	case v.code != 0:
		log.Debug("viewer closed", keyReason, v.reason)
	case err != nil && !errors.Is(err, errStopped):
		log.Debug("viewer failed", keyErr, err)
	default:
		log.Debug("viewer left", keyViewers, s.Viewers())
	}
	switch {
	case v.code != 0:
		closeConn(conn, v.code, v.reason, readDone)
	case v.peerClose.Load() != 0:
		// The client closed: answer with its code, as RFC 6455 asks.
		closeConn(conn, int(v.peerClose.Load()), "", nil)
	}
}

// caughtUp is what a catch-up sent, so that the live queue can skip it.
type caughtUp struct {
	replayed  map[int64]bool // ids of the stored events sent
	clientSeq uint64         // client messages up to this number are in the snapshot
}

// catchUp sends what a viewer asked to see before the live messages, and
// says what it sent.
func (s *Server) catchUp(ctx context.Context, conn *websocket.Conn, v *viewer,
	sq streamQuery) (caughtUp, error) {
	replayed := make(map[int64]bool)

	// The store answers newest first; the viewer gets them oldest first.
	if f, ok := sq.replayFilter(); ok && s.deps.Events != nil {
		events, err := s.deps.Events.Events(ctx, f)
		if err != nil {
			if ctx.Err() != nil {
				return caughtUp{}, errStopped
			}
			return caughtUp{}, fmt.Errorf("%w: %w", errReplay, err)
		}
		if len(events) > f.Limit {
			events = events[:f.Limit]
		}
		for i := len(events) - 1; i >= 0; i-- {
			if err := s.writeEvent(conn, v, KindEvent, events[i]); err != nil {
				return caughtUp{}, err
			}
			replayed[events[i].ID] = true
		}
	}

	// Tunnels that opened before this viewer came are shown as open too,
	// unless the replay already holds their end.
	if s.deps.Active != nil {
		active := slices.Clone(s.deps.Active())
		slices.SortFunc(active, func(a, b inspect.Event) int {
			return cmp.Compare(a.ID, b.ID)
		})
		for _, ev := range active {
			if replayed[ev.ID] || !v.filter.Match(&ev) {
				continue
			}
			if err := s.writeEvent(conn, v, KindOpen, ev); err != nil {
				return caughtUp{}, err
			}
		}
	}

	// The clients as they are now. A change published before the
	// snapshot was taken is in it; the live queue skips its message,
	// which would otherwise show an older state after this newer one.
	seq := s.clientSeq.Load()
	if s.deps.Clients != nil {
		for _, c := range s.deps.Clients() {
			if !clientMatch(&v.filter, &c) {
				continue
			}
			if err := s.writeClient(conn, v, c); err != nil {
				return caughtUp{}, err
			}
		}
	}

	// The first stats message tells the page that the catch-up is over.
	if err := s.write(conn, s.statsMessage()); err != nil {
		return caughtUp{}, err
	}
	return caughtUp{replayed: replayed, clientSeq: seq}, nil
}

// The coalescing pause of a viewer's writer grows with the number of
// viewers, so that together they make about a thousand write system calls a
// second at most, whatever their number: one viewer sees an event a few
// milliseconds after it ends, twenty viewers within twenty. Each write
// costs the proxy's processor about as much as a few dozen messages.
const (
	coalesceMin       = 4 * time.Millisecond
	coalescePerViewer = time.Millisecond
	coalesceMax       = 20 * time.Millisecond
)

// coalesce returns the least time between two writes of live messages to
// a viewer, so that what comes meanwhile goes out with one write.
func (s *Server) coalesce() time.Duration {
	return min(max(time.Duration(s.Viewers())*coalescePerViewer, coalesceMin), coalesceMax)
}

// writeLoop sends live messages, stats, pings and pongs until the viewer is
// stopped or a write fails. Once the catch-up is over, every write to the
// viewer happens here: the live messages' frames, encoded once for all
// viewers, are copied as they are, between whole frames of the websocket
// library's.
func (s *Server) writeLoop(conn *websocket.Conn, bc *batchConn, v *viewer,
	sent caughtUp) error {
	ping := time.NewTicker(s.pingPeriod)
	defer ping.Stop()
	stats := time.NewTicker(s.statsPeriod)
	defer stats.Stop()

	var last time.Time // when live messages were last written
	for {
		// A stopped viewer gets no more messages, even when some are
		// queued.
		select {
		case <-v.done:
			return nil
		default:
		}

		select {
		case <-v.done:
			return nil
		case <-v.wake:
			// Live messages are written at most once per coalescing
			// pause, all that came within it at once. While they keep
			// coming, the token is there before the writer asks for
			// it, and the pause is its one wake-up per write.
			if wait := time.Until(last.Add(s.coalesce())); wait > 0 {
				time.Sleep(wait)
			}
			last = time.Now()
			if err := bc.SetWriteDeadline(last.Add(s.writeWait)); err != nil {
				return fmt.Errorf("setting write deadline: %w", err)
			}
			if err := s.writeLive(v, bc, &sent); err != nil {
				return err
			}
		case <-stats.C:
			if err := s.write(conn, s.statsMessage()); err != nil {
				return err
			}
		case <-ping.C:
			deadline := time.Now().Add(s.writeWait)
			if err := conn.WriteControl(websocket.PingMessage, nil, deadline); err != nil {
				return fmt.Errorf("sending ping: %w", err)
			}
		case data := <-v.pings:
			deadline := time.Now().Add(s.writeWait)
			if err := conn.WriteControl(websocket.PongMessage, data, deadline); err != nil {
				return fmt.Errorf("sending pong: %w", err)
			}
		}
		if err := bc.flush(); err != nil {
			return fmt.Errorf("writing to the viewer: %w", err)
		}
	}
}

// writeLive copies the frames of the live messages for v into bc, skipping
// those the catch-up sent, and writes them out whenever bc is full. Copying
// happens while the log is locked, writing to the connection never.
func (s *Server) writeLive(v *viewer, bc *batchConn, sent *caughtUp) error {
	for {
		var big []byte // a frame larger than bc's whole buffer
		more, ok := s.consume(v, func(m *message) bool {
			switch {
			case big != nil:
				return false
			case m.id != 0 && sent.replayed[m.id] || m.seq != 0 && m.seq <= sent.clientSeq:
			case len(m.frame) <= bc.w.Available():
				_, _ = bc.w.Write(m.frame) // fits: a copy, which cannot fail
			case bc.w.Buffered() == 0:
				big = m.frame
			default:
				return false
			}
			return true
		})
		if !ok {
			if s.stopViewer(v, websocket.CloseTryAgainLater, reasonTooSlow) {
				s.slow.Add(1)
			}
			return errStopped
		}
		if big != nil {
			if err := bc.write(big); err != nil {
				return fmt.Errorf("writing to the viewer: %w", err)
			}
		}
		if !more {
			return nil
		}
		if err := bc.flush(); err != nil {
			return fmt.Errorf("writing to the viewer: %w", err)
		}
	}
}

// readLoop reads what the client sends, which is only control frames that
// matter (ping, pong, close), and stops the viewer when the client leaves or
// no pong comes in time. It writes nothing itself: a ping's pong goes
// through the writer, and a close is answered once the writer has stopped,
// so that no frame is cut by another and none follows the close.
func (s *Server) readLoop(conn *websocket.Conn, v *viewer, done chan<- struct{}) {
	defer close(done)
	conn.SetReadLimit(readLimit)
	_ = conn.SetReadDeadline(time.Now().Add(s.pongWait))
	conn.SetPongHandler(func(string) error {
		return conn.SetReadDeadline(time.Now().Add(s.pongWait))
	})
	conn.SetPingHandler(func(data string) error {
		select {
		case v.pings <- []byte(data):
		default: // a pong is on its way already
		}
		return conn.SetReadDeadline(time.Now().Add(s.pongWait))
	})
	conn.SetCloseHandler(func(code int, _ string) error {
		if code == websocket.CloseNoStatusReceived {
			code = websocket.CloseNormalClosure
		}
		v.peerClose.Store(int32(code))
		s.stopViewer(v, 0, "")
		return nil
	})
	for {
		if _, _, err := conn.NextReader(); err != nil {
			s.stopViewer(v, 0, "")
			return
		}
	}
}

// writeEvent sends one event message, unless the viewer has been stopped.
func (s *Server) writeEvent(conn *websocket.Conn, v *viewer, kind string,
	ev inspect.Event) error {
	select {
	case <-v.done:
		return errStopped
	default:
	}
	ev.Time = ev.Time.UTC()
	data, err := eventMessage(kind, &ev)
	if err != nil {
		return fmt.Errorf("encoding event %d: %w", ev.ID, err)
	}
	return s.write(conn, data)
}

// writeClient sends one client message, unless the viewer has been
// stopped.
func (s *Server) writeClient(conn *websocket.Conn, v *viewer, c inspect.Client) error {
	select {
	case <-v.done:
		return errStopped
	default:
	}
	data, err := json.Marshal(streamMessage{Type: KindClient, Client: &c})
	if err != nil {
		return fmt.Errorf("encoding client %s: %w", c.ClientIP, err)
	}
	return s.write(conn, data)
}

// write sends one text message within the write wait.
func (s *Server) write(conn *websocket.Conn, data []byte) error {
	if err := conn.SetWriteDeadline(time.Now().Add(s.writeWait)); err != nil {
		return fmt.Errorf("setting write deadline: %w", err)
	}
	if err := conn.WriteMessage(websocket.TextMessage, data); err != nil {
		return fmt.Errorf("writing message: %w", err)
	}
	return nil
}

// statsMessage encodes the counters of a stats message: those of
// Deps.Stats, plus viewers, viewers_dropped and sensor.
func (s *Server) statsMessage() []byte {
	stats := make(map[string]any)
	if s.deps.Stats != nil {
		for k, v := range s.deps.Stats() {
			stats[k] = v
		}
	}
	stats["viewers"] = s.Viewers()
	stats["viewers_dropped"] = s.slow.Load()
	if s.cfg.Sensor != "" {
		stats["sensor"] = s.cfg.Sensor
	}
	data, err := json.Marshal(streamMessage{Type: KindStats, Stats: stats})
	if err != nil {
		// A counter of Deps.Stats that JSON cannot encode: keep ours.
		s.log.Error("encoding stats message", keyErr, err)
		data, _ = json.Marshal(streamMessage{Type: KindStats, Stats: map[string]any{
			"viewers":         s.Viewers(),
			"viewers_dropped": s.slow.Load(),
		}})
	}
	return data
}

// closeConn sends a close frame with a code and reason and, when readDone
// is given, waits a moment for the client's answer, so that the connection
// is not reset under data the client has not read yet.
func closeConn(conn *websocket.Conn, code int, reason string, readDone <-chan struct{}) {
	msg := websocket.FormatCloseMessage(code, reason)
	deadline := time.Now().Add(closeWait)
	if err := conn.WriteControl(websocket.CloseMessage, msg, deadline); err != nil {
		return
	}
	if bc, ok := conn.UnderlyingConn().(*batchConn); ok && bc.flush() != nil {
		return
	}
	if readDone == nil {
		return
	}
	select {
	case <-readDone:
	case <-time.After(closeWait):
	}
}

// sameOrigin accepts a websocket request without an Origin header (not a
// browser) or whose Origin names the host the request was sent to, so that
// no other site's page can read the stream with the admin's browser.
func sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}
