package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// base is the start time of generated events.
var base = time.Date(2025, 3, 14, 9, 26, 53, 589793238, time.UTC)

// openTest opens a store on a new file in a temporary directory and closes
// it when the test ends.
func openTest(t testing.TB) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, path
}

// genEvent is a plausible event number i of sensor s: ids and times
// increase with i.
func genEvent(sensor string, i int) inspect.Event {
	outcome := inspect.OK
	switch {
	case i%97 == 0:
		outcome = inspect.AuthFailed
	case i%13 == 0:
		outcome = inspect.TLSAborted
	}
	return inspect.Event{
		ID:         int64(i),
		Time:       base.Add(time.Duration(i) * 10 * time.Millisecond),
		DurationMS: float64(i%5000) / 7,
		Source:     inspect.SourceProxy,
		Sensor:     sensor,
		ClientIP:   fmt.Sprintf("10.0.%d.%d", i/250%250, i%250),
		ClientUser: fmt.Sprintf("user%d", i%50),
		Method:     "CONNECT",
		Host:       fmt.Sprintf("tetra-defs-%d.amp.cisco.com", i%3),
		Port:       443,
		Endpoint:   inspect.EndpointTetra,
		Outcome:    outcome,
		Status:     200,
		BytesUp:    int64(i * 3),
		BytesDown:  int64(i * 1000),
		Close:      inspect.ClientFIN,
		TLSVersion: "TLS 1.3",
		Detail:     "completed",
	}
}

func genEvents(sensor string, from, n int) []inspect.Event {
	out := make([]inspect.Event, n)
	for i := range out {
		out[i] = genEvent(sensor, from+i)
	}
	return out
}

