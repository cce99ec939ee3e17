package sidecar

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// tailLen is how many of the last bytes read are kept to recognise the
// file's content later: after a truncation, in its copy.
const tailLen = 64

var errTooLong = errors.New("line longer than the limit")

// source is one open file being read.
type source struct {
	name      string // for messages
	file      *os.File
	info      os.FileInfo // identity, for os.SameFile
	inode     uint64
	off       int64  // bytes read from the file
	lineOff   int64  // end of the last complete line
	lineStart int64  // where the line being handled begins
	buf       []byte // buf[:n] is an incomplete line
	n         int
	skipping  bool  // discarding up to the next newline
	line      int64 // lines read from this file by this run
	fromZero  bool  // line numbers are the file's own
	lastSize  int64 // size at the last look
	lastLook  time.Time
	lastGrow  time.Time
	tail      []byte // the last bytes read, up to tailLen
}

// tailer follows one path: the file there now, and renamed-away files it
// still drains.
type tailer struct {
	f    *Follower
	path string
	cur  *source
	old  []*source

	waiting   bool
	lastErr   string // the last open error logged, to log each once
	savedIno  uint64
	savedOff  int64
	lastSave  time.Time
	saveErrAt time.Time
}

func newTailer(f *Follower, path string) *tailer {
	return &tailer{f: f, path: path}
}

func (t *tailer) bufSize() int { return max(256<<10, 2*t.f.cfg.MaxLine) }

func (t *tailer) run(ctx context.Context) {
	if !t.start(ctx) {
		return
	}
	defer func() {
		t.save(context.WithoutCancel(ctx), true)
		for _, s := range t.old {
			s.file.Close()
		}
		t.cur.file.Close()
	}()
	for {
		more := t.tick(ctx)
		t.save(ctx, false)
		if ctx.Err() != nil {
			return
		}
		if more {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(t.f.cfg.Poll):
		}
	}
}

// start opens the file, waiting for it to exist, and decides where to
// begin. It returns false when ctx ended first.
func (t *tailer) start(ctx context.Context) bool {
	appeared := false
	for {
		src, err := t.open(t.path)
		if err == nil {
			t.waiting = false
			t.position(ctx, src, appeared)
			t.cur = src
			t.publish()
			return true
		}
		if errors.Is(err, fs.ErrNotExist) {
			if !t.waiting {
				t.f.log.Info("waiting for the log to appear", keyFile, t.path)
			}
			t.waiting, appeared = true, true
			t.f.setFile(FileStats{Path: t.path, Waiting: true})
		} else if err.Error() != t.lastErr {
			t.lastErr = err.Error()
			t.f.log.Error("cannot read the log; retrying", keyFile, t.path, keyError, err)
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(t.f.cfg.Poll):
		}
	}
}

func (t *tailer) open(path string) (*source, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	fi, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		file.Close()
		return nil, errors.New(path + " is not a regular file")
	}
	now := time.Now()
	return &source{
		name: path, file: file, info: fi, inode: inode(fi), lastSize: fi.Size(),
		lastLook: now, lastGrow: now, buf: make([]byte, t.bufSize()),
	}, nil
}

// position sets where reading begins: where the last run stopped when that
// is known and still valid, else the start or the end as configured. A
// file that appeared after the start is new and read whole.
func (t *tailer) position(ctx context.Context, src *source, appeared bool) {
	size := src.info.Size()
	if appeared {
		src.fromZero = true
		return
	}
	if t.f.cfg.Offsets != nil {
		ino, off, err := t.f.cfg.Offsets.Offset(ctx, t.path)
		if err != nil {
			t.f.log.Warn("cannot read the saved offset; starting as if none were saved",
				keyFile, t.path, keyError, err)
		}
		if err == nil && ino != 0 {
			t.savedIno, t.savedOff = ino, off
			if t.resume(src, ino, off) {
				return
			}
		}
	}
	if t.f.cfg.FromStart {
		src.fromZero = true
		return
	}
	src.off, src.lineOff = size, size
	// The line being written when we start began before it: skip its rest.
	var last [1]byte
	if size > 0 {
		if _, err := src.file.ReadAt(last[:], size-1); err == nil && last[0] != '\n' {
			src.skipping = true
		}
	}
}

