package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/inspect/squidlog"
	"github.com/tetrascope/tetrascope/pipeline"
	"github.com/tetrascope/tetrascope/sidecar"
	"github.com/tetrascope/tetrascope/store"
)

// BenchmarkTailIntoStore measures the sidecar end to end: Squid log lines
// read from a file, parsed, classified, queued and committed to SQLite.
// It reports the rate of events stored.
func BenchmarkTailIntoStore(b *testing.B) {
	const lines = 100_000
	dir := b.TempDir()
	log := filepath.Join(dir, "access.log")
	f, err := os.Create(log)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now().Add(-time.Hour).Unix()
	for i := 0; i < lines; i++ {
		fmt.Fprintf(f, "%d.%03d %6d 10.0.%d.%d TCP_TUNNEL/200 %d CONNECT "+
			"tetra-defs.amp.cisco.com:443 - HIER_DIRECT/203.0.113.7 -\n",
			start+int64(i/100), i%1000, 120+i%50, (i/250)%250, i%250, 40000+i%9000)
	}
	f.Close()
	cat, _ := inspect.NewCatalog(inspect.DefaultTetraHosts, nil, nil)
	parser, err := squidlog.NewParser(squidlog.Config{Format: squidlog.FormatSquid, Catalog: cat})
	if err != nil {
		b.Fatal(err)
	}

	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		b.StopTimer()
		st, err := store.Open(filepath.Join(dir, fmt.Sprintf("t%d.db", n)))
		if err != nil {
			b.Fatal(err)
		}
		pl := pipeline.New(pipeline.Config{Check: store.Check}, st, nil, nil)
		var ids inspect.IDs
		fl, err := sidecar.New(sidecar.Config{Files: []string{log}, Parser: parser, Recorder: pl,
			Offsets: st, NextID: ids.Next, Sensor: "bench", FromStart: true})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		pipeDone := make(chan error, 1)
		go func() { pipeDone <- pl.Run(ctx) }()
		b.StartTimer()

		tailCtx, stopTail := context.WithCancel(context.Background())
		tailDone := make(chan error, 1)
		go func() { tailDone <- fl.Run(tailCtx) }()
		deadline := time.Now().Add(5 * time.Minute)
		for pl.Stats().Stored+pl.Stats().Dropped < lines && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}

		b.StopTimer()
		stopTail()
		<-tailDone
		cancel()
		<-pipeDone
		s := pl.Stats()
		if s.Stored != lines {
			b.Fatalf("stored %d of %d (dropped %d)", s.Stored, lines, s.Dropped)
		}
		st.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(lines*b.N)/b.Elapsed().Seconds(), "events/s")
}
