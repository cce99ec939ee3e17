package report

import (
	"cmp"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"html/template"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

//go:embed report.html.tmpl
var pageTemplate string

//go:embed report.css
var pageCSS string

//go:embed sort.js
var sortScript string

// ContentSecurityPolicy is the policy of the HTML report, in its own meta
// element and, for /api/v1/report, in the response header: nothing may be
// fetched, only the page's own style and its one script (by hash) run.
var ContentSecurityPolicy = func() string {
	sum := sha256.Sum256([]byte(sortScript))
	return "default-src 'none'; style-src 'unsafe-inline'; img-src data:; " +
		"script-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}()

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"code":  codeText,
	"stamp": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
	"iso":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}).Parse(pageTemplate))

// WriteHTML writes rep as one self-contained HTML page: summary, a chart
// of failures over time per outcome (inline SVG), the client table
// (sortable by a small inline script; readable without it), the endpoints
// not seen and the rows of an import that were not used. It fetches
// nothing: styles and script are inline and a Content-Security-Policy
// forbids every request. It prints on landscape pages.
func WriteHTML(w io.Writer, rep *Report) error {
	if err := page.Execute(w, newPageView(rep)); err != nil {
		return fmt.Errorf("writing report html: %w", err)
	}
	return nil
}

// pageView is what the template shows.
type pageView struct {
	R        *Report
	CSP      string
	CSS      template.CSS
	Script   template.JS
	Sensor   string
	Window   string
	Imported bool
	Columns  int // of the client table
	// StateWindow is the state window in words.
	StateWindow string

	Cards      []cardView
	Outcomes   []countView
	Diagnoses  []countView
	ClientDiag []countView
	Chart      chartView
	Rows       []rowView
	NotSeen    []notSeenView
}

type cardView struct {
	N     int
	Label string
	Class string
}

type countView struct {
	Name  string
	N     int
	Share string
	Fill  string // outcomes only
}

// rowView is one client row; the Sort fields are the keys of the sortable
// columns. C is R's Client: the template reaches its fields directly,
// which is much faster than through the embedding, and the views' fields
// stand for what would otherwise take a function call in the template,
// so that a table of thousands of rows takes a fraction of a second.
type rowView struct {
	R         *Row
	C         *inspect.Client
	IPSort    string
	StateSort int
	Outcomes  []countView
	Expected  string
	Reported  string
	// The code on one line and what it means on the next.
	ExpectedCode, ExpectedText string
	ReportedCode, ReportedText string
	MatchedText                string
	Diagnoses                  string
	FirstSeen, LastSeen        timeView
	LastTetraOK, FailingSince  timeView
	ReportSort                 string
}

// timeView is a time of a row: its sort key and how it is shown, both
// empty for none.
type timeView struct {
	Sort, Shown string
}

type notSeenView struct {
	N        *NotSeen
	Reported string
	Expected string
	IPSort   string
}

func newPageView(rep *Report) pageView {
	s := &rep.Summary
	v := pageView{
		R: rep, CSP: ContentSecurityPolicy, CSS: template.CSS(pageCSS),
		Script: template.JS(sortScript), Sensor: rep.Sensor, Imported: rep.LastErrors != nil,
		Window: fmt.Sprintf("%s to %s UTC", rep.Since.UTC().Format("2006-01-02 15:04"),
			rep.Until.UTC().Format("2006-01-02 15:04")),
		Chart: layoutChart(s.Timeline),
	}
	if v.Sensor == "" {
		v.Sensor = "all sensors"
	}
	v.StateWindow = stepText(time.Duration(rep.StateWindow * float64(time.Second)))
	v.Columns = 10
	if v.Imported {
		v.Columns++
	}
	v.Cards = []cardView{
		{s.Clients.Seen, "clients seen", ""},
		{s.Clients.Failing, "failing", "failing"},
		{s.Clients.Silent, "silent", "silent"},
		{s.Clients.Unknown, "unknown", "unknown"},
		{s.Clients.Healthy, "healthy", "healthy"},
		{s.Failures, fmt.Sprintf("failed events of %d", s.Events), ""},
	}
	if a := s.Agreement; a != nil {
		v.Cards = append(v.Cards, cardView{a.Disagree, "disagree with their endpoint", "disagree"},
			cardView{a.NotSeen, "endpoints never seen here", "not_seen"})
	}

	for _, o := range inspect.Outcomes {
		if n := s.FailuresByOutcome[o]; n > 0 {
			v.Outcomes = append(v.Outcomes, countView{Name: string(o), N: n,
				Share: share(n, s.Failures), Fill: fill(o)})
		}
	}
	slices.SortStableFunc(v.Outcomes, func(a, b countView) int { return cmp.Compare(b.N, a.N) })
	v.Diagnoses = sortedCounts(s.FailuresByDiagnosis, s.Failures)
	v.ClientDiag = sortedCounts(s.ClientsByDiagnosis, s.Clients.Seen)

	v.Rows = make([]rowView, len(rep.Clients))
	for i := range rep.Clients {
		v.Rows[i] = newRowView(&rep.Clients[i])
	}
	for i := range rep.NotSeen {
		n := &rep.NotSeen[i]
		v.NotSeen = append(v.NotSeen, notSeenView{N: n, Reported: describe(n.LastError),
			Expected: describe(n.ExpectedLastError), IPSort: ipSortKey(n.IP)})
	}
	return v
}