func ids(events []inspect.Event) []int64 {
	out := make([]int64, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

func mustAppend(t testing.TB, s *Store, events []inspect.Event) {
	t.Helper()
	if err := s.Append(context.Background(), events); err != nil {
		t.Fatal(err)
	}
}

func mustEvents(t testing.TB, s *Store, f inspect.Filter) []inspect.Event {
	t.Helper()
	got, err := s.Events(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestRoundTripEveryField(t *testing.T) {
	s, _ := openTest(t)
	paris := time.FixedZone("CET", 3600)
	full := inspect.Event{
		ID:             math.MaxInt64,
		Time:           time.Date(2025, 12, 31, 23, 59, 59, 123456789, paris),
		DurationMS:     1234.5678,
		Source:         inspect.SourceSquidLog,
		Sensor:         "site-a",
		ClientIP:       "2001:db8::7",
		ClientUser:     `CORP\jörg`,
		Method:         "GET",
		Host:           "crl.identrust.com",
		Port:           8080,
		URL:            "http://crl.identrust.com/DSTROOTCAX3CRL.crl?x=1&y=%20",
		SNI:            "sni.example",
		Endpoint:       inspect.EndpointRevocation,
		Outcome:        inspect.DownloadAborted,
		Status:         502,
		UpstreamStatus: 407,
		BytesUp:        1 << 40,
		BytesDown:      math.MaxInt64,
		Close:          inspect.ServerRST,
		TLSVersion:     "TLS 1.2",
		TLSAlert:       "unknown_ca",
		TLSIssuer:      "CN=Corp Inspection CA, O=Corp",
		Detail:         "reset after 1.2 MiB; quote ' and \"",
		Diagnosis:      "revocation_blocked",
		LastError:      math.MaxUint32,
	}
	v := reflect.ValueOf(full)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("test event leaves %s zero: give it a value", v.Type().Field(i).Name)
		}
	}
	// The zero event of a sensor: every column at its zero value.
	zero := inspect.Event{Sensor: "site-a", ID: 1}
	mustAppend(t, s, []inspect.Event{full, zero})

	got := mustEvents(t, s, inspect.Filter{})
	want := []inspect.Event{full, zero}
	want[0].Time = want[0].Time.UTC()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
	if got[0].Time.Location() != time.UTC || got[0].Time.Nanosecond() != 123456789 {
		t.Errorf("time %v: want UTC with nanoseconds", got[0].Time)
	}
	if !got[1].Time.IsZero() {
		t.Errorf("zero time came back as %v", got[1].Time)
	}
}

func TestTimeColumnSortsAsTime(t *testing.T) {
	times := []time.Time{
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		base,
		base.Add(time.Nanosecond),
		base.Add(500 * time.Millisecond),
		base.Add(time.Second),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
	}
	for i := 1; i < len(times); i++ {
		a, b := formatTime(times[i-1]), formatTime(times[i])
		if a >= b {
			t.Errorf("%q sorts after %q", a, b)
		}
		back, err := parseTime(b)
		if err != nil || !back.Equal(times[i]) {
			t.Errorf("parseTime(%q) = %v, %v", b, back, err)
		}
	}
}

// filterData is a small set of events that each filter case picks from.
func filterData() []inspect.Event {
	ev := func(id int64, sec int, mod func(*inspect.Event)) inspect.Event {
		e := inspect.Event{
			ID: id, Time: base.Add(time.Duration(sec) * time.Second), Sensor: "a",
			ClientIP: "10.0.0.1", ClientUser: "alice", Method: "CONNECT",
			Host: "tetra-defs.amp.cisco.com", Port: 443, Endpoint: inspect.EndpointTetra,
			Outcome: inspect.OK, Detail: "completed",
		}
		if mod != nil {
			mod(&e)
		}
		return e
	}
	return []inspect.Event{
		ev(1, 0, nil),
		ev(2, 10, func(e *inspect.Event) { e.ClientIP = "10.0.0.2"; e.ClientUser = "BOB" }),
		ev(3, 20, func(e *inspect.Event) {
			e.Host, e.Endpoint = "crl.identrust.com", inspect.EndpointRevocation
			e.Method, e.URL, e.Port = "GET", "http://crl.identrust.com/Root_50%.crl", 80
			e.Outcome, e.Detail = inspect.HTTPError, "origin answered 404"
		}),
		ev(4, 30, func(e *inspect.Event) {
			e.Outcome, e.Detail = inspect.AuthFailed, "Proxy credentials REJECTED"
			e.ClientUser = "Jörg"
		}),
		ev(5, 40, func(e *inspect.Event) {
			e.Host, e.Endpoint, e.Outcome = "Example.COM", inspect.EndpointOther, inspect.Denied
			e.Detail = "port 25 not_allowed"
		}),
		ev(6, 50, func(e *inspect.Event) { e.Sensor = "b"; e.Detail = "ÉCHEC du tunnel" }),
		ev(7, 60, func(e *inspect.Event) {
			e.Sensor, e.ClientIP, e.Outcome = "b", "10.0.0.2", inspect.TLSAborted
			e.Detail = "closed by client before handshake"
		}),
	}
}

func TestEventsFilter(t *testing.T) {
	s, _ := openTest(t)
	data := filterData()
	mustAppend(t, s, data)

	cases := []struct {
		name string
		f    inspect.Filter
		want []int64
	}{
		{"zero", inspect.Filter{}, []int64{7, 6, 5, 4, 3, 2, 1}},
		{"since", inspect.Filter{Since: base.Add(30 * time.Second)}, []int64{7, 6, 5, 4}},
		{"since inclusive to the ns", inspect.Filter{Since: base.Add(60*time.Second - 1)},
			[]int64{7}},
		{"until exclusive", inspect.Filter{Until: base.Add(20 * time.Second)}, []int64{2, 1}},
		{"since and until", inspect.Filter{
			Since: base.Add(10 * time.Second), Until: base.Add(40 * time.Second),
		}, []int64{4, 3, 2}},
		{"since in another zone",
			inspect.Filter{Since: base.Add(50 * time.Second).In(time.FixedZone("X", -7*3600))},
			[]int64{7, 6}},
		{"since before year 0", inspect.Filter{Since: time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC)},
			[]int64{7, 6, 5, 4, 3, 2, 1}},
		{"until after year 9999",
			inspect.Filter{Until: time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)},
			[]int64{7, 6, 5, 4, 3, 2, 1}},
		{"after", inspect.Filter{After: 5}, []int64{7, 6}},
		{"before", inspect.Filter{Before: 3}, []int64{2, 1}},
		{"after and before", inspect.Filter{After: 2, Before: 5}, []int64{4, 3}},
		{"client", inspect.Filter{ClientIP: "10.0.0.2"}, []int64{7, 2}},
		{"client exact only", inspect.Filter{ClientIP: "10.0.0."}, []int64{}},
		{"user any case", inspect.Filter{User: "bob"}, []int64{2}},
		{"user non-ASCII any case", inspect.Filter{User: "JÖRG"}, []int64{4}},
		{"host any case", inspect.Filter{Host: "example.com"}, []int64{5}},
		{"host exact only", inspect.Filter{Host: "identrust.com"}, []int64{}},
		{"endpoint", inspect.Filter{Endpoint: inspect.EndpointRevocation}, []int64{3}},
		{"outcome", inspect.Filter{Outcome: inspect.TLSAborted}, []int64{7}},
		{"outcome ok", inspect.Filter{Outcome: inspect.OK}, []int64{6, 2, 1}},
		{"sensor", inspect.Filter{Sensor: "b"}, []int64{7, 6}},
		{"text in host", inspect.Filter{Text: "IDENTRUST"}, []int64{3}},
		{"text in url", inspect.Filter{Text: "root_50"}, []int64{3}},
		{"text in detail", inspect.Filter{Text: "rejected"}, []int64{4}},
		{"text percent is literal", inspect.Filter{Text: "50%.crl"}, []int64{3}},
		{"text percent matches no wildcard", inspect.Filter{Text: "t%l"}, []int64{}},
		{"text underscore is literal", inspect.Filter{Text: "not_allowed"}, []int64{5}},
		{"text underscore matches no wildcard", inspect.Filter{Text: "by_client"}, []int64{}},
		{"text non-ASCII any case", inspect.Filter{Text: "échec"}, []int64{6}},
		{"text in several fields", inspect.Filter{Text: "cisco"},
			[]int64{7, 6, 4, 2, 1}},
		{"combined", inspect.Filter{
			Sensor: "a", ClientIP: "10.0.0.1", Endpoint: inspect.EndpointTetra,
			Since: base.Add(time.Second),
		}, []int64{4}},
		{"limit", inspect.Filter{Sensor: "a", Limit: 2}, []int64{5, 4}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := ids(mustEvents(t, s, tc.f))
			if !slices.Equal(got, tc.want) {
				t.Errorf("ids %v, want %v", got, tc.want)
			}

			// The SQL must mean what the in-memory filter of the stream means.
			var match []int64
			for i := len(data) - 1; i >= 0; i-- {
				if tc.f.Match(&data[i]) {
					match = append(match, data[i].ID)
				}
			}
			if tc.f.Limit > 0 && len(match) > tc.f.Limit {
				match = match[:tc.f.Limit]
			}
			if !slices.Equal(got, match) {
				t.Errorf("ids %v, Filter.Match gives %v", got, match)
			}
		})
	}
}

