package ui

import (
	"encoding/json"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/gorilla/websocket"

	"github.com/tetrascope/tetrascope/inspect"
)

// Message kinds of the stream.
const (
	// KindOpen is the message of a connection that has just started: the
	// event's fields known so far, no outcome yet.
	KindOpen = "open"
	// KindEvent is the message of a connection or request that has ended;
	// it carries the same id as the open message before it, if any.
	KindEvent = "event"
	// KindStats is the message of counters sent about once a second.
	KindStats = "stats"
	// KindClient is the message of a client whose health changed; a
	// viewer also gets one per client at the end of its catch-up.
	KindClient = "client"
)

// streamMessage is one text message of the stream.
type streamMessage struct {
	Type   string          `json:"type"`
	Event  *inspect.Event  `json:"event,omitempty"`
	Client *inspect.Client `json:"client,omitempty"`
	Stats  map[string]any  `json:"stats,omitempty"`
}

// message is one encoded stream message queued for a viewer. The bytes are
// shared by every viewer and must not be changed.
type message struct {
	id   int64  // the event's id; 0 for a client message
	seq  uint64 // a client message's number (Server.clientSeq); 0 for events
	data []byte
}

// viewer is one websocket client of the stream.
type viewer struct {
	filter inspect.Filter // live filter: no id bounds, no limit
	send   chan message   // bounded; Publish never waits on it
	done   chan struct{}  // closed by stop
	gone   atomic.Bool    // set by stop, read by Publish to skip the viewer

	once   sync.Once
	code   int    // websocket close code, 0 when the client went away
	reason string // close reason sent to the client
}

// Close codes and reasons of viewers the server stops.
const (
	reasonTooSlow  = "too slow: send buffer full, reconnect with after=<last id>"
	reasonShutdown = "server shutting down"
)

// Publish sends one event to every viewer whose filter matches it; kind is
// KindOpen when the connection has started and KindEvent when it has ended.
// The message is encoded once and queued for each viewer without waiting: a
// viewer whose queue is full is dropped (its websocket is closed with a
// reason), so a slow viewer never slows the caller or the other viewers.
func (s *Server) Publish(kind string, ev inspect.Event) {
	viewers := s.viewers.Load()
	if viewers == nil || len(*viewers) == 0 {
		return
	}
	ev.Time = ev.Time.UTC()
	data, err := json.Marshal(streamMessage{Type: kind, Event: &ev})
	if err != nil {
		// An Event has only plain fields; this cannot happen, and
		// there is no one to tell but the log.
		s.log.Error("encoding stream message", keyErr, err)
		return
	}
	m := message{id: ev.ID, data: data}

	for _, v := range *viewers {
		if v.gone.Load() || !v.filter.Match(&ev) {
			continue
		}
		select {
		case v.send <- m:
		default:
			if s.stopViewer(v, websocket.CloseTryAgainLater, reasonTooSlow) {
				s.slow.Add(1)
			}
		}
	}
}

// PublishClient sends a client whose health changed to every viewer whose
// client and user filters match it (the other filters concern events). Like
// Publish, it encodes the message once, never waits, and drops a viewer
// whose queue is full.
func (s *Server) PublishClient(c inspect.Client) {
	// The number is taken even with no viewer, so that a viewer's
	// catch-up can tell the changes its snapshot already holds.
	seq := s.clientSeq.Add(1)
	viewers := s.viewers.Load()
	if viewers == nil || len(*viewers) == 0 {
		return
	}
	data, err := json.Marshal(streamMessage{Type: KindClient, Client: &c})
	if err != nil {
		// A Client has only plain fields; this cannot happen.
		s.log.Error("encoding stream message", keyErr, err)
		return
	}
	m := message{seq: seq, data: data}

	for _, v := range *viewers {
		if v.gone.Load() || !clientMatch(&v.filter, &c) {
			continue
		}
		select {
		case v.send <- m:
		default:
			if s.stopViewer(v, websocket.CloseTryAgainLater, reasonTooSlow) {
				s.slow.Add(1)
			}
		}
	}
}

// Viewers returns the number of stream viewers connected and not dropped.
func (s *Server) Viewers() int { return int(s.nviewers.Load()) }

// ViewersDropped returns the number of viewers dropped since start because
// they did not keep up.
func (s *Server) ViewersDropped() int64 { return s.slow.Load() }

// addViewer registers a viewer of the live events that match f, counted in
// s.handlers until its handler calls removeViewer. It returns nil once the
// server is shutting down.
func (s *Server) addViewer(f inspect.Filter) *viewer {
	v := &viewer{
		filter: f,
		send:   make(chan message, s.viewerBuffer),
		done:   make(chan struct{}),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	var next []*viewer
	if old := s.viewers.Load(); old != nil {
		next = slices.Clone(*old)
	}
	next = append(next, v)
	s.viewers.Store(&next)
	s.nviewers.Add(1)
	s.handlers.Add(1)
	return v
}

// removeViewer stops v, if not yet stopped, and forgets it. Call it once
// per viewer that addViewer returned.
func (s *Server) removeViewer(v *viewer) {
	s.stopViewer(v, 0, "")
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.viewers.Load()
	next := slices.DeleteFunc(slices.Clone(old), func(w *viewer) bool { return w == v })
	s.viewers.Store(&next)
	s.handlers.Done()
}

// stopViewer marks v stopped with a close code and reason, once; it reports
// whether this call stopped it. It takes no lock, so Publish may call it.
func (s *Server) stopViewer(v *viewer, code int, reason string) bool {
	stopped := false
	v.once.Do(func() {
		v.code, v.reason = code, reason
		v.gone.Store(true)
		close(v.done)
		s.nviewers.Add(-1)
		stopped = true
	})
	return stopped
}

// closeViewers stops every viewer for a shutdown and lets no new one join.
func (s *Server) closeViewers() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if viewers := s.viewers.Load(); viewers != nil {
		for _, v := range *viewers {
			s.stopViewer(v, websocket.CloseGoingAway, reasonShutdown)
		}
	}
}
