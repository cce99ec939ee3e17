package sidecar

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

func TestNewChecksConfig(t *testing.T) {
	p := testParser(t)
	r := &recorder{}
	for _, cfg := range []Config{
		{Parser: p, Recorder: r},
		{Files: []string{"a"}, Recorder: r},
		{Files: []string{"a"}, Parser: p},
		{Files: []string{"a", "a"}, Parser: p, Recorder: r},
		{Files: []string{""}, Parser: p, Recorder: r},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

// Lines arrive in pieces: nothing is handled before its newline.
func TestPartialLines(t *testing.T) {
	fx := newFixture(t, Config{Files: []string{"access.log"}, FromStart: true})
	fx.append("access.log", lines(1, 3))
	tl := fx.tailer("access.log")

	l4 := line(4)
	fx.append("access.log", l4[:20])
	tick(tl)
	wantHosts(t, fx.rec.Hosts(), hosts(1, 3))

	fx.append("access.log", l4[20:50])
	tick(tl)
	wantHosts(t, fx.rec.Hosts(), hosts(1, 3))

	fx.append("access.log", l4[50:]+lines(5, 5))
	tick(tl)
	wantHosts(t, fx.rec.Hosts(), hosts(1, 5))

	st := fx.f.Stats()
	if st.Lines != 5 || st.Events != 5 || len(st.Malformed) != 0 {
		t.Errorf("stats %+v, want 5 lines, 5 events, none malformed", st)
	}
	size := int64(len(lines(1, 5)))
	if fs := st.Files[0]; fs.Offset != size || fs.Inode == 0 || fs.Waiting {
		t.Errorf("file stats %+v, want offset %d and an inode", fs, size)
	}
	for i, e := range fx.rec.Events() {
		if e.ID != int64(i+1) || e.Sensor != "test" || e.Source != inspect.SourceSquidLog {
			t.Errorf("event %d: id %d, sensor %q, source %q", i, e.ID, e.Sensor, e.Source)
		}
	}
}

// Without FromStart, what is already there is skipped, including the rest
// of a line being written at the start.
func TestStartAtEnd(t *testing.T) {
	fx := newFixture(t, Config{Files: []string{"access.log"}})
	l3 := line(3)
	fx.append("access.log", lines(1, 2)+l3[:30])
	tl := fx.tailer("access.log")
	tick(tl)
	fx.append("access.log", l3[30:]+lines(4, 5))
	tick(tl)
	wantHosts(t, fx.rec.Hosts(), hosts(4, 5))
}

// Rename rotation: lines written to the renamed file before and after the
// new one appears are all read, each once.
func TestRenameRotation(t *testing.T) {
	fx := newFixture(t, Config{Files: []string{"access.log"}, FromStart: true,
		DrainIdle: 300 * time.Millisecond})
	fx.append("access.log", lines(1, 5))
	tl := fx.tailer("access.log")
	tick(tl)

	// The writer keeps its descriptor across the rename, as Squid does
	// until it is told to reopen.
	w, err := os.OpenFile(fx.path("access.log"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := os.Rename(fx.path("access.log"), fx.path("access.log.1")); err != nil {
		t.Fatal(err)
	}
	w.WriteString(lines(6, 7))
	tick(tl) // the path is missing: the renamed file is still read
	wantHosts(t, fx.rec.Hosts(), hosts(1, 7))

	l9 := line(9)
	w.WriteString(lines(8, 8) + l9[:25])
	fx.append("access.log", lines(20, 21))
	tick(tl) // the new file appears
	w.WriteString(l9[25:] + lines(10, 10))
	fx.append("access.log", lines(22, 22))
	tick(tl)

	// Each poll reads the renamed file before the new one.
	want := append(hosts(1, 10), hosts(20, 22)...)
	wantHosts(t, fx.rec.Hosts(), want)

	// A last line without its newline is taken when the renamed file is
	// finished, after it stayed idle for DrainIdle.
	w.WriteString(strings.TrimSuffix(line(11), "\n"))
	tick(tl)
	time.Sleep(350 * time.Millisecond)
	tick(tl)
	if len(tl.old) != 0 {
		t.Errorf("the renamed file is still open after DrainIdle")
	}
	wantHosts(t, fx.rec.Hosts(), append(want, hosts(11, 11)...))
	if st := fx.f.Stats(); st.Rotations != 1 || st.Truncations != 0 || st.Events != 14 {
		t.Errorf("stats %+v, want 1 rotation, no truncation, 14 events", st)
	}
	if len(fx.log.lines("log rotated")) != 1 || len(fx.log.lines("finished the rotated log")) != 1 {
		t.Errorf("want one rotation and one finish logged")
	}
}

// Copy-truncate where the follower was behind and no copy is found: the
// bytes it had seen and not read are reported missing.
func TestCopyTruncateMissing(t *testing.T) {
	fx := newFixture(t, Config{Files: []string{"access.log"}, FromStart: true})
	// More than one read buffer (256 KiB), so the first poll stops short.
	all := lines(1, 3000)
	fx.append("access.log", all)
	tl := fx.tailer("access.log")
	tl.tick(context.Background()) // one poll, one buffer
	read := len(fx.rec.Hosts())
	done := fx.f.Stats().Files[0].Offset
	if read == 0 || read == 3000 || done >= int64(len(all)) {
		t.Fatalf("first poll read %d lines to offset %d; want part of the file", read, done)
	}

	if err := os.Truncate(fx.path("access.log"), 0); err != nil {
		t.Fatal(err)
	}
	fx.append("access.log", lines(5001, 5002))
	tick(tl)

	wantHosts(t, fx.rec.Hosts(), append(hosts(1, read), hosts(5001, 5002)...))
	st := fx.f.Stats()
	if missing := int64(len(all)) - done; st.Truncations != 1 || st.BytesMissing != missing ||
		st.BytesRecovered != 0 {
		t.Errorf("stats %+v, want 1 truncation, %d bytes missing", st, missing)
	}
	warn := fx.log.lines("log truncated in place")
	if len(warn) != 1 || !strings.Contains(warn[0], "bytes_missing="+strconv.FormatInt(st.BytesMissing, 10)) {
		t.Errorf("truncation warning %q, want one naming bytes_missing=%d", warn, st.BytesMissing)
	}
}

// Copy-truncate with the copy next to the log (logrotate's copytruncate):
// the lines written after the last poll are read from the copy.
func TestCopyTruncateRecovered(t *testing.T) {
	fx := newFixture(t, Config{Files: []string{"access.log"}, FromStart: true})
	fx.append("access.log", lines(1, 10))
	tl := fx.tailer("access.log")
	tick(tl)

	unread := lines(11, 12) + line(13)[:40]
	fx.append("access.log", unread)
	b, err := os.ReadFile(fx.path("access.log"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fx.path("access.log.1"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	// A decoy that does not hold the same bytes must not be taken.
	if err := os.WriteFile(fx.path("access.log.2"), []byte(lines(100, 200)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(fx.path("access.log"), 0); err != nil {
		t.Fatal(err)
	}
	fx.append("access.log", lines(14, 14))
	tick(tl)

	// The copy's incomplete last line is taken as a line and is malformed.
	wantHosts(t, fx.rec.Hosts(), append(hosts(1, 12), hosts(14, 14)...))
	st := fx.f.Stats()
	if st.Truncations != 1 || st.BytesMissing != 0 || st.BytesRecovered != int64(len(unread)) ||
		st.Malformed["format"] != 1 {
		t.Errorf("stats %+v, want 1 truncation, 0 missing, %d recovered, 1 malformed",
			st, len(unread))
	}
	if w := fx.log.lines("read the rest from its copy"); len(w) != 1 ||
		!strings.Contains(w[0], "access.log.1") {
		t.Errorf("want a warning naming the copy, got %q", w)
	}
}

// A truncated log that grew past the old offset before the next poll is
// still caught, by its changed bytes.
func TestTruncateGrewBack(t *testing.T) {
	fx := newFixture(t, Config{Files: []string{"access.log"}, FromStart: true})
	fx.append("access.log", lines(1, 3))
	tl := fx.tailer("access.log")
	tick(tl)
	if err := os.WriteFile(fx.path("access.log"), []byte(lines(31, 40)), 0o644); err != nil {
		t.Fatal(err)
	}
	tick(tl)
	wantHosts(t, fx.rec.Hosts(), append(hosts(1, 3), hosts(31, 40)...))
	if st := fx.f.Stats(); st.Truncations != 1 || len(st.Malformed) != 0 {
		t.Errorf("stats %+v, want one truncation and no malformed line", st)
	}
}

// runFollower runs f until stop is called, which waits for Run to return.
func runFollower(f *Follower) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		f.Run(ctx)
		close(done)
	}()
	return func() {
		cancel()
		<-done
	}
}

// A restart resumes at the saved offset, whatever FromStart says.
func TestResume(t *testing.T) {
	cfg := func() Config {
		return Config{Files: []string{"access.log"}, FromStart: true, Poll: 5 * time.Millisecond}
	}
	fx := newFixture(t, cfg())
	fx.f.cfg.Offsets = fx.off
	fx.append("access.log", lines(1, 5))
	stop := runFollower(fx.f)
	waitHosts(t, fx.rec, 5)
	stop()
	ino, off := fx.off.get(fx.path("access.log"))
	if ino == 0 || off != int64(len(lines(1, 5))) {
		t.Fatalf("saved inode %d offset %d, want an inode and %d", ino, off, len(lines(1, 5)))
	}

	fx.append("access.log", lines(6, 8))
	rec2 := &recorder{}
	f2, err := New(Config{Files: fx.f.cfg.Files, Parser: fx.f.cfg.Parser, Recorder: rec2,
		Offsets: fx.off, FromStart: true, Poll: 5 * time.Millisecond, Log: fx.f.log})
	if err != nil {
		t.Fatal(err)
	}
	stop = runFollower(f2)
	wantHosts(t, waitHosts(t, rec2, 3), hosts(6, 8))
	stop()
	if len(fx.log.lines("resuming the log")) != 1 {
		t.Errorf("want the resume logged once")
	}
}

// Rotated while stopped: the rest of the renamed file is read, then the
// new file whole.
func TestResumeAfterRotation(t *testing.T) {
	fx := newFixture(t, Config{Files: []string{"access.log"}, Poll: 5 * time.Millisecond,
		DrainIdle: 50 * time.Millisecond})
	fx.f.cfg.Offsets = fx.off
	fx.append("access.log", "")
	stop := runFollower(fx.f)
	waitHosts(t, fx.rec, 0)
	fx.append("access.log", lines(1, 3))
	waitHosts(t, fx.rec, 3)
	stop()

	fx.append("access.log", lines(4, 5))
	if err := os.Rename(fx.path("access.log"), fx.path("access.log.1")); err != nil {
		t.Fatal(err)
	}
	fx.append("access.log", lines(6, 7))

	rec2 := &recorder{}
	f2, err := New(Config{Files: fx.f.cfg.Files, Parser: fx.f.cfg.Parser, Recorder: rec2,
		Offsets: fx.off, Poll: 5 * time.Millisecond, DrainIdle: 50 * time.Millisecond, Log: fx.f.log})
	if err != nil {
		t.Fatal(err)
	}
	stop = runFollower(f2)
	got := waitHosts(t, rec2, 4)
	stop()
	wantHosts(t, got, hosts(4, 7))
}

// A log that shrank while the follower was stopped is read from the start.
func TestResumeAfterTruncation(t *testing.T) {
	fx := newFixture(t, Config{Files: []string{"access.log"}})
	fx.f.cfg.Offsets = fx.off
	fx.append("access.log", lines(1, 3))
	p := fx.path("access.log")
	ino, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	fx.off.SetOffset(context.Background(), p, inode(ino), 1<<20)
	tl := fx.tailer("access.log")
	tick(tl)
	wantHosts(t, fx.rec.Hosts(), hosts(1, 3))
	if st := fx.f.Stats(); st.Truncations != 1 {
		t.Errorf("truncations = %d, want 1", st.Truncations)
	}
}

// Malformed lines are skipped and counted by kind, and each kind is logged
// once with its line number; lines that record no request are skipped
// silently.
func TestMalformedLines(t *testing.T) {
	fx := newFixture(t, Config{Files: []string{"access.log"}, FromStart: true, MaxLine: 512})
	content := []string{
		strings.TrimSuffix(line(1), "\n"),
		"garbage",
		"",
		"1700000000.000 0 10.0.0.1 NONE_NONE/000 0 - error:transaction-end-before-headers - HIER_NONE/- -",
		"more garbage here",
		strings.Replace(strings.TrimSuffix(line(2), "\n"), "/200", "/2x0", 1),
		strings.Repeat("x", 2000),
		strings.TrimSuffix(line(3), "\n"),
	}
	fx.append("access.log", strings.Join(content, "\n")+"\n")
	start := func(n int) int { // offset of line n, counted from 1
		off := 0
		for _, l := range content[:n-1] {
			off += len(l) + 1
		}
		return off
	}
	tl := fx.tailer("access.log")
	tick(tl)

	wantHosts(t, fx.rec.Hosts(), []string{"h1.test", "h3.test"})
	st := fx.f.Stats()
	want := map[string]uint64{"format": 2, "number": 1, "too_long": 1}
	if st.Lines != 8 || st.Skipped != 2 || len(st.Malformed) != 3 ||
		st.Malformed["format"] != want["format"] || st.Malformed["number"] != want["number"] ||
		st.Malformed["too_long"] != want["too_long"] {
		t.Errorf("stats %+v, want 8 lines, 2 skipped, malformed %v", st, want)
	}
	logged := fx.log.lines("malformed log line skipped")
	if len(logged) != 3 {
		t.Fatalf("logged %d malformed lines, want one per kind:\n%s", len(logged), strings.Join(logged, "\n"))
	}
	// Line numbers count from 1; offsets are where the line begins.
	body := strings.Join(logged, "\n")
	for _, w := range []string{
		"line=2 offset=" + strconv.Itoa(start(2)) + " kind=format",
		"line=6 offset=" + strconv.Itoa(start(6)) + " kind=number",
		"line=7 offset=" + strconv.Itoa(start(7)) + " kind=too_long",
	} {
		if !strings.Contains(body, w) {
			t.Errorf("no log with %q in:\n%s", w, body)
		}
	}
}

// Several files at once, one of them created after the start (and then
// read whole); ids come from NextID.
func TestMultipleFiles(t *testing.T) {
	var ids atomic.Int64
	ids.Store(1000)
	fx := newFixture(t, Config{Files: []string{"a.log", "b.log"}, Poll: 5 * time.Millisecond,
		NextID: func() int64 { return ids.Add(1) }})
	fx.append("a.log", lines(1, 2)) // already there: skipped without FromStart
	stop := runFollower(fx.f)
	defer stop()

	deadline := time.Now().Add(5 * time.Second)
	for !waitingFor(fx.f, fx.path("b.log")) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !waitingFor(fx.f, fx.path("b.log")) {
		t.Fatal("b.log is not reported as waiting")
	}
	if len(fx.log.lines("waiting for the log to appear")) != 1 {
		t.Errorf("want the wait logged once")
	}
	fx.append("a.log", lines(3, 4))
	fx.append("b.log", lines(10, 12))
	got := waitHosts(t, fx.rec, 5)

	seen := map[string]bool{}
	for _, h := range got {
		seen[h] = true
	}
	for _, h := range append(hosts(3, 4), hosts(10, 12)...) {
		if !seen[h] {
			t.Errorf("no event for %s; got %v", h, got)
		}
	}
	if len(got) != 5 {
		t.Errorf("got %d events %v, want 5", len(got), got)
	}
	idSeen := map[int64]bool{}
	for _, e := range fx.rec.Events() {
		if e.ID <= 1000 || idSeen[e.ID] {
			t.Errorf("id %d: not from NextID or repeated", e.ID)
		}
		idSeen[e.ID] = true
	}
}

func waitingFor(f *Follower, path string) bool {
	for _, fs := range f.Stats().Files {
		if fs.Path == path {
			return fs.Waiting
		}
	}
	return false
}

// The follower stops reading while the recorder reports a full queue.
func TestBacklog(t *testing.T) {
	rec := &backlogRecorder{}
	rec.setBacklog(100)
	fx := newFixture(t, Config{Files: []string{"access.log"}, FromStart: true,
		Poll: 5 * time.Millisecond, MaxBacklog: 10, Recorder: rec})
	fx.append("access.log", lines(1, 3))
	stop := runFollower(fx.f)
	defer stop()

	time.Sleep(100 * time.Millisecond)
	if n := len(rec.Hosts()); n != 0 {
		t.Fatalf("%d events handed over while the backlog was full", n)
	}
	rec.setBacklog(0)
	wantHosts(t, waitHosts(t, &rec.recorder, 3), hosts(1, 3))
}
