package report_test

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/report"
	"github.com/tetrascope/tetrascope/store"
)

// benchEnd is the end of the benchmark's window; its events fill the day
// before it.
var benchEnd = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

// benchEvents is event number i of a busy day: 5000 clients on two
// sensors, mostly successful tetra downloads with revocation fetches and
// challenges among them, and failures of every common kind.
func benchEvents(from, n int) []inspect.Event {
	const clients = 5000
	out := make([]inspect.Event, n)
	for k := range out {
		i := from + k
		c := i % clients
		e := inspect.Event{
			ID:         int64(i + 1),
			Time:       benchEnd.Add(-24*time.Hour + time.Duration(i)*86*time.Millisecond),
			DurationMS: float64(50 + i%4000),
			Source:     inspect.SourceProxy,
			Sensor:     fmt.Sprintf("site%d", c%2),
			ClientIP:   fmt.Sprintf("10.%d.%d.%d", c/65536, c/256%256, c%256),
			Method:     "CONNECT",
			Host:       "tetra-defs.amp.cisco.com",
			Port:       443,
			Endpoint:   inspect.EndpointTetra,
			Outcome:    inspect.OK,
			Status:     200,
			BytesDown:  3 << 20,
			Close:      inspect.ClientFIN,
			TLSVersion: "TLS 1.3",
		}
		if c%7 == 0 {
			e.ClientUser = fmt.Sprintf(`CORP\PC%d$`, c)
		}
		switch {
		case i%5 == 1:
			e.Endpoint, e.Method, e.Host, e.Port = inspect.EndpointRevocation, "GET",
				"crl.identrust.com", 80
		case i%11 == 0:
			e.Outcome, e.Status = inspect.AuthRequired, 407
		case c%50 == 3:
			e.Outcome, e.Status = inspect.DNSFailure, 502
		case c%50 == 4:
			e.Outcome, e.Close, e.BytesDown = inspect.DownloadAborted, inspect.ServerRST, 1<<20
		case c%50 == 5:
			e.Outcome, e.Status = inspect.AuthFailed, 407
		case c%50 == 6 && i%3 == 0:
			e.Outcome, e.BytesDown = inspect.TLSAborted, 4000
		}
		out[k] = e
	}
	return out
}

// BenchmarkReportMillion reports on a store of one million events in the
// window, built once in batches, and writes the HTML (the largest format).
// Each iteration reads the whole day from SQLite, replays it through the
// correlation and renders the page. events/s counts stored events read;
// cpu-s/report is the processor time of a report (scan and build run in
// parallel, so it can exceed s/report on an idle machine, and s/report
// exceeds it on a busy one); heap-MiB is the largest heap in use seen
// after a report, which shows memory does not follow the event count.
func BenchmarkReportMillion(b *testing.B) {
	const total = 1_000_000
	path := filepath.Join(b.TempDir(), "million.db")
	st, err := store.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	for from := 0; from < total; from += 20_000 {
		if err := st.Append(ctx, benchEvents(from, 20_000)); err != nil {
			b.Fatal(err)
		}
	}
	opts := report.Options{Since: benchEnd.Add(-24 * time.Hour), Until: benchEnd, Now: benchEnd}

	var (
		rep  *report.Report
		heap uint64
		ms   runtime.MemStats
	)
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	for b.Loop() {
		rep, err = report.Generate(ctx, st, opts)
		if err != nil {
			b.Fatal(err)
		}
		if err := report.WriteHTML(io.Discard, rep); err != nil {
			b.Fatal(err)
		}
		runtime.ReadMemStats(&ms)
		heap = max(heap, ms.HeapInuse)
	}
	b.StopTimer()
	cpu = cpuTime() - cpu

	if rep.Summary.Events != total || rep.Summary.Clients.Seen != 5000 {
		b.Fatalf("report saw %d events and %d clients", rep.Summary.Events,
			rep.Summary.Clients.Seen)
	}
	perReport := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(total/perReport, "events/s")
	b.ReportMetric(perReport, "s/report")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/report")
	b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
}
