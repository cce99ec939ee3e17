package sidecar

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/inspect/squidlog"
)

// recorder is a hand-written Recorder that keeps every event.
type recorder struct {
	mu      sync.Mutex
	events  []inspect.Event
	backlog int // what Backlog reports
}

func (r *recorder) Done(ev *inspect.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, *ev)
}

// Hosts returns the host of each event, in the order they came.
func (r *recorder) Hosts() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var hosts []string
	for _, e := range r.events {
		hosts = append(hosts, e.Host)
	}
	return hosts
}

func (r *recorder) Events() []inspect.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]inspect.Event(nil), r.events...)
}

// backlogRecorder also reports a backlog the test sets.
type backlogRecorder struct {
	recorder
}

func (r *backlogRecorder) Backlog() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.backlog
}

func (r *backlogRecorder) setBacklog(n int) {
	r.mu.Lock()
	r.backlog = n
	r.mu.Unlock()
}

// offsets is a hand-written Offsets keeping positions in memory.
type offsets struct {
	mu   sync.Mutex
	pos  map[string][2]int64 // file -> inode, offset
	sets int
}

func newOffsets() *offsets { return &offsets{pos: map[string][2]int64{}} }

func (o *offsets) Offset(_ context.Context, file string) (uint64, int64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.pos[file]
	return uint64(p[0]), p[1], nil
}

func (o *offsets) SetOffset(_ context.Context, file string, inode uint64, offset int64) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.pos[file] = [2]int64{int64(inode), offset}
	o.sets++
	return nil
}

func (o *offsets) get(file string) (uint64, int64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.pos[file]
	return uint64(p[0]), p[1]
}

// logBuffer collects the follower's log as text, safe for concurrent use.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lines returns the log lines containing s.
func (l *logBuffer) lines(s string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

// fixture is a follower on files in a temporary directory, with its
// recorder, offsets and log.
type fixture struct {
	t   *testing.T
	dir string
	rec *recorder
	off *offsets
	log *logBuffer
	f   *Follower
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	fx := &fixture{t: t, dir: t.TempDir(), off: newOffsets(), log: &logBuffer{}}
	if cfg.Recorder == nil {
		fx.rec = &recorder{}
		cfg.Recorder = fx.rec
	}
	for i, name := range cfg.Files {
		cfg.Files[i] = fx.path(name)
	}
	if cfg.Parser == nil {
		cfg.Parser = testParser(t)
	}
	cfg.Log = slog.New(slog.NewTextHandler(fx.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.Sensor == "" {
		cfg.Sensor = "test"
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	fx.f = f
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("follower log:\n%s", fx.log.String())
		}
	})
	return fx
}

func (fx *fixture) path(name string) string { return fx.dir + "/" + name }

func testParser(t testing.TB) *squidlog.Parser {
	t.Helper()
	cat, err := inspect.NewCatalog(inspect.DefaultTetraHosts, []string{"crl.identrust.com"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := squidlog.NewParser(squidlog.Config{Catalog: cat})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// line returns native log line number i, whose event has host h<i>.test.
func line(i int) string {
	return fmt.Sprintf("%d.%03d %6d 10.0.0.%d TCP_TUNNEL/200 %d CONNECT h%d.test:443 - "+
		"HIER_DIRECT/192.0.2.1 -\n", 1700000000+i, i%1000, i%700, i%250+1, 1000+i, i)
}

// lines returns lines from..to inclusive.
func lines(from, to int) string {
	var b strings.Builder
	for i := from; i <= to; i++ {
		b.WriteString(line(i))
	}
	return b.String()
}

// hosts returns the hosts lines from..to produce.
func hosts(from, to int) []string {
	var h []string
	for i := from; i <= to; i++ {
		h = append(h, fmt.Sprintf("h%d.test", i))
	}
	return h
}

// write creates or appends to a file.
func (fx *fixture) append(name, s string) {
	fx.t.Helper()
	f, err := os.OpenFile(fx.path(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fx.t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		fx.t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		fx.t.Fatal(err)
	}
}

// tailer starts following one file directly, so that a test decides when
// each poll happens.
func (fx *fixture) tailer(name string) *tailer {
	fx.t.Helper()
	tl := newTailer(fx.f, fx.path(name))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !tl.start(ctx) {
		fx.t.Fatalf("%s did not open", name)
	}
	fx.t.Cleanup(func() {
		for _, s := range tl.old {
			s.file.Close()
		}
		tl.cur.file.Close()
	})
	return tl
}

// tick polls once and, while data is waiting, again.
func tick(tl *tailer) {
	for tl.tick(context.Background()) {
	}
}

// wantHosts compares the hosts of the events with want, in order.
func wantHosts(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("events for hosts\n %v\nwant\n %v", got, want)
	}
}

// waitHosts waits until the recorder holds n events.
func waitHosts(t *testing.T, r *recorder, n int) []string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		h := r.Hosts()
		if len(h) >= n || time.Now().After(deadline) {
			return h
		}
		time.Sleep(5 * time.Millisecond)
	}
}
