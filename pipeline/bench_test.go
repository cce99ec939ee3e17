package pipeline

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// discardStore takes every batch at once and keeps nothing, so that a long
// benchmark does not grow the heap.
type discardStore struct{ n atomic.Int64 }

func (s *discardStore) Append(_ context.Context, evs []inspect.Event) error {
	s.n.Add(int64(len(evs)))
	return nil
}

// stalledStore never returns from Append until released, like a database
// whose write lock another process holds.
type stalledStore struct{ release chan struct{} }

func (s *stalledStore) Append(context.Context, []inspect.Event) error {
	<-s.release
	return nil
}

// drainEvery is how many connections BenchmarkHandOver hands over between
// two pauses that let the pipeline catch up.
const drainEvery = 8192

// drain waits, for a moment at most, until the pipeline has taken every
// message off its input queue and the writer has taken every event off the
// store's queue, or that queue is full: the writer is stuck.
func drain(p *Pipeline) {
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		if len(p.in) == 0 && (len(p.toStore) == 0 || len(p.toStore) == cap(p.toStore)) {
			return
		}
		runtime.Gosched()
	}
}

// BenchmarkHandOver measures what one connection's events cost the proxy
// to hand over (Open when it starts, Done when it ends) with a store that
// keeps up and with one that is stalled. The proxy must pay nothing for a
// stalled store: the stalled case must not be slower. A proxy spends far
// longer on a connection than on its hand-over, so the queue is given time
// to empty, outside the timer, every drainEvery connections, as it would
// between them; the stalled store never empties it, and dropped/op says
// how many events did not fit.
func BenchmarkHandOver(b *testing.B) {
	for _, stalled := range []bool{false, true} {
		name := "store=ok"
		if stalled {
			name = "store=stalled"
		}
		b.Run(name, func(b *testing.B) {
			var st Store = &discardStore{}
			release := make(chan struct{})
			if stalled {
				st = &stalledStore{release: release}
			}
			// The writer takes events as they come rather than waiting
			// to batch them, so that a store that keeps up empties
			// the queue between two pauses.
			p := New(Config{BatchWait: -1}, st, func(string, inspect.Event) {}, nil)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()

			ev := inspect.Event{
				ID: 1, Time: time.Now(), Source: inspect.SourceProxy, Sensor: "bench",
				ClientIP: "10.1.2.3", Method: "CONNECT", Host: "tetra-defs.amp.cisco.com",
				Port: 443, SNI: "tetra-defs.amp.cisco.com", Endpoint: inspect.EndpointTetra,
				Outcome: inspect.OK, Status: 200, BytesUp: 2048, BytesDown: 5 << 20,
				Close: inspect.ClientFIN, TLSVersion: "TLS 1.3",
				Detail: "handshake completed; closed by the client",
			}
			b.ReportAllocs()
			for b.Loop() {
				ev.ID++
				p.Open(&ev)
				p.Done(&ev)
				if ev.ID%drainEvery == 0 {
					b.StopTimer()
					drain(p)
					b.StartTimer()
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(p.Stats().Dropped)/float64(b.N), "dropped/op")

			cancel()
			close(release)
			<-done
		})
	}
}
