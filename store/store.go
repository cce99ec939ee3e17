// Package store keeps events and log-tailing offsets in an SQLite database.
//
// One Store owns two connection pools on the same file: a single writer
// connection, through which every change goes (SQLite allows one writer at
// a time, so queueing writers in Go is cheaper and fairer than letting them
// fight over the file lock), and a pool of read-only connections. The
// database runs in WAL mode, so readers, in this process or in another one
// such as `tetrascope report`, see the last committed state without
// blocking the writer or being blocked by it.
//
// The schema is versioned: Open applies the missing migrations in order,
// in one transaction. The DDL and queries avoid SQLite-only syntax where
// an alternative exists, so that a PostgreSQL backend can reuse them.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mattn/go-sqlite3"
)

// driverName is the database/sql driver registered by this package: the
// SQLite driver plus a Unicode-aware lower-case function for filters.
const driverName = "tetrascope_sqlite3"

// unicodeLower is the SQL name of strings.ToLower. SQLite's own lower()
// folds only ASCII letters; queries use this one when the filter value is
// not plain ASCII, so that "JÖRG" finds "jörg" as inspect.Filter.Match
// does.
const unicodeLower = "ts_lower"

// busyTimeoutMS is how long a connection waits for a lock held by another
// connection or process before failing with "database is locked".
const busyTimeoutMS = 5000

// connectPragmas tune every connection. A commit of a batch dirties a few
// hundred pages, often more than the default checkpoint interval of 1000
// pages, which would make nearly every commit copy the WAL back into the
// file and wait for two fsyncs. Checkpointing every 10000 pages (40 MiB at
// 4 KiB pages) lets pages that several batches touch be copied once;
// journal_size_limit trims the WAL file back after a burst. (A
// checkpointer beside the writer, every 2,048 events, was tried: it took
// the fsyncs out of the commits but copied the same pages over and over,
// and cost the proxy about 30 µs of processor per CONNECT cycle.)
const connectPragmas = `PRAGMA wal_autocheckpoint = 10000;
	PRAGMA journal_size_limit = 67108864;`

func init() {
	sql.Register(driverName, &sqlite3.SQLiteDriver{
		ConnectHook: func(c *sqlite3.SQLiteConn) error {
			if _, err := c.Exec(connectPragmas, nil); err != nil {
				return err
			}
			return c.RegisterFunc(unicodeLower, strings.ToLower, true)
		},
	})
}

// Store is an open event database. Its methods are safe for concurrent use.
// A nil *Store is not usable; obtain one from Open.
type Store struct {
	path string
	w    *sql.DB // exactly one connection: every write goes through it
	r    *sql.DB // read-only connections for queries

	nextSeq atomic.Int64 // the seq of the next row Append stores

	file os.FileInfo // the database file as opened; see checkFile

	closeOnce sync.Once
	closeErr  error
}

