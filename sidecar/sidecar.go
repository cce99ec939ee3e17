// Package sidecar follows proxy access logs and feeds each line's event to
// the pipeline, the way `tetrascope tail` runs beside an existing Squid.
//
// A Follower polls its files (no inotify, so it runs anywhere). It keeps up
// with appends, survives rotation by rename without losing a line (the
// renamed file is read to its end, and a while after, before the new one
// takes over), detects copy-truncate rotation and says how many bytes may be
// missing, holds back incomplete last lines until their newline arrives,
// waits for files that do not exist yet, and resumes after a restart from
// the offsets it keeps in the store.
//
// The package imports inspect, inspect/squidlog and the standard library;
// what it needs of the pipeline and the store are the small interfaces
// Recorder and Offsets.
package sidecar

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/inspect/squidlog"
)

// Recorder takes finished events; the pipeline is one. Done must not keep
// ev after it returns and must be safe for concurrent use: each file is
// followed by its own goroutine.
type Recorder interface {
	Done(ev *inspect.Event)
}

// Backlogger is implemented by a Recorder whose queue can overflow. Backlog
// returns how many events wait in it; while that is above
// Config.MaxBacklog the follower stops reading, since a log can be read far
// faster than events are stored (a replay would otherwise drop them).
type Backlogger interface {
	Backlog() int
}

// Offsets keeps where the follower stopped in each file, for resuming
// after a restart; the store is one. A file never recorded gives inode 0.
type Offsets interface {
	Offset(ctx context.Context, file string) (inode uint64, offset int64, err error)
	SetOffset(ctx context.Context, file string, inode uint64, offset int64) error
}

// Config sets up a Follower. Files, Parser and Recorder are required; zero
// values of the others take the defaults noted.
type Config struct {
	Files    []string         // the logs to follow, as given (the key of their offsets)
	Parser   *squidlog.Parser // how to read their lines
	Recorder Recorder         // where events go
	Offsets  Offsets          // nil: no resume; each start begins as FromStart says
	NextID   func() int64     // event ids; must be safe for concurrent use; nil: 1, 2, 3...
	Sensor   string           // the events' sensor name

	// FromStart reads a file from its beginning when no position is
	// known for it; otherwise only lines appended after the start are
	// read. A file that appears after the start is always read whole.
	FromStart bool

	Poll       time.Duration // how often files are checked; 0: 250ms
	SaveEvery  time.Duration // how often offsets are saved; 0: 1s
	DrainIdle  time.Duration // how long a renamed-away file is read after it stops growing; 0: 5s
	MaxLine    int           // longest line accepted, in bytes; 0: 64 KiB
	MaxBacklog int           // see Backlogger; 0: 16384
	Log        *slog.Logger  // nil: no logs
}

// Stats are the follower's counters since it started.
type Stats struct {
	Lines          uint64            `json:"lines"`           // complete lines read
	Events         uint64            `json:"events"`          // events handed to the recorder
	Skipped        uint64            `json:"skipped"`         // lines that record no request
	Malformed      map[string]uint64 `json:"malformed"`       // lines skipped, by kind
	Rotations      uint64            `json:"rotations"`       // renames followed
	Truncations    uint64            `json:"truncations"`     // copy-truncates detected
	BytesMissing   int64             `json:"bytes_missing"`   // known lost to truncation
	BytesRecovered int64             `json:"bytes_recovered"` // read from a copy after truncation
	Files          []FileStats       `json:"files"`
}

// FileStats describe one followed file.
type FileStats struct {
	Path    string `json:"path"`
	Inode   uint64 `json:"inode"`
	Offset  int64  `json:"offset"`  // end of the last complete line read
	Waiting bool   `json:"waiting"` // the file does not exist (yet)
}

// The kind of malformed line the follower adds to the parser's kinds.
const kindTooLong = "too_long"

// The slog keys of this package.
const (
	keyFile    = "file"
	keyLine    = "line"
	keyOffset  = "offset"
	keyInode   = "inode"
	keyKind    = "kind"
	keyError   = "error"
	keyMissing = "bytes_missing"
)

// Follower follows a set of log files. Use New; the zero Follower is not
// usable.
type Follower struct {
	cfg     Config
	log     *slog.Logger
	backlog Backlogger // the recorder, when it reports its backlog

	lines, events, skipped, rotations, truncations atomic.Uint64
	missing, recovered                             atomic.Int64
	nextID                                         atomic.Int64

	mu        sync.Mutex
	malformed map[string]uint64
	logged    map[string]bool // malformed kinds already logged
	files     map[string]FileStats
}