func TestEventsNoMatchIsEmptyNotNil(t *testing.T) {
	s, _ := openTest(t)
	got := mustEvents(t, s, inspect.Filter{Host: "nowhere"})
	if got == nil || len(got) != 0 {
		t.Fatalf("got %#v, want an empty non-nil slice", got)
	}
}

func TestEventsOrderAndLimits(t *testing.T) {
	s, _ := openTest(t)
	mustAppend(t, s, genEvents("a", 1, MaxLimit+50))

	cases := []struct {
		limit, want int
	}{
		{0, DefaultLimit},
		{-3, DefaultLimit},
		{7, 7},
		{MaxLimit, MaxLimit},
		{MaxLimit + 1, MaxLimit},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.limit), func(t *testing.T) {
			got := ids(mustEvents(t, s, inspect.Filter{Limit: tc.limit}))
			if len(got) != tc.want {
				t.Fatalf("%d events, want %d", len(got), tc.want)
			}
			for i, id := range got {
				if want := int64(MaxLimit + 50 - i); id != want {
					t.Fatalf("event %d has id %d, want %d (newest first)", i, id, want)
				}
			}
		})
	}
}

func TestEventsSameIDAcrossSensors(t *testing.T) {
	s, _ := openTest(t)
	mustAppend(t, s, genEvents("b", 1, 3))
	mustAppend(t, s, genEvents("a", 1, 3))

	var got []string
	for _, e := range mustEvents(t, s, inspect.Filter{}) {
		got = append(got, fmt.Sprintf("%s/%d", e.Sensor, e.ID))
	}
	want := []string{"b/3", "a/3", "b/2", "a/2", "b/1", "a/1"}
	if !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
}

