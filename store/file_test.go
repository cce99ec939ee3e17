package store

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/tetrascope/tetrascope/inspect"
)

// TestFileRemovedWhileOpen: SQLite goes on writing to a database file that
// was removed or renamed, where nobody will ever read it. The store must
// say so instead (Append and Ping fail, naming the file), must not let a
// new reader connection create an empty file in its place, and must work
// again once the file is moved back.
func TestFileRemovedWhileOpen(t *testing.T) {
	s, path := openTest(t)
	ctx := context.Background()
	mustAppend(t, s, genEvents("a", 1, 10))

	moved := path + ".moved"
	if err := os.Rename(path, moved); err != nil {
		t.Fatal(err)
	}
	err := s.Append(ctx, genEvents("a", 11, 5))
	if err == nil || !strings.Contains(err.Error(), "removed or renamed") ||
		!strings.Contains(err.Error(), path) {
		t.Fatalf("Append after the file was renamed: %v; want an error naming %s", err, path)
	}
	if err := s.Ping(ctx); err == nil || !strings.Contains(err.Error(), "removed or renamed") {
		t.Fatalf("Ping after the file was renamed: %v; want the same error", err)
	}

	// A reader connection opened now fails rather than creating a new,
	// empty database at the path.
	s.r.SetMaxIdleConns(0)
	if _, err := s.Events(ctx, inspect.Filter{}); err == nil {
		t.Error("a query on a new reader connection succeeded without the file")
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a file appeared at %s after the query: %v", path, err)
	}
	s.r.SetMaxIdleConns(4)

	if err := os.Rename(moved, path); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping with the file back: %v", err)
	}
	mustAppend(t, s, genEvents("a", 11, 5))
	if got := mustEvents(t, s, inspect.Filter{Limit: 100}); len(got) != 15 {
		t.Fatalf("%d events with the file back, want 15", len(got))
	}
}

// TestFileReplacedWhileOpen: a different file at the path (a restored
// backup, another database) is not the one the store writes to.
func TestFileReplacedWhileOpen(t *testing.T) {
	s, path := openTest(t)
	mustAppend(t, s, genEvents("a", 1, 3))

	other := path + ".other"
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(other, path); err != nil {
		t.Fatal(err)
	}
	err := s.Append(context.Background(), genEvents("a", 4, 1))
	if err == nil || !strings.Contains(err.Error(), "replaced") {
		t.Fatalf("Append with another file at the path: %v; want an error saying it was replaced", err)
	}
	if err := s.Ping(context.Background()); err == nil {
		t.Fatal("Ping with another file at the path succeeds")
	}
}
