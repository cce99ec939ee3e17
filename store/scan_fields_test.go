package store

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// TestScanFieldsLeavesOthersZero reads a few fields: those and time,
// sensor and id come back, every other field is zero, and an unknown name
// is refused before anything is read.
func TestScanFieldsLeavesOthersZero(t *testing.T) {
	s, _ := openTest(t)
	stored := genEvents("a", 1, 30)
	mustAppend(t, s, stored)

	var got []inspect.Event
	err := s.ScanFields(context.Background(), inspect.Filter{}, []string{"client_ip", "outcome"},
		func(e inspect.Event) error {
			got = append(got, e)
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(stored) {
		t.Fatalf("%d events, want %d", len(got), len(stored))
	}
	for i, e := range got {
		w := stored[i]
		want := inspect.Event{ID: w.ID, Time: w.Time, Sensor: w.Sensor, ClientIP: w.ClientIP,
			Outcome: w.Outcome}
		if e != want {
			t.Fatalf("event %d:\n got %+v\nwant %+v", i, e, want)
		}
	}

	err = s.ScanFields(context.Background(), inspect.Filter{}, []string{"outcome", "colour"},
		func(inspect.Event) error {
			t.Fatal("an event was read")
			return nil
		})
	if err == nil || !strings.Contains(err.Error(), `"colour"`) {
		t.Errorf("unknown field: %v", err)
	}
}

// TestScanAllFields reads back every field of every event as stored.
func TestScanAllFields(t *testing.T) {
	s, _ := openTest(t)
	stored := genEvents("a", 1, 50)
	stored[7].URL, stored[7].SNI, stored[7].TLSAlert = "http://crl.example/x.crl", "x.example",
		"unknown_ca"
	stored[7].TLSIssuer, stored[7].Diagnosis, stored[7].LastError = "CN=X", "dns", 4294965187
	stored[7].UpstreamStatus, stored[7].DurationMS = 502, 12.625
	mustAppend(t, s, stored)

	got := scanAll(t, s, inspect.Filter{})
	if len(got) != len(stored) {
		t.Fatalf("%d events, want %d", len(got), len(stored))
	}
	for i := range got {
		if got[i] != stored[i] {
			t.Fatalf("event %d:\n got %+v\nwant %+v", i, got[i], stored[i])
		}
	}
}

// TestScanLongRun stores runs of equal times longer than a page, from two
// sensors, around ordinary events: every event comes once, in order, with
// and without a sensor filter.
func TestScanLongRun(t *testing.T) {
	s, _ := openTest(t)
	var all []inspect.Event
	add := func(evs []inspect.Event) {
		mustAppend(t, s, evs)
		all = append(all, evs...)
	}
	id := 0
	for _, block := range []struct {
		at    time.Duration
		n     int
		equal bool
	}{
		{0, 300, false}, {time.Hour, scanPage + 300, true}, {2 * time.Hour, 200, false},
		{3 * time.Hour, 2*scanPage + 1, true}, {3*time.Hour + time.Second, 10, false},
	} {
		for _, sensor := range []string{"b", "a"} {
			evs := genEvents(sensor, id+1, block.n)
			for i := range evs {
				evs[i].Time = base.Add(block.at + time.Duration(i)*time.Millisecond)
				if block.equal {
					evs[i].Time = base.Add(block.at)
				}
			}
			add(evs)
		}
		id += block.n
	}
	slices.SortFunc(all, scanOrder)

	got := scanAll(t, s, inspect.Filter{})
	checkSame(t, got, all)

	onlyA := slices.DeleteFunc(slices.Clone(all), func(e inspect.Event) bool {
		return e.Sensor != "a"
	})
	checkSame(t, scanAll(t, s, inspect.Filter{Sensor: "a"}), onlyA)
}

// TestScanOverfilledPage stores events into a page after it was planned
// and before it is read, more than it can take: the scan starts over where
// the page stopped and sees every event once, in order.
func TestScanOverfilledPage(t *testing.T) {
	s, _ := openTest(t)
	first := genEvents("a", 1, 3*scanPage)
	mustAppend(t, s, first)

	sc, err := newScanner(s, eventColumns, "")
	if err != nil {
		t.Fatal(err)
	}
	sc.until = formatTime(maxTime)
	var late []inspect.Event
	sc.planned = func(sp *span) {
		if late != nil || sp.run {
			return
		}
		// 2.5 pages of events inside the first page's times, some of them
		// sharing times, so that the page is cut inside a run.
		lo, _ := parseStoredTime(sp.lo)
		late = genEvents("b", 1, 5*scanPage/2)
		for i := range late {
			late[i].Time = lo.Add(time.Duration(i/3) * time.Microsecond)
		}
		if err := s.Append(context.Background(), late); err != nil {
			t.Error(err)
		}
	}
	var (
		got    []inspect.Event
		starts int
	)
	for from, more := formatTime(minTime), true; more; starts++ {
		from, more, err = sc.scan(context.Background(), from, func(e inspect.Event) error {
			got = append(got, e)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if late == nil || starts < 2 {
		t.Fatalf("the page was not overfilled: %d starts", starts)
	}
	want := append(slices.Clone(first), late...)
	slices.SortFunc(want, scanOrder)
	checkSame(t, got, want)
}

// TestScanStoredTimes reads rows whose time another tool wrote in another
// RFC 3339 form: they are read, in the order of their text as SQLite
// compares it ("…53Z" after "…53.6…Z"), and a time that is not RFC 3339
// fails the scan.
func TestScanStoredTimes(t *testing.T) {
	s, _ := openTest(t)
	mustAppend(t, s, genEvents("a", 1, 3))
	for i, tm := range []string{"2025-03-14T09:26:53Z", "2025-03-14T10:26:53.5+01:00"} {
		_, err := s.w.Exec(`INSERT INTO events (id, time, sensor) VALUES (?, ?, 'x')`, 100+i, tm)
		if err != nil {
			t.Fatal(err)
		}
	}
	got := scanAll(t, s, inspect.Filter{})
	if len(got) != 5 {
		t.Fatalf("%d events, want 5", len(got))
	}
	var times []string
	for _, e := range got {
		times = append(times, e.Time.Format(time.RFC3339Nano))
	}
	want := []string{"2025-03-14T09:26:53.599793238Z", "2025-03-14T09:26:53.609793238Z",
		"2025-03-14T09:26:53.619793238Z", "2025-03-14T09:26:53Z", "2025-03-14T09:26:53.5Z"}
	if !slices.Equal(times, want) {
		t.Errorf("times %v\nwant %v", times, want)
	}

	_, err := s.w.Exec(`INSERT INTO events (id, time, sensor) VALUES (9, '2025-03-14 09:26', 'x')`)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Scan(context.Background(), inspect.Filter{}, func(inspect.Event) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "x/9") {
		t.Errorf("a time that is not RFC 3339: %v", err)
	}
}

func checkSame(t *testing.T, got, want []inspect.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("scan gave %d events, want %d", len(got), len(want))
	}
	for i := range got {
		if scanOrder(got[i], want[i]) != 0 {
			t.Fatalf("event %d is %s/%d at %v, want %s/%d at %v", i, got[i].Sensor, got[i].ID,
				got[i].Time, want[i].Sensor, want[i].ID, want[i].Time)
		}
	}
}

// FuzzParseStoredTime holds the direct reading of the time column to
// time.Parse: the same time, or an error for the same texts.
func FuzzParseStoredTime(f *testing.F) {
	for _, s := range []string{
		"2025-03-14T09:26:53.589793238Z", "0000-01-01T00:00:00.000000000Z",
		"9999-12-31T23:59:59.999999999Z", "2024-02-29T12:00:00.000000000Z",
		"2023-02-29T12:00:00.000000000Z", "2025-13-01T00:00:00.000000000Z",
		"2025-03-14T24:00:00.000000000Z", "2025-03-14T09:60:00.000000000Z",
		"2025-03-14T09:26:60.000000000Z", "2025-03-14T09:26:53.5Z", "2025-03-14T09:26:53Z",
		"2025-03-14T09:26:53.+89793238Z", "2025-03-14T09:26:53.58979323 Z", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseStoredTime(s)
		want, wantErr := parseTime(s)
		if (err == nil) != (wantErr == nil) || !got.Equal(want) || got.Location() != want.Location() {
			t.Fatalf("parseStoredTime(%q) = %v, %v; parseTime gives %v, %v", s, got, err,
				want, wantErr)
		}
	})
}