// TestTimeWindowPlans checks that both ways of answering a time window,
// through events_time or newest first, give the same events, and that
// Events picks the first for a small window.
func TestTimeWindowPlans(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	const n = 3 * windowProbe
	mustAppend(t, s, genEvents("a", 1, n))
	mustAppend(t, s, genEvents("b", 1, n/2))
	at := func(i int) time.Time { return genEvent("a", i).Time }

	filters := map[string]inspect.Filter{
		"empty window":          {Since: at(n + 1)},
		"small recent window":   {Since: at(n - 40)},
		"small old window":      {Since: at(100), Until: at(150)},
		"large window":          {Since: at(windowProbe)},
		"window under limit":    {Since: at(n - 3000), Limit: MaxLimit},
		"window and client":     {Since: at(1000), ClientIP: genEvent("a", 1234).ClientIP},
		"window and before":     {Since: at(2000), Before: 2100},
		"window and outcome":    {Until: at(3000), Outcome: inspect.AuthFailed, Limit: 7},
		"window of other times": {Since: at(n).Add(time.Hour), Until: at(n).Add(2 * time.Hour)},
	}
	for name, f := range filters {
		t.Run(name, func(t *testing.T) {
			q1, args1 := eventsQuery(&f, false, nil)
			q2, args2 := eventsQuery(&f, true, nil)
			newest, err := s.queryEvents(ctx, q1, args1...)
			if err != nil {
				t.Fatal(err)
			}
			byTime, err := s.queryEvents(ctx, q2, args2...)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(newest, byTime) {
				t.Fatalf("newest first gives %d events, by time %d", len(newest), len(byTime))
			}
			if len(newest) == 0 && !strings.Contains(name, "empty") &&
				!strings.Contains(name, "other times") {
				t.Fatal("no events: the case tests nothing")
			}
			got := mustEvents(t, s, f)
			if !reflect.DeepEqual(got, newest) {
				t.Fatalf("Events gives %d events, the queries %d", len(got), len(newest))
			}
		})
	}

	for name, want := range map[string]bool{
		"empty window": true, "small old window": true, "window under limit": true,
		"large window": false,
	} {
		f := filters[name]
		if small, err := s.smallWindow(ctx, &f); err != nil || small != want {
			t.Errorf("%s: smallWindow = %v, %v; want %v", name, small, err, want)
		}
	}
}

func TestPaging(t *testing.T) {
	s, _ := openTest(t)
	const n = 1234
	mustAppend(t, s, genEvents("a", 1, n))

	// Backwards with Before, a page at a time.
	var all []int64
	f := inspect.Filter{Limit: 100}
	for pages := 0; ; pages++ {
		page := ids(mustEvents(t, s, f))
		if len(page) == 0 {
			break
		}
		if pages > n/100+1 {
			t.Fatal("paging does not end")
		}
		all = append(all, page...)
		f.Before = page[len(page)-1]
	}
	if len(all) != n {
		t.Fatalf("paged through %d events, want %d", len(all), n)
	}
	for i, id := range all {
		if id != int64(n-i) {
			t.Fatalf("event %d of the pages has id %d, want %d", i, id, n-i)
		}
	}

	// Catching up with After: only what is newer, newest first.
	mustAppend(t, s, genEvents("a", n+1, 5))
	got := ids(mustEvents(t, s, inspect.Filter{After: n}))
	if want := []int64{n + 5, n + 4, n + 3, n + 2, n + 1}; !slices.Equal(got, want) {
		t.Fatalf("after %d: %v, want %v", n, got, want)
	}
}

func TestAppendDuplicateReplaces(t *testing.T) {
	s, _ := openTest(t)
	first := genEvents("a", 1, 3)
	mustAppend(t, s, first)

	// A later batch repeats id 2 and holds id 4 twice; nothing may fail.
	again := genEvents("a", 2, 3)
	again[0].Outcome, again[0].Detail = inspect.DownloadAborted, "second word"
	dup := again[2]
	dup.Detail = "last word"
	again = append(again, dup)
	mustAppend(t, s, again)

	got := mustEvents(t, s, inspect.Filter{})
	if want := []int64{4, 3, 2, 1}; !slices.Equal(ids(got), want) {
		t.Fatalf("ids %v, want %v", ids(got), want)
	}
	if got[2].Detail != "second word" || got[2].Outcome != inspect.DownloadAborted {
		t.Errorf("id 2 = %q/%q, want the later event", got[2].Outcome, got[2].Detail)
	}
	if got[0].Detail != "last word" {
		t.Errorf("id 4 detail %q, want the last of the batch", got[0].Detail)
	}
}