// resume applies a saved position and reports whether it did.
func (t *tailer) resume(src *source, ino uint64, off int64) bool {
	size := src.info.Size()
	switch {
	case ino == src.inode && off <= size:
		src.off, src.lineOff = off, off
		t.f.log.Info("resuming the log where the last run stopped",
			keyFile, t.path, keyOffset, off, "size", size)
		return true
	case ino == src.inode:
		t.f.truncations.Add(1)
		t.f.log.Warn("the log shrank while tetrascope was stopped (truncated in place): "+
			"reading it from the start; what was written before the truncation and not read is lost",
			keyFile, t.path, keyOffset, off, "size", size)
		src.fromZero = true
		return true
	}

	// Rotated while stopped: finish the old file if it is still near,
	// then read the new one whole, since all of it came after.
	if old := t.findSibling(func(fi os.FileInfo) bool { return inode(fi) == ino }); old != "" {
		if s, err := t.open(old); err == nil && s.info.Size() >= off {
			s.name = old
			s.off, s.lineOff = off, off
			t.old = append(t.old, s)
			t.f.log.Info("the log was rotated while tetrascope was stopped: "+
				"reading the rest of the old file first", keyFile, t.path, "rotated_to", old,
				keyOffset, off)
			src.fromZero = true
			return true
		} else if err == nil {
			s.file.Close()
		}
	}
	t.f.log.Warn("the log was replaced while tetrascope was stopped and the old file was not found: "+
		"reading the new one from the start; lines written to the old one after the saved offset are lost",
		keyFile, t.path, keyInode, ino, keyOffset, off)
	src.fromZero = true
	return true
}

// tick reads what is new in every file and checks for rotation and
// truncation. It reports whether more data is probably waiting.
func (t *tailer) tick(ctx context.Context) bool {
	more := false
	now := time.Now()

	// Renamed-away files first: their lines are older.
	kept := t.old[:0]
	for _, s := range t.old {
		n, full := t.read(ctx, s)
		more = more || full
		if n > 0 {
			s.lastGrow = now
		}
		if now.Sub(s.lastGrow) >= t.f.cfg.DrainIdle {
			t.finish(s)
			continue
		}
		kept = append(kept, s)
	}
	t.old = kept

	t.checkTruncation(ctx, t.cur)
	n, full := t.read(ctx, t.cur)
	more = more || full
	if n > 0 {
		t.cur.lastGrow = now
	}
	t.checkRotation()
	t.publish()
	return more
}

// read reads up to one buffer of new bytes from s and handles its complete
// lines. It returns how many bytes it read and whether the buffer was
// filled (more may be waiting).
func (t *tailer) read(ctx context.Context, s *source) (int, bool) {
	space := s.buf[s.n:]
	n, err := s.file.ReadAt(space, s.off)
	if err != nil && !errors.Is(err, io.EOF) {
		t.f.log.Error("reading the log failed", keyFile, s.name, keyOffset, s.off, keyError, err)
	}
	s.lastLook = time.Now()
	if n == 0 {
		return 0, false
	}
	base := s.off - int64(s.n) // file offset of buf[0]
	s.off += int64(n)
	s.tail = appendTail(s.tail, space[:n])
	data := s.buf[:s.n+n]

	start := 0
	for {
		i := bytes.IndexByte(data[start:], '\n')
		if i < 0 {
			break
		}
		line := data[start : start+i]
		s.lineStart = base + int64(start)
		start += i + 1
		s.lineOff = base + int64(start)
		if s.skipping {
			s.skipping = false
			continue
		}
		if len(line) > t.f.cfg.MaxLine {
			t.f.lines.Add(1)
			s.line++
			t.f.malformedLine(s, kindTooLong, errTooLong)
			continue
		}
		t.f.waitBacklog(ctx)
		t.f.handle(s, line)
	}

	rest := data[start:]
	switch {
	case s.skipping:
		rest = nil
	case len(rest) >= t.f.cfg.MaxLine:
		t.f.lines.Add(1)
		s.lineStart = base + int64(start)
		s.line++
		t.f.malformedLine(s, kindTooLong, errTooLong)
		s.skipping = true
		rest = nil
	}
	s.n = copy(s.buf, rest)
	return n, n == len(space)
}

