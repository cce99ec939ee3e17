package report

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

func TestNewBuilderRefusesEmptyWindows(t *testing.T) {
	for _, opts := range []Options{
		{Until: reportEnd},
		{Since: reportEnd, Until: reportEnd},
		{Since: reportEnd.Add(time.Hour), Until: reportEnd},
	} {
		if _, err := NewBuilder(opts); err == nil {
			t.Errorf("NewBuilder(%v to %v) accepted", opts.Since, opts.Until)
		}
	}
}

// TestShortWindowUsesHistory: a report over the last 30 minutes still
// judges states over the whole state window, from events before it, but
// counts only the events inside it.
func TestShortWindowUsesHistory(t *testing.T) {
	evs := []inspect.Event{
		fixtureEvent(1, at(90*time.Minute), "10.6.0.1", inspect.EndpointTetra, inspect.OK),
		fixtureEvent(2, at(10*time.Minute), "10.6.0.1", inspect.EndpointAMP, inspect.OK),
		fixtureEvent(3, at(100*time.Minute), "10.6.0.2", inspect.EndpointTetra, inspect.DNSFailure),
		fixtureEvent(4, at(20*time.Minute), "10.6.0.2", inspect.EndpointTetra, inspect.DNSFailure),
		fixtureEvent(5, at(60*time.Minute), "10.6.0.3", inspect.EndpointTetra, inspect.OK),
	}
	b, err := NewBuilder(Options{Since: at(30 * time.Minute), Until: reportEnd, Now: reportEnd})
	if err != nil {
		t.Fatal(err)
	}
	if want := at(2*time.Hour + time.Minute); !b.From().Equal(want) {
		t.Errorf("From %v, want %v (state window plus the auth window)", b.From(), want)
	}
	for _, ev := range evs {
		b.Add(ev)
	}
	rep := b.Report()

	if len(rep.Clients) != 2 {
		t.Fatalf("%d rows; want 2 (10.6.0.3 has no event in the window)", len(rep.Clients))
	}
	byIP := map[string]Row{}
	for _, r := range rep.Clients {
		byIP[r.ClientIP] = r
	}
	ok, dns := byIP["10.6.0.1"], byIP["10.6.0.2"]
	if ok.State != inspect.StateHealthy || ok.Counts[inspect.OK] != 1 ||
		!ok.FirstSeen.Equal(at(10*time.Minute)) {
		t.Errorf("10.6.0.1: state %s, ok count %d, first seen %v", ok.State,
			ok.Counts[inspect.OK], ok.FirstSeen)
	}
	if dns.State != inspect.StateFailing || dns.TetraAttempts != 2 ||
		dns.Counts[inspect.DNSFailure] != 1 || dns.Failures != 1 {
		t.Errorf("10.6.0.2: state %s, attempts %d, dns count %d, failures %d", dns.State,
			dns.TetraAttempts, dns.Counts[inspect.DNSFailure], dns.Failures)
	}
	if rep.Summary.Events != 2 || rep.Summary.Failures != 1 {
		t.Errorf("summary counts %d events, %d failures", rep.Summary.Events, rep.Summary.Failures)
	}
}

func TestSensorFilter(t *testing.T) {
	opts := fixtureOptions()
	opts.Sensor = "edge2"
	rep := build(t, fixtureEvents(), opts)
	if len(rep.Clients) != 1 || rep.Clients[0].ClientIP != "10.0.0.17" || rep.Sensor != "edge2" {
		t.Fatalf("rows %v", rep.Clients)
	}
}

func TestFailingSince(t *testing.T) {
	rep := build(t, fixtureEvents(), fixtureOptions())
	want := map[string]string{
		"10.0.0.15": "2026-03-02T10:30:00Z", // first abort after the last success
		"10.0.0.19": "2026-03-02T11:40:00Z", // a revocation failure after a success
		"10.0.0.10": "",
		"10.0.0.13": "",
	}
	for _, r := range rep.Clients {
		w, ok := want[r.ClientIP]
		if !ok {
			continue
		}
		got := ""
		if r.FailingSince != nil {
			got = r.FailingSince.Format(time.RFC3339)
		}
		if got != w {
			t.Errorf("%s failing since %q, want %q", r.ClientIP, got, w)
		}
	}
}