func TestAppendRejectsBadEventWritesNothing(t *testing.T) {
	year := func(y int) time.Time { return time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC) }
	cases := map[string]func(*inspect.Event){
		"year 10000":    func(e *inspect.Event) { e.Time = year(10000) },
		"negative year": func(e *inspect.Event) { e.Time = year(-1) },
		"NaN duration":  func(e *inspect.Event) { e.DurationMS = math.NaN() },
		"inf duration":  func(e *inspect.Event) { e.DurationMS = math.Inf(1) },
	}
	for name, spoil := range cases {
		t.Run(name, func(t *testing.T) {
			s, _ := openTest(t)
			batch := genEvents("a", 1, 10)
			spoil(&batch[6])
			if err := Check(&batch[6]); err == nil {
				t.Error("Check accepts the event")
			}
			err := s.Append(context.Background(), batch)
			if err == nil || !strings.HasPrefix(err.Error(), "appending events: event a/7:") {
				t.Fatalf("Append error %v, want one naming event a/7", err)
			}
			if got := mustEvents(t, s, inspect.Filter{}); len(got) != 0 {
				t.Errorf("%d events stored, want none", len(got))
			}
		})
	}
}

func TestAppendCancelledWritesNothing(t *testing.T) {
	s, _ := openTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := s.Append(ctx, genEvents("a", 1, 100))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Append error %v, want context.Canceled", err)
	}
	if got := mustEvents(t, s, inspect.Filter{}); len(got) != 0 {
		t.Errorf("%d events stored, want none", len(got))
	}
	if err := s.Append(context.Background(), nil); err != nil {
		t.Errorf("Append(nil): %v", err)
	}
}

func TestReopenKeepsDataAndMaxID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mustAppend(t, s, genEvents("a", 1, 500))
	mustAppend(t, s, genEvents("b", 1, 20))
	if err := s.SetOffset(ctx, "/var/log/squid/access.log", 42, 4096); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path)
	if err != nil {
		t.Fatalf("reopening: %v", err)
	}
	defer s.Close()
	for sensor, want := range map[string]int64{"a": 500, "b": 20, "c": 0} {
		got, err := s.MaxID(ctx, sensor)
		if err != nil || got != want {
			t.Errorf("MaxID(%q) = %d, %v; want %d", sensor, got, err, want)
		}
	}
	if got := mustEvents(t, s, inspect.Filter{Sensor: "a", Limit: MaxLimit}); len(got) != 500 {
		t.Errorf("%d events of sensor a after reopening, want 500", len(got))
	}
	inode, off, err := s.Offset(ctx, "/var/log/squid/access.log")
	if err != nil || inode != 42 || off != 4096 {
		t.Errorf("Offset = %d, %d, %v; want 42, 4096", inode, off, err)
	}
}