// appendTail keeps the last tailLen bytes of what was read.
func appendTail(tail, b []byte) []byte {
	if len(b) >= tailLen {
		return append(tail[:0], b[len(b)-tailLen:]...)
	}
	tail = append(tail, b...)
	if len(tail) > tailLen {
		tail = append(tail[:0], tail[len(tail)-tailLen:]...)
	}
	return tail
}

// finish ends a renamed-away file: an incomplete last line is handled as
// a line, since nothing more will be written to it.
func (t *tailer) finish(s *source) {
	if s.n > 0 && !s.skipping {
		t.f.handle(s, s.buf[:s.n])
	}
	s.file.Close()
	t.f.log.Info("finished the rotated log", keyFile, s.name, keyOffset, s.off)
}

// checkRotation looks at what the path names now: another file means the
// log was renamed away and a new one created.
func (t *tailer) checkRotation() {
	fi, err := os.Stat(t.path)
	if err != nil || os.SameFile(fi, t.cur.info) {
		// Missing: renamed and not yet recreated; keep reading the
		// renamed file through the open descriptor.
		return
	}
	next, err := t.open(t.path)
	if err != nil {
		return
	}
	next.fromZero = true
	old := t.cur
	old.name = t.path + " (rotated)"
	// Squid may still write to it until it reopens the log: give it
	// DrainIdle from now, however long it had been quiet.
	old.lastGrow = time.Now()
	t.old = append(t.old, old)
	t.cur = next
	t.f.rotations.Add(1)
	t.f.log.Info("log rotated: reading the renamed file to its end, then the new one",
		keyFile, t.path, keyOffset, old.off, keyInode, next.inode)
}

// checkTruncation detects copy-truncate rotation: the file is shorter than
// what was read, or its bytes before the read position changed.
func (t *tailer) checkTruncation(ctx context.Context, s *source) {
	fi, err := s.file.Stat()
	if err != nil {
		return
	}
	size := fi.Size()
	defer func() { s.lastSize = size }()
	if size >= s.off {
		if size == s.off || len(s.tail) == 0 || t.sameTail(s.file, s) {
			return
		}
	}
	t.truncated(ctx, s, size)
}

// sameTail reports whether file holds s.tail just before s.off.
func (t *tailer) sameTail(file *os.File, s *source) bool {
	got := make([]byte, len(s.tail))
	n, err := file.ReadAt(got, s.off-int64(len(s.tail)))
	return n == len(got) && (err == nil || errors.Is(err, io.EOF)) && bytes.Equal(got, s.tail)
}

