package store

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// scanAll collects what Scan gives for f.
func scanAll(t *testing.T, s *Store, f inspect.Filter) []inspect.Event {
	t.Helper()
	var got []inspect.Event
	if err := s.Scan(context.Background(), f, func(e inspect.Event) error {
		got = append(got, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func scanOrder(a, b inspect.Event) int {
	return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Sensor, b.Sensor), cmp.Compare(a.ID, b.ID))
}

// TestScanOrderAcrossPages stores more than two pages of events from two
// sensors, many of them sharing a time, so that page boundaries fall inside
// runs of equal times: every event must come exactly once, oldest first.
func TestScanOrderAcrossPages(t *testing.T) {
	s, _ := openTest(t)
	n := 2*scanPage + 700
	var all []inspect.Event
	for _, sensor := range []string{"b", "a"} {
		evs := genEvents(sensor, 1, n)
		for i := range evs {
			// Runs of 7 events share a time; ids still increase.
			evs[i].Time = base.Add(time.Duration(i/7) * time.Second)
		}
		mustAppend(t, s, evs)
		all = append(all, evs...)
	}
	slices.SortFunc(all, scanOrder)

	got := scanAll(t, s, inspect.Filter{})
	if len(got) != len(all) {
		t.Fatalf("scan gave %d events, want %d", len(got), len(all))
	}
	for i := range got {
		if scanOrder(got[i], all[i]) != 0 {
			t.Fatalf("event %d is %s/%d at %v, want %s/%d at %v", i, got[i].Sensor, got[i].ID,
				got[i].Time, all[i].Sensor, all[i].ID, all[i].Time)
		}
	}
	if got[0].Detail != "completed" || got[0].Endpoint != inspect.EndpointTetra {
		t.Errorf("fields not read back: %+v", got[0])
	}
}

func TestScanWindowAndSensor(t *testing.T) {
	s, _ := openTest(t)
	mustAppend(t, s, genEvents("a", 1, 300))
	mustAppend(t, s, genEvents("b", 1, 300))
	since, until := genEvent("a", 100).Time, genEvent("a", 200).Time

	got := scanAll(t, s, inspect.Filter{Since: since, Until: until, Sensor: "b"})
	if len(got) != 100 {
		t.Fatalf("%d events, want 100", len(got))
	}
	for _, e := range got {
		if e.Sensor != "b" || e.Time.Before(since) || !e.Time.Before(until) {
			t.Fatalf("event %s/%d at %v outside the filter", e.Sensor, e.ID, e.Time)
		}
	}
	if got[0].ID != 100 || got[99].ID != 199 {
		t.Errorf("ids %d..%d, want 100..199", got[0].ID, got[99].ID)
	}
	if got := scanAll(t, s, inspect.Filter{Since: until, Until: since}); len(got) != 0 {
		t.Errorf("an empty window gave %d events", len(got))
	}
}

func TestScanRefusesOtherConditions(t *testing.T) {
	s, _ := openTest(t)
	for _, f := range []inspect.Filter{
		{ClientIP: "10.0.0.1"}, {Outcome: inspect.OK}, {Limit: 5}, {Before: 3}, {Text: "x"},
	} {
		err := s.Scan(context.Background(), f, func(inspect.Event) error { return nil })
		if err == nil || !strings.Contains(err.Error(), "only since, until and sensor") {
			t.Errorf("Scan(%+v) = %v; want a refusal", f, err)
		}
	}
}

func TestScanStopsAtCallbackError(t *testing.T) {
	s, _ := openTest(t)
	mustAppend(t, s, genEvents("a", 1, 50))
	stop := errors.New("enough")
	calls := 0
	err := s.Scan(context.Background(), inspect.Filter{}, func(inspect.Event) error {
		calls++
		if calls == 10 {
			return stop
		}
		return nil
	})
	if err != stop || calls != 10 {
		t.Fatalf("Scan = %v after %d calls; want the callback's error after 10", err, calls)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = s.Scan(ctx, inspect.Filter{}, func(inspect.Event) error { return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Scan with a cancelled context: %v", err)
	}
}

// TestScanWhileAppending scans through a second Store on the same file, as
// `tetrascope report` does while `serve` writes: no error, every event
// stored before the scan began is seen once, in order.
func TestScanWhileAppending(t *testing.T) {
	s, path := openTest(t)
	const before = 3 * scanPage
	mustAppend(t, s, genEvents("a", 1, before))
	reader, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()

	ctx := context.Background()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			if err := s.Append(ctx, genEvents("a", before+1+i*100, 100)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	got := scanAll(t, reader, inspect.Filter{})
	close(done)
	wg.Wait()

	if len(got) < before {
		t.Fatalf("scan saw %d events, fewer than the %d stored before it", len(got), before)
	}
	if !slices.IsSortedFunc(got, scanOrder) {
		t.Error("events not oldest first")
	}
	for i, e := range got {
		if e.ID != int64(i+1) {
			t.Fatalf("event %d has id %d: one missed or repeated", i, e.ID)
		}
	}
}

// TestScanPlan keeps every query of a scan on events_time, the planner's
// on it alone, and the page by time without a sort.
func TestScanPlan(t *testing.T) {
	s, _ := openTest(t)
	sc, err := newScanner(s, eventColumns, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"boundary", "page", "run"} {
		for _, tc := range []struct{ bySensor, after bool }{
			{false, false}, {false, true}, {true, false}, {true, true},
		} {
			var (
				q    string
				args = []any{formatTime(base)}
			)
			switch kind {
			case "boundary":
				q = boundaryQuery(tc.bySensor, tc.after)
			case "page":
				q = sc.pageQuery(tc.bySensor, tc.after)
			case "run":
				q = sc.runQuery(tc.bySensor, tc.after)
			}
			if kind != "run" {
				args = append(args, formatTime(maxTime))
			}
			if tc.bySensor {
				args = append(args, "a")
			}
			if kind == "run" && tc.after {
				args = append(args, "a", "a", int64(1))
			}
			args = append(args, scanPage)
			plan := explain(t, s, q, args...)
			if !strings.Contains(plan, "INDEX events_time") || strings.Contains(plan, "SCAN events") {
				t.Errorf("%s query, sensor %v, after %v: plan does not read events_time:\n%s",
					kind, tc.bySensor, tc.after, plan)
			}
			if kind == "boundary" && !tc.bySensor && !strings.Contains(plan, "COVERING INDEX") {
				t.Errorf("boundary query, after %v: plan reads the table:\n%s", tc.after, plan)
			}
			if kind != "run" && strings.Contains(plan, "TEMP B-TREE") {
				t.Errorf("%s query, sensor %v, after %v: sorted:\n%s",
					kind, tc.bySensor, tc.after, plan)
			}
		}
	}
}
