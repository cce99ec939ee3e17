package ui

import (
	"encoding/binary"
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

// message is one encoded stream message of the log. The bytes are shared
// by every viewer and must not be changed.
type message struct {
	id    int64  // the event's id; 0 for a client message
	seq   uint64 // a client message's number (Server.clientSeq); 0 for events
	data  []byte // the JSON text
	frame []byte // the websocket frame that carries data, data at its end
}

// frameRoom is the room a message's buffer keeps in front of its JSON
// text for the longest websocket frame header.
const frameRoom = 10

// newMessage frames the JSON text at b[frameRoom:] once for every viewer: a
// websocket text frame from the server (RFC 6455, section 5.2) is a header
// of two to ten bytes, FIN and the opcode then the payload length, followed
// by the payload unmasked and uncompressed, as the upgrader negotiates no
// extension. The header is written into the room in front of the text.
func newMessage(id int64, seq uint64, b []byte) message {
	payload := b[frameRoom:]
	var room [frameRoom]byte
	h := append(room[:0], 0x80|websocket.TextMessage)
	switch n := len(payload); {
	case n < 126:
		h = append(h, byte(n))
	case n <= 0xffff:
		h = binary.BigEndian.AppendUint16(append(h, 126), uint16(n))
	default:
		h = binary.BigEndian.AppendUint64(append(h, 127), uint64(n))
	}
	frame := b[frameRoom-len(h):]
	copy(frame, h)
	return message{id: id, seq: seq, data: payload, frame: frame}
}

// entry is one message of the stream's log, with what the viewers' filters
// look at.
type entry struct {
	msg message
	ev  *inspect.Event  // the event of an open or event message; nil otherwise
	cl  *inspect.Client // the client of a client message; nil otherwise
}

// streamLog is the live stream as one bounded log, which every viewer's
// writer reads at its own pace: Publish appends each message once, whatever
// the number of viewers, and a viewer that falls more than the log's length
// behind has lost messages and is dropped. Entries are numbered from 0 in
// the order they were appended.
type streamLog struct {
	mu      sync.Mutex
	entries []entry // a ring: entry n is at n % len(entries)
	next    uint64  // the number of the next entry
}

func newStreamLog(size int) *streamLog {
	return &streamLog{entries: make([]entry, max(size, 1))}
}

// append adds en and returns the number of entries appended so far.
func (l *streamLog) append(en entry) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries[l.next%uint64(len(l.entries))] = en
	l.next++
	return l.next
}

// end returns the number of the next entry.
func (l *streamLog) end() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.next
}

// clear lets go of the messages, keeping the numbering.
func (l *streamLog) clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	clear(l.entries)
}

// viewer is one websocket client of the stream.
type viewer struct {
	filter    inspect.Filter // live filter: no id bounds, no limit
	wake      chan struct{}  // holds a token when the log may hold messages for it
	cursor    atomic.Uint64  // the number of the next log entry it reads
	done      chan struct{}  // closed by stop
	gone      atomic.Bool    // set by stop, read by Publish to skip the viewer
	pings     chan []byte    // a ping's data, for the writer to answer
	peerClose atomic.Int32   // the close code the client sent; 0 before

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
// The message is encoded once and appended to the stream's log without
// waiting; each viewer's writer takes it from there. A viewer that has
// fallen a whole log behind is dropped (its websocket is closed with a
// reason), so a slow viewer never slows the caller or the other viewers.
func (s *Server) Publish(kind string, ev inspect.Event) {
	viewers := s.viewers.Load()
	if viewers == nil || len(*viewers) == 0 {
		return
	}
	// A copy made here, not ev itself, moves to the heap: with no viewer,
	// Publish allocates nothing.
	e := ev
	e.Time = e.Time.UTC()
	b, err := appendEventMessage(make([]byte, frameRoom, 512), kind, &e)
	if err != nil {
		// An Event has only plain fields; this cannot happen, and
		// there is no one to tell but the log.
		s.log.Error("encoding stream message", keyErr, err)
		return
	}
	s.fanOut(*viewers, entry{msg: newMessage(e.ID, 0, b), ev: &e})
}

// PublishClient sends a client whose health changed to every viewer whose
// client and user filters match it (the other filters concern events). Like
// Publish, it encodes the message once, never waits, and drops a viewer
// that has fallen a whole log behind.
func (s *Server) PublishClient(c inspect.Client) {
	// The number is taken even with no viewer, so that a viewer's
	// catch-up can tell the changes its snapshot already holds.
	seq := s.clientSeq.Add(1)
	viewers := s.viewers.Load()
	if viewers == nil || len(*viewers) == 0 {
		return
	}
	cl := c // on the heap only when there are viewers; see Publish
	data, err := json.Marshal(streamMessage{Type: KindClient, Client: &cl})
	if err != nil {
		// A Client has only plain fields; this cannot happen.
		s.log.Error("encoding stream message", keyErr, err)
		return
	}
	b := append(make([]byte, frameRoom, frameRoom+len(data)), data...)
	s.fanOut(*viewers, entry{msg: newMessage(0, seq, b), cl: &cl})
}

// fanOut appends en to the log and wakes the viewers' writers, dropping
// the viewers that have fallen a whole log behind. Waking a writer that
// has a token already costs nothing.
func (s *Server) fanOut(viewers []*viewer, en entry) {
	sl := s.stream.Load()
	next := sl.append(en)
	size := uint64(len(sl.entries))
	for _, v := range viewers {
		if v.gone.Load() {
			continue
		}
		if next-v.cursor.Load() > size {
			if s.stopViewer(v, websocket.CloseTryAgainLater, reasonTooSlow) {
				s.slow.Add(1)
			}
			continue
		}
		select {
		case v.wake <- struct{}{}:
		default:
		}
	}
}

// consume hands fn, in order, the messages of the log for v (those its
// filter matches) from its cursor on, and moves the cursor past them; fn
// returns false for a message it cannot take now, which ends the call and
// stays for the next. It reports whether messages are left, and false for
// ok when the log has overwritten entries v had not read: v was too slow.
// fn runs under the log's lock, which Publish waits for: it must only copy.
func (s *Server) consume(v *viewer, fn func(m *message) bool) (more, ok bool) {
	sl := s.stream.Load()
	sl.mu.Lock()
	defer sl.mu.Unlock()
	n, size := v.cursor.Load(), uint64(len(sl.entries))
	if sl.next-n > size {
		return false, false
	}
	for ; n < sl.next; n++ {
		en := &sl.entries[n%size]
		match := en.ev != nil && v.filter.Match(en.ev) ||
			en.cl != nil && clientMatch(&v.filter, en.cl)
		if match && !fn(&en.msg) {
			break
		}
	}
	v.cursor.Store(n)
	return n < sl.next, true
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
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		pings:  make(chan []byte, 1),
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if s.stream.Load() == nil {
		s.stream.Store(newStreamLog(s.viewerBuffer))
	}
	// The viewer reads what is appended from now on. A message appended
	// by a Publish that did not see the viewer yet is not woken for: the
	// first token has the writer look.
	v.cursor.Store(s.stream.Load().end())
	v.wake <- struct{}{}
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
	if len(next) == 0 {
		s.stream.Load().clear()
	}
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
