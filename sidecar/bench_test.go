package sidecar

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tetrascope/tetrascope/inspect"
)

// countingRecorder counts events and keeps nothing.
type countingRecorder struct{ n atomic.Int64 }

func (c *countingRecorder) Done(*inspect.Event) { c.n.Add(1) }

// BenchmarkReplay reads a whole native log from the start through the
// follower (read, split, parse, classify, hand over): the rate of a
// --from-start replay before the store.
func BenchmarkReplay(b *testing.B) {
	const n = 200000
	path := filepath.Join(b.TempDir(), "access.log")
	var sb strings.Builder
	for i := range n {
		sb.WriteString(line(i))
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(sb.Len()))
	b.ReportAllocs()

	total := 0
	for b.Loop() {
		rec := &countingRecorder{}
		f, err := New(Config{Files: []string{path}, Parser: testParser(b), Recorder: rec,
			FromStart: true})
		if err != nil {
			b.Fatal(err)
		}
		tl := newTailer(f, path)
		if !tl.start(context.Background()) {
			b.Fatal("did not open")
		}
		for tl.tick(context.Background()) {
		}
		tl.cur.file.Close()
		if rec.n.Load() != n {
			b.Fatalf("%d events, want %d", rec.n.Load(), n)
		}
		total += n
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "lines/s")
}