func newRowView(r *Row) rowView {
	v := rowView{R: r, C: &r.Client, IPSort: ipSortKey(r.ClientIP),
		StateSort: stateOrder(r.State), Expected: describe(r.ExpectedLastError)}
	v.ExpectedCode, v.ExpectedText = codeText(r.ExpectedLastError), meaningOf(r.ExpectedLastError)
	for _, o := range inspect.Outcomes {
		if n := r.Counts[o]; n > 0 && o.Failure() {
			v.Outcomes = append(v.Outcomes, countView{Name: string(o), N: n, Fill: fill(o)})
		}
	}
	var names []string
	for _, d := range r.Diagnoses[min(1, len(r.Diagnoses)):] {
		names = append(names, d.Name)
	}
	v.Diagnoses = strings.Join(names, ", ")
	v.FirstSeen, v.LastSeen = newTimeView(&r.FirstSeen), newTimeView(&r.LastSeen)
	v.LastTetraOK, v.FailingSince = newTimeView(r.LastTetraOK), newTimeView(r.FailingSince)
	if r.ReportedLastError != nil {
		v.Reported = describe(*r.ReportedLastError)
		v.ReportedCode, v.ReportedText = codeText(*r.ReportedLastError),
			meaningOf(*r.ReportedLastError)
		v.MatchedText = "address"
		if r.MatchedBy == MatchMachineAccount {
			v.MatchedText = "machine account"
			if u := matchedAccount(r); u != "" {
				v.MatchedText += " " + u
			}
		}
		v.ReportSort = r.Agreement
	}
	return v
}

func newTimeView(t *time.Time) timeView {
	if t == nil || t.IsZero() {
		return timeView{}
	}
	return timeView{Sort: t.UTC().Format(time.RFC3339Nano),
		Shown: t.UTC().Format("2006-01-02 15:04")}
}

func sortedCounts(m map[string]int, total int) []countView {
	var out []countView
	for k, n := range m {
		if n > 0 {
			out = append(out, countView{Name: k, N: n, Share: share(n, total)})
		}
	}
	slices.SortFunc(out, func(a, b countView) int {
		return cmp.Or(cmp.Compare(b.N, a.N), cmp.Compare(a.Name, b.Name))
	})
	return out
}

func share(n, total int) string {
	if total == 0 {
		return ""
	}
	return strconv.Itoa((100*n+total/2)/total) + "%"
}

// ipSortKey orders addresses numerically, IPv4 before IPv6, and other
// text after them.
func ipSortKey(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "z" + s
	}
	b := a.Unmap().As16()
	prefix := "6"
	if a.Unmap().Is4() {
		prefix = "4"
	}
	return prefix + hex.EncodeToString(b[:])
}

func stateOrder(s inspect.ClientState) int {
	switch s {
	case inspect.StateFailing:
		return 0
	case inspect.StateSilent:
		return 1
	case inspect.StateUnknown:
		return 2
	}
	return 3
}

// meaningOf is what a code means, or a note that it is not known.
func meaningOf(c inspect.LastError) string {
	if info, ok := lookupCode(c); ok {
		return info.Meaning
	}
	return "a value not known to tetrascope"
}

// matchedAccount returns the user of r that matched its endpoint row as a
// machine account, or "".
func matchedAccount(r *Row) string {
	if r.Reported == nil {
		return ""
	}
	m := newMatcher([]Endpoint{*r.Reported})
	for _, u := range r.Users {
		if _, by := m.match("", []string{u}); by == MatchMachineAccount {
			return u
		}
	}
	return ""
}
