package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// BenchmarkAppend appends batches of new events to a growing table, the
// way the pipeline's writer does, and reports events per second of wall
// time and processor time per event. The number of distinct clients in a
// batch matters: each takes a page of events_client_ip in the commit,
// which larger batches share among more events, and on a table of
// millions of events those pages no longer stay in SQLite's cache.
func BenchmarkAppend(b *testing.B) {
	cases := []struct{ batch, clients int }{
		{1000, 100},
		{1000, 1000},
		{1000, 10000},
		{4096, 1000},
		{10000, 1000},
	}
	for _, tc := range cases {
		name := fmt.Sprintf("batch=%d/clients=%d", tc.batch, tc.clients)
		b.Run(name, func(b *testing.B) {
			s, _ := openTest(b)
			ctx := context.Background()
			pool := make([]string, tc.clients)
			for i := range pool {
				pool[i] = fmt.Sprintf("10.%d.%d.%d", i>>16, i>>8&255, i&255)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			batch := genEvents("bench", 1, tc.batch)

			n := 0
			cpu := cpuTime()
			for b.Loop() {
				for i := range batch {
					e := &batch[i]
					e.ID = int64(n*tc.batch + i + 1)
					e.Time = base.Add(time.Duration(e.ID) * time.Millisecond)
					e.ClientIP = pool[rng.IntN(tc.clients)]
				}
				if err := s.Append(ctx, batch); err != nil {
					b.Fatal(err)
				}
				n++
			}
			events := float64(n * tc.batch)
			b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
			if cpu := cpuTime() - cpu; cpu > 0 {
				b.ReportMetric(float64(cpu.Nanoseconds())/events, "cpu-ns/event")
			}
		})
	}
}

// BenchmarkEventsQuery runs the queries of the UI and the API over 100k
// events of two sensors.
func BenchmarkEventsQuery(b *testing.B) {
	const rows = 100_000
	s, _ := openTest(b)
	ctx := context.Background()
	for from := 1; from <= rows/2; from += 5000 {
		mustAppend(b, s, genEvents("a", from, 5000))
		mustAppend(b, s, genEvents("b", from, 5000))
	}
	last := genEvent("a", rows/2).Time

	cases := []struct {
		name string
		f    inspect.Filter
	}{
		{"newest100", inspect.Filter{}},
		{"newest10000", inspect.Filter{Limit: MaxLimit}},
		{"page_middle", inspect.Filter{Before: rows / 4}},
		{"after_recent", inspect.Filter{After: rows/2 - 50}},
		{"sensor", inspect.Filter{Sensor: "b"}},
		{"client", inspect.Filter{ClientIP: "10.0.7.7"}},
		{"host", inspect.Filter{Host: "TETRA-DEFS-1.amp.cisco.com"}},
		{"outcome_rare", inspect.Filter{Outcome: inspect.AuthFailed}},
		{"user", inspect.Filter{User: "USER7"}},
		{"since_15m", inspect.Filter{Since: last.Add(-15 * time.Minute)}},
		{"since_empty_window", inspect.Filter{Since: last.Add(time.Minute)}},
		// Events are 10ms apart per sensor: 2000 events in 10s, 12000 in 60s.
		{"window_small_old", inspect.Filter{
			Since: base.Add(time.Minute), Until: base.Add(time.Minute + 10*time.Second),
		}},
		{"window_large_old", inspect.Filter{
			Since: base.Add(time.Minute), Until: base.Add(2 * time.Minute),
		}},
		{"text", inspect.Filter{Text: "defs-2"}},
		{"text_no_match", inspect.Filter{Text: "nothing like this"}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			var n int
			for b.Loop() {
				got, err := s.Events(ctx, tc.f)
				if err != nil {
					b.Fatal(err)
				}
				n = len(got)
			}
			b.ReportMetric(float64(n), "events/op")
		})
	}
}

func BenchmarkFormatTime(b *testing.B) {
	for b.Loop() {
		_ = formatTime(base)
	}
}
