package report

import (
	"bytes"
	"cmp"
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/store"
)

// TestGenerateFromStore makes reports from a real store, which reads only
// the fields the report asks for, pages ahead and orders events that share
// a time itself: the same reports as from the events given one by one,
// for the fixture and for random days, whole and for one sensor.
func TestGenerateFromStore(t *testing.T) {
	for _, tc := range []struct {
		name   string
		events []inspect.Event
		opts   Options
	}{
		{"fixture", fixtureEvents(), fixtureOptions()},
		{"random day", randomDay(3, 12000), Options{Since: at(24 * time.Hour), Until: reportEnd,
			Now: reportEnd}},
		{"random day, one sensor", randomDay(4, 4000), Options{Since: at(3 * time.Hour),
			Until: reportEnd, Now: reportEnd, Sensor: "s2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := store.Open(filepath.Join(t.TempDir(), "events.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if err := st.Append(context.Background(), tc.events); err != nil {
				t.Fatal(err)
			}
			rep, err := Generate(context.Background(), st, tc.opts)
			if err != nil {
				t.Fatal(err)
			}

			// The store's order: time, then sensor, then id.
			evs := slices.Clone(tc.events)
			slices.SortStableFunc(evs, func(a, b inspect.Event) int {
				return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Sensor, b.Sensor),
					cmp.Compare(a.ID, b.ID))
			})
			var got, want bytes.Buffer
			if err := WriteJSON(&got, rep); err != nil {
				t.Fatal(err)
			}
			if err := WriteJSON(&want, build(t, evs, tc.opts)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Fatalf("the report from the store differs:\n%s",
					firstDiff(got.Bytes(), want.Bytes()))
			}
		})
	}
}