func TestTimelineSteps(t *testing.T) {
	cases := []struct {
		span    time.Duration
		step    time.Duration
		buckets int
	}{
		{30 * time.Minute, time.Minute, 30},
		{time.Hour, 2 * time.Minute, 30},
		{24 * time.Hour, 30 * time.Minute, 48},
		{7 * 24 * time.Hour, 6 * time.Hour, 28},
		{30 * 24 * time.Hour, 24 * time.Hour, 30},
		{10 * 365 * 24 * time.Hour, 90 * 24 * time.Hour, 41},
		{100 * 365 * 24 * time.Hour, 3 * 365 * 24 * time.Hour, 34},
	}
	for _, tc := range cases {
		c := newChartAcc(reportEnd.Add(-tc.span), reportEnd)
		if c.step != tc.step || c.n > MaxBuckets || c.n < tc.buckets-1 || c.n > tc.buckets+1 {
			t.Errorf("span %v: step %v, %d buckets; want %v, about %d", tc.span, c.step, c.n,
				tc.step, tc.buckets)
		}
	}

	// Buckets start on round times and failures land in theirs.
	c := newChartAcc(time.Date(2026, 3, 1, 12, 17, 0, 0, time.UTC), reportEnd)
	c.add(time.Date(2026, 3, 1, 12, 29, 59, 0, time.UTC), inspect.DNSFailure)
	c.add(time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC), inspect.DNSFailure)
	c.add(reportEnd.Add(-time.Second), inspect.AuthFailed)
	c.add(reportEnd, inspect.AuthFailed) // outside
	tl := c.timeline()
	if !tl.Start.Equal(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)) || tl.Step != 1800 ||
		tl.Buckets != 48 {
		t.Fatalf("timeline %v step %v, %d buckets", tl.Start, tl.Step, tl.Buckets)
	}
	dns, auth := tl.Series[inspect.DNSFailure], tl.Series[inspect.AuthFailed]
	if dns[0] != 1 || dns[1] != 1 || auth[47] != 1 || sum(auth) != 1 || len(tl.Series) != 2 {
		t.Errorf("series %v", tl.Series)
	}
}

func TestNiceScale(t *testing.T) {
	cases := []struct{ peak, top, tick int }{
		{0, 1, 1}, {1, 1, 1}, {4, 4, 1}, {9, 10, 2}, {17, 20, 5}, {99, 100, 20},
		{1234, 1500, 500},
	}
	for _, tc := range cases {
		if top, tick := niceScale(tc.peak); top != tc.top || tick != tc.tick {
			t.Errorf("niceScale(%d) = %d, %d; want %d, %d", tc.peak, top, tick, tc.top, tc.tick)
		}
	}
}

