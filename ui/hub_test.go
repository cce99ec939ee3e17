package ui

import (
	"encoding/json"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/tetrascope/tetrascope/inspect"
)

func TestPublishEncodesOnce(t *testing.T) {
	s := New(Config{}, Deps{})
	var vs []*viewer
	for range 3 {
		vs = append(vs, s.addViewer(inspect.Filter{}))
	}
	other := s.addViewer(inspect.Filter{ClientIP: "10.9.9.9"})
	defer func() {
		for _, v := range append(vs, other) {
			s.removeViewer(v)
		}
	}()

	s.Publish(KindEvent, ended(1, "10.0.0.1", inspect.OK))

	var first *byte
	for i, v := range vs {
		msgs := queued(t, s, v)
		if len(msgs) != 1 {
			t.Errorf("viewer %d got %d messages; want 1", i, len(msgs))
			continue
		}
		m := msgs[0]
		if i == 0 {
			first = &m.data[0]
			var got received
			if err := json.Unmarshal(m.data, &got); err != nil || got.Type != KindEvent ||
				got.Event.ID != 1 {
				t.Errorf("message %s (%v); want event 1", m.data, err)
			}
		} else if &m.data[0] != first {
			t.Errorf("viewer %d got its own encoding; want the shared one", i)
		}
	}
	if got := queued(t, s, other); len(got) != 0 {
		t.Errorf("a viewer whose filter does not match got %d messages", len(got))
	}
}

// queued returns the messages the stream's log holds for v, as its writer
// would take them, and moves v past them.
func queued(t testing.TB, s *Server, v *viewer) []message {
	t.Helper()
	var msgs []message
	_, ok := s.consume(v, func(m *message) bool {
		msgs = append(msgs, *m)
		return true
	})
	if !ok {
		t.Fatal("the viewer fell a whole log behind")
	}
	return msgs
}

func TestPublishDropsFullViewer(t *testing.T) {
	s := New(Config{}, Deps{})
	s.viewerBuffer = 2
	full := s.addViewer(inspect.Filter{})
	roomy := s.addViewer(inspect.Filter{})
	defer s.removeViewer(full)
	defer s.removeViewer(roomy)

	for i := range int64(2) {
		s.Publish(KindEvent, ended(i+1, "10.0.0.1", inspect.OK))
		queued(t, s, roomy) // its writer keeps up
	}
	s.Publish(KindEvent, ended(3, "10.0.0.1", inspect.OK)) // full has no room

	select {
	case <-full.done:
	default:
		t.Fatal("the full viewer was not stopped")
	}
	if full.code != websocket.CloseTryAgainLater || full.reason != reasonTooSlow {
		t.Errorf("stopped with %d %q; want %d %q", full.code, full.reason,
			websocket.CloseTryAgainLater, reasonTooSlow)
	}
	if got := len(queued(t, s, roomy)); got != 1 {
		t.Errorf("the other viewer has %d queued; want 1", got)
	}
	if s.Viewers() != 1 || s.slow.Load() != 1 {
		t.Errorf("viewers %d, dropped %d; want 1, 1", s.Viewers(), s.slow.Load())
	}

	// A stopped viewer is skipped, not stopped again.
	s.Publish(KindEvent, ended(4, "10.0.0.1", inspect.OK))
	if s.Viewers() != 1 || s.slow.Load() != 1 {
		t.Errorf("after more: viewers %d, dropped %d; want 1, 1", s.Viewers(), s.slow.Load())
	}
}

// BenchmarkPublish fans events out to 20 viewers, a quarter of which
// filter them out. The queues are emptied between batches, outside the
// timer, as the writers of real connections would, so that no viewer is
// dropped and every operation is a full fan-out.
func BenchmarkPublish(b *testing.B) {
	s := New(Config{}, Deps{})
	var vs []*viewer
	for i := range 20 {
		f := inspect.Filter{}
		if i%4 == 3 {
			f.Outcome = inspect.TLSAborted
		}
		vs = append(vs, s.addViewer(f))
	}
	defer func() {
		for _, v := range vs {
			s.removeViewer(v)
		}
	}()
	ev := ended(1, "10.0.0.1", inspect.OK)
	ev.Detail = "tunnel closed by the client after the TLS handshake"
	batch := s.viewerBuffer / 2

	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		ev.ID = int64(i + 1)
		s.Publish(KindEvent, ev)
		if (i+1)%batch == 0 {
			b.StopTimer()
			for _, v := range vs {
				queued(b, s, v)
			}
			b.StartTimer()
		}
	}
	b.StopTimer()

	if n := s.slow.Load(); n != 0 {
		b.Fatalf("%d viewers dropped; the benchmark must measure full fan-outs", n)
	}
}
