package store

import (
	"cmp"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

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
	good := packInt(packEvent(nil, new(genEvents("a", 1, 1)[0])), 1)
	cases := []struct {
		name  string
		sql   any
		ncols any
		rows  any
		want  string
	}{
		{"truncated row", insertEventSQL, len(insertColumns), good[:len(good)-9], "packed rows end inside a row"},
		{"truncated number", insertEventSQL, len(insertColumns), good[:len(good)-3], "packed rows end inside a number"},
		{"truncated text", insertEventSQL, len(insertColumns), good[:3+9+5], "packed rows end inside a text"},
		{"unknown tag", insertEventSQL, len(insertColumns), append([]byte{'x'}, good[1:]...), "unknown value tag 120"},
		{"second row broken", insertEventSQL, len(insertColumns), append(append([]byte{}, good...), 'i', 1), "row 2: packed rows end inside a number"},
		{"wrong count", insertEventSQL, 3, good, "the insert takes 26 values, not 3"},
		{"bad sql", "INSERT INTO nowhere VALUES (?)", 1, good, "preparing the insert: no such table: nowhere"},
		{"text for blob", insertEventSQL, len(insertColumns), "rows", "takes (text, integer, blob)"},
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
	good := packInt(packEvent(nil, new(genEvents("a", 1, 1)[0])), 1)
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
		err = tx.QueryRow(insertRowsSQL, insertEventSQL, len(insertColumns), rows).Scan(&n)
		if err == nil && len(rows) > 0 && n == 0 {
			t.Errorf("%d bytes of rows accepted as none", len(rows))
		}
		if err != nil && !strings.HasPrefix(err.Error(), "row ") {
			t.Errorf("error %v does not name the row", err)
		}
	})
}

// A client's events are found through the blocks of events_client in the
// order and with the bounds of inspect.Filter.Match over all events,
// although rows are stored out of id order (a connection's event is
// stored when it ends), over several blocks and a reopening, with ids far
// apart (ids are microseconds, see inspect.IDs).
func TestClientAcrossBlocks(t *testing.T) {
	s, path := openTest(t)
	const block = 1 << seqBlockBits
	rng := rand.New(rand.NewPCG(3, 4))
	clients := []string{"10.0.0.1", "10.0.0.2", "fd00::7", "10.0.0.9"}
	pick := func() string {
		if rng.IntN(500) == 0 {
			return clients[3] // a rare client
		}
		return clients[rng.IntN(3)]
	}
	// Ids grow with the order of storing but wander: some rows come late
	// with a low id, some early with a high one.
	var all []inspect.Event
	seen := map[string]bool{}
	next := int64(1_700_000_000_000_000)
	for b := range 12 {
		batch := genEvents("a", 1, 1000)
		for i := range batch {
			e := &batch[i]
			next += 1 + rng.Int64N(50)
			e.ID = next
			switch rng.IntN(40) {
			case 0:
				e.ID -= rng.Int64N(int64(3 * block * 50))
			case 1:
				e.ID += rng.Int64N(int64(block * 50))
			}
			if rng.IntN(3) == 0 {
				e.Sensor = "b"
			}
			e.ClientIP = pick()
		}
		batch = slices.DeleteFunc(batch, func(e inspect.Event) bool {
			k := e.Sensor + "/" + strconv.FormatInt(e.ID, 10)
			dup := seen[k]
			seen[k] = true
			return dup
		})
		mustAppend(t, s, batch)
		all = append(all, batch...)
		if b == 5 {
			s = reopen(t, s, path) // a new block
		}
	}
	slices.SortFunc(all, func(a, b inspect.Event) int {
		if a.ID != b.ID {
			return cmp.Compare(b.ID, a.ID)
		}
		return strings.Compare(b.Sensor, a.Sensor)
	})

	var filters []inspect.Filter
	for _, c := range append(clients, "10.9.9.9") {
		for _, k := range []int{0, 500, 6000, len(all) - 1} {
			bound := all[len(all)-1-k].ID
			for _, limit := range []int{1, 7, 5000} {
				filters = append(filters,
					inspect.Filter{ClientIP: c, Limit: limit},
					inspect.Filter{ClientIP: c, Before: bound, Limit: limit},
					inspect.Filter{ClientIP: c, After: bound, Limit: limit},
					inspect.Filter{ClientIP: c, After: bound - 5000, Before: bound + 5000, Limit: limit},
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
			t.Fatalf("%+v:\n got %d ids %v\nwant %d ids %v", f, len(got), head(got), len(want), head(want))
		}
	}
}

func head(ids []int64) []int64 { return ids[:min(len(ids), 8)] }

// An event stored again while a client query walks the blocks moves to the
// newest block; the walk reads one snapshot, so it finds the event once,
// in one place or the other, and never misses it.
func TestClientWalkSeesOneSnapshot(t *testing.T) {
	s, path := openTest(t)
	ctx := context.Background()
	const blocks = 60
	for i := 1; i <= blocks; i++ {
		// Each opening starts a block: one event of the client in each.
		batch := genEvents("a", 8*i-7, 8)
		batch[7].ClientIP = "10.7.7.7"
		mustAppend(t, s, batch)
		s = reopen(t, s, path)
	}

	missed := 0
	for round := range 40 {
		old := genEvent("a", 8*(1+round%8)) // in a low block, walked last
		old.ClientIP = "10.7.7.7"
		done := make(chan struct{})
		go func() {
			defer close(done)
			time.Sleep(time.Duration(round%5) * 200 * time.Microsecond)
			if err := s.Append(ctx, []inspect.Event{old}); err != nil {
				t.Error(err)
			}
		}()
		got, err := s.Events(ctx, inspect.Filter{ClientIP: "10.7.7.7", Limit: 1000})
		<-done
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != blocks {
			missed++
		}
	}
	if missed > 0 {
		t.Errorf("%d of 40 queries missed an event stored throughout", missed)
	}
}

// reopen closes s and opens its file again, which starts a new block of
// events_client; the new Store is closed at the end of the test.
func reopen(t *testing.T, s *Store, path string) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