func TestMigrations(t *testing.T) {
	t.Run("versions are consecutive", func(t *testing.T) {
		for i, m := range migrations {
			if m.version != i+1 {
				t.Errorf("migration %d has version %d", i, m.version)
			}
		}
		if last := migrations[len(migrations)-1].version; last != SchemaVersion {
			t.Errorf("SchemaVersion %d, last migration %d", SchemaVersion, last)
		}
	})

	t.Run("empty file then idempotent reopen", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "empty.db")
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			s, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			mustAppend(t, s, genEvents("a", 1, 1))
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
		db := rawDB(t, path)
		var versions []int
		rows, err := db.Query("SELECT version FROM schema_version ORDER BY version")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var v int
			if err := rows.Scan(&v); err != nil {
				t.Fatal(err)
			}
			versions = append(versions, v)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		var applied []int
		for _, m := range migrations {
			applied = append(applied, m.version)
		}
		if !slices.Equal(versions, applied) {
			t.Errorf("schema_version rows %v, want %v", versions, applied)
		}

		// Columns are the JSON names of the Event, in order, then the
		// store's own.
		var cols []string
		rows, err = db.Query("SELECT name FROM pragma_table_info('events') ORDER BY cid")
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var c string
			if err := rows.Scan(&c); err != nil {
				t.Fatal(err)
			}
			cols = append(cols, c)
		}
		typ := reflect.TypeFor[inspect.Event]()
		var want []string
		for i := range typ.NumField() {
			want = append(want, typ.Field(i).Tag.Get("json"))
		}
		want = append(want, "seq")
		if !slices.Equal(cols, want) {
			t.Errorf("columns %v, want the JSON names %v", cols, want)
		}
	})

	t.Run("newer schema is refused", func(t *testing.T) {
		s, path := openTest(t)
		db := rawDB(t, path)
		_, err := db.Exec("INSERT INTO schema_version VALUES (?, 'future', 'x')", SchemaVersion+1)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Open(path)
		if err == nil || !strings.Contains(err.Error(), "newer than this program") {
			t.Fatalf("Open error %v, want a newer-schema error", err)
		}
		// The open store is unharmed.
		if err := s.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("failed migration leaves nothing behind", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "clash.db")
		db := rawDB(t, path)
		// An index named like one of migration 1, on an unrelated table.
		if _, err := db.Exec("CREATE TABLE other (x TEXT)"); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec("CREATE INDEX events_time ON other (x)"); err != nil {
			t.Fatal(err)
		}
		_, err := Open(path)
		if err == nil || !strings.Contains(err.Error(), "migrating to version 1") {
			t.Fatalf("Open error %v, want a migration error", err)
		}
		var n int
		q := "SELECT count(*) FROM sqlite_master WHERE name IN ('events', 'schema_version')"
		if err := db.QueryRow(q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%d tables left by the failed migration, want 0", n)
		}
	})
}

// rawDB opens path with the plain driver, as another program would.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(text, []byte(strings.Repeat("not a database\n", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path, want string
	}{
		{"not a database", text, "not an SQLite database"},
		{"directory", dir, "is a directory"},
		{"missing directory", filepath.Join(dir, "nope", "events.db"), "cannot open or create"},
		{"parent is a file", filepath.Join(text, "events.db"), "cannot open or create"},
		{"empty name", "", "need the name of a database file"},
		{"memory", ":memory:", "need the name of a database file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(tc.path)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "opening store "+tc.path+": ") ||
				!strings.Contains(msg, tc.want) {
				t.Errorf("error %q, want the path and %q", msg, tc.want)
			}
		})
	}

	t.Run("read-only directory", func(t *testing.T) {
		if os.Geteuid() == 0 {
			t.Skip("root ignores directory permissions")
		}
		ro := t.TempDir()
		if err := os.Chmod(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(ro, 0o700)
		_, err := Open(filepath.Join(ro, "events.db"))
		if err == nil || !strings.Contains(err.Error(), "cannot open or create") {
			t.Errorf("error %v, want cannot open or create", err)
		}
	})
}

func TestOpenNameWithURICharacters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "odd ?name#1%20.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, genEvents("a", 1, 1))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database not at the given name: %v", err)
	}
}

func TestWALMode(t *testing.T) {
	_, path := openTest(t)
	var mode string
	if err := rawDB(t, path).QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Fatalf("journal mode %q, want wal", mode)
	}
}

// TestConcurrentReadWhileAppending reads through the appending Store and
// through a second Store on the same file, as `tetrascope report` would
// while `serve` runs: readers must see whole batches, never an error.
func TestConcurrentReadWhileAppending(t *testing.T) {
	s, path := openTest(t)
	other, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	const batches, size = 40, 500
	ctx := context.Background()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		for b := range batches {
			if err := s.Append(ctx, genEvents("a", 1+b*size, size)); err != nil {
				t.Error(err)
				return
			}
		}
	}()

	for _, r := range []*Store{s, other, s, other} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last int64
			for reads := 0; ; reads++ {
				select {
				case <-done:
					if reads == 0 {
						t.Error("reader never ran")
					}
					return
				default:
				}
				id, err := r.MaxID(ctx, "a")
				if err != nil {
					t.Error(err)
					return
				}
				if id%size != 0 || id < last {
					t.Errorf("max id %d after %d: a batch seen in part or undone", id, last)
					return
				}
				last = id
				got, err := r.Events(ctx, inspect.Filter{Limit: 50, Outcome: inspect.OK})
				if err != nil {
					t.Error(err)
					return
				}
				if len(got) > 50 || !slices.IsSortedFunc(got, newestFirst) {
					t.Errorf("events %v: not newest first within the limit", ids(got))
				}
			}
		}()
	}
	wg.Wait()

	if got, err := other.MaxID(ctx, "a"); err != nil || got != batches*size {
		t.Fatalf("MaxID through the second store = %d, %v; want %d", got, err, batches*size)
	}
}