// New checks cfg and returns a Follower.
func New(cfg Config) (*Follower, error) {
	switch {
	case len(cfg.Files) == 0:
		return nil, errors.New("sidecar: no files to follow")
	case cfg.Parser == nil:
		return nil, errors.New("sidecar: no parser")
	case cfg.Recorder == nil:
		return nil, errors.New("sidecar: no recorder")
	}
	seen := map[string]bool{}
	for _, f := range cfg.Files {
		if f == "" || seen[f] {
			return nil, errors.New("sidecar: empty or repeated file name " + f)
		}
		seen[f] = true
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 250 * time.Millisecond
	}
	if cfg.SaveEvery <= 0 {
		cfg.SaveEvery = time.Second
	}
	if cfg.DrainIdle <= 0 {
		cfg.DrainIdle = 5 * time.Second
	}
	if cfg.MaxLine <= 0 {
		cfg.MaxLine = 64 << 10
	}
	if cfg.MaxBacklog <= 0 {
		cfg.MaxBacklog = 16384
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Follower{
		cfg:       cfg,
		log:       log,
		malformed: map[string]uint64{},
		logged:    map[string]bool{},
		files:     map[string]FileStats{},
	}
	f.backlog, _ = cfg.Recorder.(Backlogger)
	if f.cfg.NextID == nil {
		f.cfg.NextID = func() int64 { return f.nextID.Add(1) }
	}
	return f, nil
}

// Run follows the files until ctx is done, then saves their offsets and
// returns nil. Problems with a file (missing, unreadable) are logged and
// retried at each poll; they do not stop the others.
func (f *Follower) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, path := range f.cfg.Files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := newTailer(f, path)
			t.run(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// Stats returns the counters.
func (f *Follower) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := Stats{
		Lines:          f.lines.Load(),
		Events:         f.events.Load(),
		Skipped:        f.skipped.Load(),
		Rotations:      f.rotations.Load(),
		Truncations:    f.truncations.Load(),
		BytesMissing:   f.missing.Load(),
		BytesRecovered: f.recovered.Load(),
		Malformed:      make(map[string]uint64, len(f.malformed)),
	}
	for k, v := range f.malformed {
		s.Malformed[k] = v
	}
	for _, fs := range f.files {
		s.Files = append(s.Files, fs)
	}
	sort.Slice(s.Files, func(i, j int) bool { return s.Files[i].Path < s.Files[j].Path })
	return s
}

func (f *Follower) setFile(fs FileStats) {
	f.mu.Lock()
	f.files[fs.Path] = fs
	f.mu.Unlock()
}

// handle turns one complete line into an event and hands it over.
func (f *Follower) handle(src *source, line []byte) {
	f.lines.Add(1)
	src.line++
	ev, err := f.cfg.Parser.Parse(line)
	if err == nil {
		ev.ID = f.cfg.NextID()
		ev.Sensor = f.cfg.Sensor
		f.cfg.Recorder.Done(&ev)
		f.events.Add(1)
		return
	}
	if errors.Is(err, squidlog.ErrNoRequest) {
		f.skipped.Add(1)
		return
	}
	kind := squidlog.KindFormat
	var se *squidlog.SyntaxError
	if errors.As(err, &se) {
		kind = se.Kind
	}
	f.malformedLine(src, kind, err)
}

// malformedLine counts a skipped line and logs the first of each kind.
func (f *Follower) malformedLine(src *source, kind string, err error) {
	f.mu.Lock()
	f.malformed[kind]++
	first := !f.logged[kind]
	f.logged[kind] = true
	f.mu.Unlock()
	if !first {
		return
	}
	attrs := []any{keyFile, src.name}
	if src.fromZero {
		attrs = append(attrs, keyLine, src.line)
	}
	attrs = append(attrs, keyOffset, src.lineStart, keyKind, kind, keyError, err)
	f.log.Warn("malformed log line skipped; further lines of this kind are only counted", attrs...)
}

// waitBacklog pauses while the recorder's queue is full.
func (f *Follower) waitBacklog(ctx context.Context) {
	if f.backlog == nil {
		return
	}
	for f.backlog.Backlog() > f.cfg.MaxBacklog {
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}
