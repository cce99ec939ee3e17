package store

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mattn/go-sqlite3"
	"github.com/tetrascope/tetrascope/inspect"
)

// A batch longer than one call of the bulk function is stored whole, in
// order, every field intact.
func TestAppendAcrossChunks(t *testing.T) {
	s, _ := openTest(t)
	n := 2*bulkRows + 7
	batch := genEvents("a", 1, n)
	batch[bulkRows].Detail = "naïve \x00 text, \"quoted\"; ünïcode ✓"
	mustAppend(t, s, batch)

	var count int
	if err := s.r.QueryRow("SELECT COUNT(*) FROM events").Scan(&count); err != nil {
		t.Fatal(err)
	}
	if count != n {
		t.Fatalf("%d events stored, want %d", count, n)
	}
	for _, i := range []int{0, bulkRows - 1, bulkRows, n - 1} {
		want := batch[i]
		got := mustEvents(t, s, inspect.Filter{Before: want.ID + 1, Limit: 1})
		if len(got) != 1 || got[0] != want {
			t.Errorf("event %d:\n got %+v\nwant %+v", want.ID, got, want)
		}
	}
}

// The bulk function refuses what it cannot read, names the problem, and
// stores nothing of a call that fails.
func TestInsertRowsRefusesBadInput(t *testing.T) {
	s, _ := openTest(t)
	good := packEvent(nil, new(genEvents("a", 1, 1)[0]))
	cases := []struct {
		name  string
		sql   any
		ncols any
		rows  any
		want  string
	}{
		{"truncated row", insertEventSQL, len(eventColumns), good[:len(good)-9], "packed rows end inside a row"},
		{"truncated number", insertEventSQL, len(eventColumns), good[:len(good)-3], "packed rows end inside a number"},
		{"truncated text", insertEventSQL, len(eventColumns), good[:3+9+5], "packed rows end inside a text"},
		{"unknown tag", insertEventSQL, len(eventColumns), append([]byte{'x'}, good[1:]...), "unknown value tag 120"},
		{"second row broken", insertEventSQL, len(eventColumns), append(append([]byte{}, good...), 'i', 1), "row 2 of the batch"},
		{"wrong count", insertEventSQL, 3, good, "the insert takes 25 values, not 3"},
		{"bad sql", "INSERT INTO nowhere VALUES (?)", 1, good, "preparing the insert: no such table: nowhere"},
		{"text for blob", insertEventSQL, len(eventColumns), "rows", "takes (text, integer, blob)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var n int
			err := s.w.QueryRow(insertRowsSQL, tc.sql, tc.ncols, tc.rows).Scan(&n)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
			var se sqlite3.Error
			if !errors.As(err, &se) || se.Code != sqlite3.ErrError {
				t.Errorf("error %#v, want an SQLite error with code SQLITE_ERROR", err)
			}
		})
	}

	// Append runs the calls in one transaction: a failing row keeps
	// nothing of the batch, and the error names the row and the reason.
	s2, _ := openTest(t)
	ctx := context.Background()
	if _, err := s2.w.Exec("CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.id = 5 " +
		"BEGIN SELECT RAISE(ABORT, 'refused by test'); END"); err != nil {
		t.Fatal(err)
	}
	err := s2.Append(ctx, genEvents("a", 1, 10))
	if err == nil || !strings.Contains(err.Error(), "row 5 of the batch: refused by test") {
		t.Fatalf("Append error %v, want one naming row 5 and the reason", err)
	}
	if got := mustEvents(t, s2, inspect.Filter{}); len(got) != 0 {
		t.Errorf("%d events stored after a failed Append, want none", len(got))
	}
}

// The C reader of packed rows never reads past the blob, whatever it is
// given: it stores whole rows or fails with a message.
func FuzzInsertRows(f *testing.F) {
	good := packEvent(nil, new(genEvents("a", 1, 1)[0]))
	f.Add(good)
	f.Add(append(append([]byte{}, good...), good[:20]...))
	f.Add([]byte{'t', 0xff, 0xff, 0xff, 0x7f, 'x'})
	f.Add([]byte{'f', 1, 2, 3})
	s, _ := openTest(f)
	f.Fuzz(func(t *testing.T, rows []byte) {
		tx, err := s.w.Begin()
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		var n int
		err = tx.QueryRow(insertRowsSQL, insertEventSQL, len(eventColumns), rows).Scan(&n)
		if err == nil && len(rows) > 0 && n == 0 {
			t.Errorf("%d bytes of rows accepted as none", len(rows))
		}
		if err != nil && !strings.Contains(err.Error(), "of the batch: ") {
			t.Errorf("error %v does not name the row", err)
		}
	})
}