func TestPrune(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	const n = 2*pruneBatch + 500 // several batches
	mustAppend(t, s, genEvents("a", 1, n))
	mustAppend(t, s, genEvents("b", 1, 10))

	// Events are 10ms apart: cut before event 2300 of sensor a.
	cutoff := genEvent("a", 2300).Time
	deleted, err := s.Prune(ctx, cutoff)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(2299 + 10); deleted != want {
		t.Errorf("deleted %d, want %d", deleted, want)
	}
	left := mustEvents(t, s, inspect.Filter{Limit: MaxLimit})
	if len(left) != n-2299 {
		t.Errorf("%d events left, want %d", len(left), n-2299)
	}
	for _, e := range left {
		if e.Time.Before(cutoff) {
			t.Fatalf("event %d at %v survived the cutoff %v", e.ID, e.Time, cutoff)
		}
	}
	if got, _ := s.MaxID(ctx, "a"); got != n {
		t.Errorf("MaxID after pruning %d, want %d", got, n)
	}

	if deleted, err := s.Prune(ctx, cutoff); err != nil || deleted != 0 {
		t.Errorf("second Prune = %d, %v; want 0", deleted, err)
	}
	if deleted, err := s.Prune(ctx, time.Time{}); err != nil || deleted != 0 {
		t.Errorf("Prune(zero time) = %d, %v; want 0", deleted, err)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Prune(cancelled, cutoff.Add(time.Hour)); !errors.Is(err, context.Canceled) {
		t.Errorf("Prune with a cancelled context: %v", err)
	}
}

func TestOffsets(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	const file = "/var/log/squid/access.log"

	inode, off, err := s.Offset(ctx, file)
	if err != nil || inode != 0 || off != 0 {
		t.Fatalf("Offset of an unknown file = %d, %d, %v; want 0, 0, nil", inode, off, err)
	}
	steps := []struct {
		inode  uint64
		offset int64
	}{
		{1234, 0},
		{1234, 1 << 33},
		{math.MaxUint64, 77}, // every bit of the inode survives
	}
	for _, st := range steps {
		if err := s.SetOffset(ctx, file, st.inode, st.offset); err != nil {
			t.Fatal(err)
		}
		inode, off, err := s.Offset(ctx, file)
		if err != nil || inode != st.inode || off != st.offset {
			t.Errorf("Offset = %d, %d, %v; want %d, %d", inode, off, err, st.inode, st.offset)
		}
	}
	if inode, _, _ := s.Offset(ctx, file+".1"); inode != 0 {
		t.Errorf("another file shares the offset")
	}
	if err := s.SetOffset(ctx, file, 1, -1); err == nil {
		t.Error("SetOffset accepts a negative offset")
	}
}

func TestPingAndClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	mustAppend(t, s, genEvents("a", 1, 10))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := s.Ping(ctx); err == nil {
		t.Error("Ping after Close succeeds")
	}
	if err := s.Append(ctx, genEvents("a", 11, 1)); err == nil {
		t.Error("Append after Close succeeds")
	}
	// The last connection checkpointed the WAL into the file.
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > 0 {
		t.Errorf("WAL of %d bytes left after Close", fi.Size())
	}
}

