package store

import (
	"cmp"
	"context"
	"errors"
	"math"
	"slices"
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
		{"second row broken", insertEventSQL, len(eventColumns), append(append([]byte{}, good...), 'i', 1), "row 2: packed rows end inside a number"},
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
	if err == nil || !strings.Contains(err.Error(), "storing from event a/1: row 5: refused by test") {
		t.Fatalf("Append error %v, want one naming row 5 and the reason", err)
	}
	var se sqlite3.Error
	if !errors.As(err, &se) || se.ExtendedCode != sqlite3.ErrConstraintTrigger {
		t.Errorf("error %#v, want SQLite's extended code SQLITE_CONSTRAINT_TRIGGER", err)
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
		if err != nil && !strings.HasPrefix(err.Error(), "row ") {
			t.Errorf("error %v does not name the row", err)
		}
	})
}

// A client's events are found however far apart their ids lie (ids are
// microseconds, see inspect.IDs), with every bound and limit, in the order
// of inspect.Filter.Match over all events.
func TestClientAcrossBlocks(t *testing.T) {
	s, _ := openTest(t)
	const block = 1 << 12
	idSet := []int64{1, 2, block - 1, block, block + 1, 3*block - 1, 3 * block,
		7*block + 5, 1 << 40, 1<<40 + 1, math.MaxInt64 - 1, math.MaxInt64}
	for i := int64(0); i < 300; i++ {
		idSet = append(idSet, 20*block+i*37)
	}
	clients := []string{"10.0.0.1", "10.0.0.2", "fd00::7"}
	var all []inspect.Event
	for _, sensor := range []string{"a", "b"} {
		var batch []inspect.Event
		for i, id := range idSet {
			e := genEvent(sensor, i)
			e.ID = id
			e.ClientIP = clients[(i*7+len(sensor))%len(clients)]
			batch = append(batch, e)
		}
		mustAppend(t, s, batch)
		all = append(all, batch...)
	}
	slices.SortFunc(all, func(a, b inspect.Event) int {
		if a.ID != b.ID {
			return cmp.Compare(b.ID, a.ID)
		}
		return strings.Compare(b.Sensor, a.Sensor)
	})

	var filters []inspect.Filter
	for _, c := range append(clients, "10.9.9.9") {
		for _, bound := range []int64{0, 2, block, block + 1, 3 * block, 20*block + 100, 1 << 40, math.MaxInt64} {
			for _, limit := range []int{1, 5, 1000} {
				filters = append(filters,
					inspect.Filter{ClientIP: c, Limit: limit},
					inspect.Filter{ClientIP: c, Before: bound, Limit: limit},
					inspect.Filter{ClientIP: c, After: bound, Limit: limit},
					inspect.Filter{ClientIP: c, After: bound, Before: bound + 3*block, Limit: limit},
					inspect.Filter{ClientIP: c, Sensor: "b", Before: bound, Limit: limit})
			}
		}
	}
	for _, f := range filters {
		got := ids(mustEvents(t, s, f))
		want := []int64{}
		for i := range all {
			if f.Match(&all[i]) && len(want) < f.Limit {
				want = append(want, all[i].ID)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%+v:\n got %v\nwant %v", f, got, want)
		}
	}
}