// Open opens the database at path, creating the file if it does not exist
// and bringing its schema up to date. The path is a file name, not a DSN.
// The errors name the path and say what is wrong with it (not a database,
// cannot be created, read-only, written by a newer version).
func Open(path string) (*Store, error) {
	s, err := open(path)
	if err != nil {
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
	return s, nil
}

func open(path string) (*Store, error) {
	ctx := context.Background()

	// SQLite would treat these as special names rather than files.
	if path == "" || path == ":memory:" {
		return nil, errors.New("need the name of a database file")
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, errors.New("is a directory")
	}

	// The writer: journal_mode is persistent in the file, so setting it
	// here puts every later connection, of any process, in WAL mode.
	// Transactions begin IMMEDIATE so that a writer in another process
	// makes this one wait for busy_timeout instead of failing at once.
	// A 32 MiB page cache (SQLite's default is 2 MiB) keeps the index pages
	// that batches touch over and over.
	w, err := sql.Open(driverName, dsn(path, url.Values{
		"_journal_mode": {"WAL"},
		"_synchronous":  {"NORMAL"},
		"_busy_timeout": {fmt.Sprint(busyTimeoutMS)},
		"_foreign_keys": {"1"},
		"_txlock":       {"immediate"},
		"_mutex":        {"no"},
		"_cache_size":   {"-32768"},
	}))
	if err != nil {
		return nil, describe(err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	s := &Store{path: path, w: w}

	// The first connection reads the file header: this is where a file
	// that is not a database, or that cannot be created, shows up.
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, describe(err)
	}
	var mode string
	if err := w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		w.Close()
		return nil, describe(err)
	}
	if !strings.EqualFold(mode, "wal") {
		w.Close()
		return nil, fmt.Errorf("journal mode is %q, not wal", mode)
	}
	if err := migrate(ctx, w); err != nil {
		w.Close()
		return nil, describe(err)
	}
	// Appending no rows prepares the insert: a schema it does not fit
	// shows up here rather than at the first batch.
	var rows int
	if err := w.QueryRowContext(ctx, insertRowsSQL, insertEventSQL, len(insertColumns), []byte{}).Scan(&rows); err != nil {
		w.Close()
		return nil, fmt.Errorf("preparing insert: %w", err)
	}
	// Rows stored from now on start a new block of events_client.
	var top int64
	q := fmt.Sprintf("SELECT COALESCE(MAX(seq >> %d), 0) FROM events", seqBlockBits)
	if err := w.QueryRowContext(ctx, q).Scan(&top); err != nil {
		w.Close()
		return nil, fmt.Errorf("reading the last block: %w", err)
	}
	s.nextSeq.Store((top + 1) << seqBlockBits)
	if s.file, err = os.Stat(path); err != nil {
		w.Close()
		return nil, err
	}

	// The readers; query_only guards against a write slipping past the
	// writer connection, and mode=rw keeps a reader connection opened
	// after the file was removed from creating an empty one in its place.
	r, err := sql.Open(driverName, dsn(path, url.Values{
		"mode":          {"rw"},
		"_busy_timeout": {fmt.Sprint(busyTimeoutMS)},
		"_foreign_keys": {"1"},
		"_query_only":   {"1"},
		"_mutex":        {"no"},
	}))
	if err != nil {
		w.Close()
		return nil, describe(err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	s.r = r
	if err := r.PingContext(ctx); err != nil {
		s.Close()
		return nil, describe(err)
	}

	return s, nil
}

// dsn builds a go-sqlite3 data source name for the file at path. The file:
// URI form keeps names containing '?' intact; SQLite decodes the escapes.
func dsn(path string, params url.Values) string {
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return "file:" + esc + "?" + params.Encode()
}

// describe adds a plain-words reason to the SQLite errors that Open meets
// when the file is not what it should be.
func describe(err error) error {
	var se sqlite3.Error
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code {
	case sqlite3.ErrNotADB:
		return fmt.Errorf("not an SQLite database: %w", err)
	case sqlite3.ErrCorrupt:
		return fmt.Errorf("database file is corrupt: %w", err)
	case sqlite3.ErrCantOpen:
		return fmt.Errorf("cannot open or create the file and its -wal and -shm "+
			"companions (missing directory or no permission?): %w", err)
	case sqlite3.ErrReadonly, sqlite3.ErrPerm:
		return fmt.Errorf("file or directory is read-only: %w", err)
	case sqlite3.ErrBusy, sqlite3.ErrLocked:
		return fmt.Errorf("database is locked by another connection: %w", err)
	}
	return err
}

// Ping reports whether the database file is still the one opened and both
// the writer and a reader connection answer; it is meant for /healthz. The
// writer may be busy with a batch, so give ctx a deadline.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.checkFile(); err != nil {
		return err
	}
	if err := s.w.PingContext(ctx); err != nil {
		return fmt.Errorf("pinging store writer: %w", err)
	}
	var v int
	q := "SELECT COALESCE(MAX(version), 0) FROM schema_version"
	if err := s.r.QueryRowContext(ctx, q).Scan(&v); err != nil {
		return fmt.Errorf("pinging store reader: %w", err)
	}
	return nil
}

// Close closes every connection; the last one checkpoints the WAL into the
// main file. Calls after the first return the first result; other methods
// fail after Close.
//
// Close does not run PRAGMA optimize: the queries are shaped so that their
// plans do not rest on ANALYZE statistics, and the tests check the plans
// without any; statistics gathered at random moments would only make the
// plans depend on the data of that moment.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.r != nil {
			errs = append(errs, s.r.Close())
		}
		errs = append(errs, s.w.Close())
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("closing store %s: %w", s.path, err)
		}
	})
	return s.closeErr
}