// TestQueryPlans guards the indexes: each common filter must be answered
// from an index rather than by scanning the table.
func TestQueryPlans(t *testing.T) {
	s, _ := openTest(t)
	cases := []struct {
		name string
		f    inspect.Filter
		want string
	}{
		{"newest", inspect.Filter{}, "sqlite_autoindex_events_1"},
		{"before", inspect.Filter{Before: 1000}, "sqlite_autoindex_events_1"},
		{"after", inspect.Filter{After: 1000}, "sqlite_autoindex_events_1"},
		{"sensor", inspect.Filter{Sensor: "a"}, "sqlite_autoindex_events_1"},
		{"client", inspect.Filter{ClientIP: "10.0.0.1"}, "events_client"},
		{"host", inspect.Filter{Host: "Example.com"}, "events_host"},
		{"outcome", inspect.Filter{Outcome: inspect.AuthFailed}, "events_outcome"},
		{"outcome ok", inspect.Filter{Outcome: inspect.OK}, "sqlite_autoindex_events_1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var blocks []int64
			if tc.f.ClientIP != "" {
				blocks = []int64{1} // as clientEvents asks
			}
			q, args := eventsQuery(&tc.f, false, blocks)
			plan := explain(t, s, q, args...)
			if !strings.Contains(plan, "USING INDEX "+tc.want) &&
				!strings.Contains(plan, "USING COVERING INDEX "+tc.want) {
				t.Errorf("plan does not use %s:\n%s", tc.want, plan)
			}
		})
	}

	t.Run("client with another filter index", func(t *testing.T) {
		for _, f := range []inspect.Filter{
			{ClientIP: "10.0.0.1", Host: "example.com"},
			{ClientIP: "10.0.0.1", Outcome: inspect.AuthFailed},
		} {
			q, args := eventsQuery(&f, false, []int64{3, 2, 1})
			if plan := explain(t, s, q, args...); !strings.Contains(plan, "INDEX events_client ") {
				t.Errorf("%+v: the blocks are not read through events_client:\n%s", f, plan)
			}
		}
	})

	t.Run("client newest first without sorting", func(t *testing.T) {
		f := inspect.Filter{ClientIP: "10.0.0.1", Before: 1 << 20}
		q, args := eventsQuery(&f, false, []int64{0})
		if plan := explain(t, s, q, args...); strings.Contains(plan, "TEMP B-TREE FOR ORDER BY") {
			t.Errorf("plan sorts all of a block's events of the client:\n%s", plan)
		}
		for _, q := range []string{
			"SELECT id, sensor FROM events WHERE seq < ? AND id < ? ORDER BY id DESC, sensor DESC LIMIT 1",
		} {
			if plan := explain(t, s, q, 4096, 1<<20); !strings.Contains(plan, "sqlite_autoindex_events_1") ||
				strings.Contains(plan, "TEMP B-TREE") {
				t.Errorf("the highest older id is not read off the primary key:\n%s", plan)
			}
		}
	})

	t.Run("small time window", func(t *testing.T) {
		f := inspect.Filter{Since: base}
		q, args := eventsQuery(&f, true, nil)
		if plan := explain(t, s, q, args...); !strings.Contains(plan, "INDEX events_time") {
			t.Errorf("plan does not use events_time:\n%s", plan)
		}
	})

	t.Run("prune", func(t *testing.T) {
		plan := explain(t, s, `DELETE FROM events WHERE (id, sensor) IN
			(SELECT id, sensor FROM events WHERE time < ? ORDER BY time LIMIT ?)`,
			formatTime(base), pruneBatch)
		if strings.Contains(plan, "SCAN events") {
			t.Errorf("prune scans the table:\n%s", plan)
		}
	})
}

func newestFirst(a, b inspect.Event) int {
	return int(b.ID - a.ID)
}

func explain(t *testing.T, s *Store, q string, args ...any) string {
	t.Helper()
	rows, err := s.r.Query("EXPLAIN QUERY PLAN "+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		b.WriteString(detail + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestImports keeps the store at its place in the dependency graph: the
// standard library, inspect and the SQLite driver, nothing else.
func TestImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{
		"github.com/tetrascope/tetrascope/inspect": true,
		"github.com/mattn/go-sqlite3":              true,
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(path, "/")
			if !allowed[path] && strings.Contains(first, ".") {
				t.Errorf("%s imports %s", name, path)
			}
		}
	}
}

func TestMaxIDAllSensors(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "t.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UTC()
	evs := []inspect.Event{
		{ID: 7, Time: now, Sensor: "a", Outcome: inspect.OK, Endpoint: inspect.EndpointTetra},
		{ID: 9, Time: now, Sensor: "b", Outcome: inspect.OK, Endpoint: inspect.EndpointTetra},
	}
	if err := s.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	for sensor, want := range map[string]int64{"a": 7, "b": 9, "": 9, "c": 0} {
		if got, err := s.MaxID(context.Background(), sensor); err != nil || got != want {
			t.Errorf("MaxID(%q) = %d, %v; want %d", sensor, got, err, want)
		}
	}
}