func TestParseWhen(t *testing.T) {
	now := reportEnd
	cases := []struct {
		in   string
		want time.Time
		bad  bool
	}{
		{in: "24h", want: now.Add(-24 * time.Hour)},
		{in: " 90m ", want: now.Add(-90 * time.Minute)},
		{in: "7d", want: now.Add(-7 * 24 * time.Hour)},
		{in: "1.5d", want: now.Add(-36 * time.Hour)},
		{in: "2026-03-01T08:00:00+01:00", want: time.Date(2026, 3, 1, 7, 0, 0, 0, time.UTC)},
		{in: "0s", bad: true},
		{in: "-1h", bad: true},
		{in: "0d", bad: true},
		{in: "yesterday", bad: true},
		{in: "", bad: true},
		{in: "24", bad: true},
	}
	for _, tc := range cases {
		got, err := ParseWhen(tc.in, now)
		if tc.bad {
			if err == nil {
				t.Errorf("ParseWhen(%q) = %v, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || !got.Equal(tc.want) || got.Location() != time.UTC {
			t.Errorf("ParseWhen(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// TestCSVDefusesFormulas: text that came from a client or the imported
// file cannot become a spreadsheet formula.
func TestCSVDefusesFormulas(t *testing.T) {
	ev := fixtureEvent(1, at(time.Minute), "10.7.0.1", inspect.EndpointTetra, inspect.OK,
		user("=HYPERLINK(\"http://x\")"))
	opts := fixtureOptions()
	opts.Endpoints = []Endpoint{{Line: 2, IP: "10.7.0.1", DefVersion: "+1:2",
		LastUpdate: "@now"}}
	var buf bytes.Buffer
	if err := WriteCSV(&buf, build(t, []inspect.Event{ev}, opts)); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	row := recs[1]
	for name, want := range map[string]string{
		"client_user": `'=HYPERLINK("http://x")`, "users": `'=HYPERLINK("http://x")`,
		"defversion": "'+1:2", "last_update": "'@now", "client_ip": "10.7.0.1",
	} {
		if got := row[col[name]]; got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
}

// sourceFunc is a Source made of a function.
type sourceFunc func(ctx context.Context, f inspect.Filter, fn func(inspect.Event) error) error

func (s sourceFunc) ScanFields(ctx context.Context, f inspect.Filter, fields []string,
	fn func(inspect.Event) error) error {
	return s(ctx, f, func(ev inspect.Event) error { return fn(onlyFields(ev, fields)) })
}

// onlyFields returns ev with the fields not named zeroed, as the store
// leaves them, so that a report that reads another field shows it.
func onlyFields(ev inspect.Event, fields []string) inspect.Event {
	v := reflect.ValueOf(&ev).Elem()
	for i := range v.NumField() {
		name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
		if !slices.Contains(fields, name) && name != "time" && name != "sensor" && name != "id" {
			v.Field(i).SetZero()
		}
	}
	return ev
}

// sliceSource scans a slice as the store would, checking the filter it is
// given.
func sliceSource(t *testing.T, evs []inspect.Event) Source {
	return sourceFunc(func(_ context.Context, f inspect.Filter, fn func(inspect.Event) error) error {
		if f.Since.IsZero() || f.Until.IsZero() || f.Limit != 0 || f.ClientIP != "" {
			t.Errorf("scan filter %+v", f)
		}
		for _, ev := range evs {
			if f.Match(&ev) {
				if err := fn(ev); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func TestGenerate(t *testing.T) {
	rep, err := Generate(context.Background(), sliceSource(t, fixtureEvents()), fixtureOptions())
	if err != nil {
		t.Fatal(err)
	}
	direct := build(t, fixtureEvents(), fixtureOptions())
	var a, b bytes.Buffer
	if err := WriteJSON(&a, rep); err != nil {
		t.Fatal(err)
	}
	if err := WriteJSON(&b, direct); err != nil {
		t.Fatal(err)
	}
	if a.String() != b.String() {
		t.Error("Generate and a Builder fed by hand disagree")
	}

	broken := sourceFunc(func(context.Context, inspect.Filter, func(inspect.Event) error) error {
		return errors.New("disk on fire")
	})
	if _, err := Generate(context.Background(), broken, fixtureOptions()); err == nil ||
		!strings.Contains(err.Error(), "disk on fire") {
		t.Errorf("Generate over a failing source: %v", err)
	}
}

func TestWriteUnknownFormat(t *testing.T) {
	if err := Write(new(bytes.Buffer), build(t, nil, fixtureOptions()), "xml"); err == nil {
		t.Error("xml accepted")
	}
}

// TestEmptyReport: no event at all still gives every format, with an
// empty table and the chart saying there was nothing.
func TestEmptyReport(t *testing.T) {
	rep := build(t, nil, fixtureOptions())
	for _, format := range Formats {
		var buf bytes.Buffer
		if err := Write(&buf, rep, format); err != nil {
			t.Fatal(err)
		}
		if format == "html" && !strings.Contains(buf.String(), "No failures in the window.") {
			t.Error("empty html chart says nothing")
		}
		if format == "json" && !strings.Contains(buf.String(), `"clients": []`) {
			t.Error("empty json has no clients list")
		}
		if format == "csv" && strings.Count(buf.String(), "\r\n") != 1 {
			t.Errorf("empty csv: %q", buf.String())
		}
	}
}

// TestImports keeps the report package where DESIGN.md puts it: it uses
// inspect and the standard library only.
func TestImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
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
			if strings.Contains(first, ".") && path != "github.com/tetrascope/tetrascope/inspect" {
				t.Errorf("%s imports %s", name, path)
			}
		}
	}
}

// A failure that names no host is listed under NoTarget, not a blank name.
func TestFailingTargetWithoutHost(t *testing.T) {
	b, err := NewBuilder(Options{Since: reportEnd.Add(-time.Hour), Until: reportEnd})
	if err != nil {
		t.Fatal(err)
	}
	b.Add(inspect.Event{ID: 1, Time: reportEnd.Add(-time.Minute), Sensor: "s",
		ClientIP: "10.0.0.9", Endpoint: inspect.EndpointOther, Outcome: inspect.BadRequest,
		Status: 400})
	got := b.Report().Summary.FailingTargets
	if len(got) != 1 || got[0].Host != NoTarget || got[0].Failures != 1 {
		t.Errorf("failing targets %+v; want one %q", got, NoTarget)
	}
}