// truncated handles a copy-truncate: the rest of what was not read is taken
// from the copy when one is found next to the log; what cannot be is
// counted as missing. Reading starts again at the beginning.
func (t *tailer) truncated(ctx context.Context, s *source, size int64) {
	t.f.truncations.Add(1)
	unseen := time.Since(s.lastLook).Round(time.Millisecond)

	var missing, recovered int64
	copyPath := ""
	if s.off > 0 && len(s.tail) > 0 {
		copyPath = t.findSibling(func(fi os.FileInfo) bool {
			return !os.SameFile(fi, s.info) && fi.Size() >= s.off
		}, func(path string) bool {
			c, err := os.Open(path)
			if err != nil {
				return false
			}
			defer c.Close()
			return t.sameTail(c, s)
		})
	}
	if copyPath != "" {
		recovered, missing = t.readCopy(ctx, s, copyPath)
	} else {
		missing = max(s.lastSize-s.off, 0) + int64(s.n)
	}
	t.f.missing.Add(missing)
	t.f.recovered.Add(recovered)

	attrs := []any{keyFile, t.path, keyOffset, s.off, "size_before", s.lastSize, "size_now", size,
		keyMissing, missing, "not_seen_for", unseen.String()}
	if copyPath != "" {
		t.f.log.Warn("log truncated in place (copy-truncate): read the rest from its copy; "+
			"lines written between the copy and the truncation may be missing",
			append(attrs, "copy", copyPath, "bytes_recovered", recovered)...)
	} else {
		t.f.log.Warn("log truncated in place (copy-truncate) and no copy found: bytes_missing "+
			"were seen and not read, and lines written since the last look may be missing too",
			attrs...)
	}

	s.off, s.lineOff, s.n, s.line = 0, 0, 0, 0
	s.skipping, s.fromZero, s.tail = false, true, s.tail[:0]
}

// readCopy reads the copy of a truncated log from where s stopped to its
// end. It returns the bytes read and those known lost: the log had more
// than the copy holds.
func (t *tailer) readCopy(ctx context.Context, s *source, path string) (recovered, missing int64) {
	c, err := t.open(path)
	if err != nil {
		return 0, max(s.lastSize-s.off, 0) + int64(s.n)
	}
	c.name = path
	c.off, c.lineOff, c.line, c.fromZero = s.off, s.lineOff, s.line, s.fromZero
	c.n = copy(c.buf, s.buf[:s.n])
	c.skipping = s.skipping
	for {
		n, _ := t.read(ctx, c)
		if n == 0 {
			break
		}
	}
	t.finish(c)
	return c.off - s.off, max(s.lastSize-c.off, 0)
}

// findSibling returns the most recently modified regular file next to the
// log, named like a rotated copy of it (access.log.1, access.log-20250101;
// not compressed), that passes every test.
func (t *tailer) findSibling(info func(os.FileInfo) bool, more ...func(string) bool) string {
	dir, base := filepath.Split(t.path)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	var best string
	var bestTime time.Time
	for _, e := range entries {
		name := e.Name()
		if name == base || !strings.HasPrefix(name, base) || compressed(name) {
			continue
		}
		if c := name[len(base)]; c != '.' && c != '-' && c != '_' {
			continue
		}
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path)
		if err != nil || !fi.Mode().IsRegular() || !info(fi) {
			continue
		}
		ok := true
		for _, m := range more {
			ok = ok && m(path)
		}
		if ok && (best == "" || fi.ModTime().After(bestTime)) {
			best, bestTime = path, fi.ModTime()
		}
	}
	return best
}

func compressed(name string) bool {
	for _, ext := range []string{".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z", ".zip"} {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

// save records the current file's position every SaveEvery, or now when
// force is set.
func (t *tailer) save(ctx context.Context, force bool) {
	if t.f.cfg.Offsets == nil || t.cur == nil || t.cur.inode == 0 {
		return
	}
	if t.savedIno == t.cur.inode && t.savedOff == t.cur.lineOff {
		return
	}
	if !force && time.Since(t.lastSave) < t.f.cfg.SaveEvery {
		return
	}
	if force {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	t.lastSave = time.Now()
	if err := t.f.cfg.Offsets.SetOffset(ctx, t.path, t.cur.inode, t.cur.lineOff); err != nil {
		if ctx.Err() == nil && time.Since(t.saveErrAt) >= time.Minute {
			t.saveErrAt = time.Now()
			t.f.log.Error("saving the log offset failed; a restart may read lines again",
				keyFile, t.path, keyError, err)
		}
		return
	}
	t.savedIno, t.savedOff = t.cur.inode, t.cur.lineOff
}

func (t *tailer) publish() {
	t.f.setFile(FileStats{Path: t.path, Inode: t.cur.inode, Offset: t.cur.lineOff})
}
