// Package report builds the incident report of tetrascope: per client,
// which ones failed to download definitions, how, since when, and whether
// that matches the lasterror the endpoints report themselves. It replays
// stored events through inspect.Clients, so it needs no running proxy, and
// writes the result as CSV (the client table), JSON or one self-contained
// HTML file. `tetrascope report` and GET /api/v1/report share it.
//
// The package imports inspect and the standard library only.
package report

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// Version is the version of the JSON layout; it changes only when a field
// changes meaning or goes away (docs/report.md).
const Version = 1

// DefaultSince is how far back a report looks when not told.
const DefaultSince = 24 * time.Hour

// Report is one report: the window it covers, a summary, one row per
// client seen in the window and the imported endpoints this proxy never
// saw. Its JSON names are the contract of docs/report.md.
type Report struct {
	Version int `json:"version"`
	// Generated is when the report was made; Since and Until bound the
	// events it counts, [Since, Until), all in UTC.
	Generated time.Time `json:"generated"`
	Since     time.Time `json:"since"`
	Until     time.Time `json:"until"`
	// Sensor is the one sensor reported on, empty for all of them.
	Sensor string `json:"sensor"`
	// StateWindow is the window client states are judged over, in seconds.
	StateWindow float64 `json:"state_window_s"`

	Summary Summary `json:"summary"`
	Clients []Row   `json:"clients"`
	// NotSeen lists the imported endpoints that match no client, in the
	// order of the file; empty when nothing was imported.
	NotSeen []NotSeen `json:"not_seen"`
	// LastErrors describes the import of the endpoints' own values; nil
	// when none was given.
	LastErrors *Import `json:"lasterrors,omitempty"`
}

// Row is one client of the report: the client fields of DESIGN.md, with
// counts, first_seen and last_seen over the report's window and the state,
// diagnoses and expected lasterror as of its end, plus what the report
// adds.
type Row struct {
	inspect.Client

	// HostName is the endpoint's host name when known: from the matched
	// endpoint row, or from a machine account the client authenticated
	// with. Empty otherwise.
	HostName string `json:"host_name"`
	// Failures counts the client's failed events in the window, every
	// outcome but ok and auth_required.
	Failures int `json:"failures"`
	// FailingSince is the start of the client's first failure on tetra or
	// revocation traffic after its latest successful tetra download in
	// the window (or in the window at all, without one); nil when there
	// was none.
	FailingSince *time.Time `json:"failing_since"`
	// ExpectedMeaning says what the expected lasterror means; Advice is
	// what to check: the main diagnosis's advice, or the code's when there
	// is no diagnosis.
	ExpectedMeaning string `json:"expected_meaning"`
	Advice          string `json:"advice"`

	// Reported is the endpoint's own row, MatchedBy how it was matched
	// (MatchIP or MatchMachineAccount), AgreementMeaning what the
	// agreement or disagreement means in plain words. All are empty when
	// no endpoint matched.
	Reported         *Endpoint `json:"reported,omitempty"`
	MatchedBy        string    `json:"matched_by,omitempty"`
	AgreementMeaning string    `json:"agreement_meaning,omitempty"`
}

// How an endpoint row was matched to a client.
const (
	MatchIP             = "ip"
	MatchMachineAccount = "machine_account"
)

// NotSeen is an imported endpoint that matches no client of the report.
type NotSeen struct {
	Endpoint
	// ExpectedLastError is what an endpoint that is meant to use this
	// proxy and never reaches it shows: 4294965193, inferred.
	ExpectedLastError inspect.LastError `json:"expected_lasterror"`
	LastErrorBasis    inspect.Basis     `json:"lasterror_basis"`
	Agreement         string            `json:"agreement"`
	AgreementMeaning  string            `json:"agreement_meaning"`
}

// Import sums up an import of the endpoints' own values.
type Import struct {
	// Endpoints is the number of rows used, Matched how many of them match
	// a client, Errors the rows that were not used.
	Endpoints int        `json:"endpoints"`
	Matched   int        `json:"matched"`
	Errors    []RowError `json:"errors"`
}

// Options says what a report covers.
type Options struct {
	// Correlation holds the correlation.* settings; zero fields take their
	// defaults.
	Correlation inspect.Correlation
	// Since and Until bound the window, [Since, Until). Since must be set
	// and before Until; a zero Until is Now.
	Since, Until time.Time
	// Now is the time of the report (Generated); zero means time.Now.
	Now time.Time
	// Sensor, when set, keeps that sensor's events only.
	Sensor string
	// Endpoints are the endpoints' own values, from ParseLastErrors; nil
	// when none were imported. ImportErrors are the rows not used, shown
	// with them.
	Endpoints    []Endpoint
	ImportErrors []RowError
}

// Source gives stored events; *store.Store is one. ScanFields calls fn with
// the events that f matches, oldest first (by time, then sensor, then id),
// from one goroutine at a time, with at least the fields named (JSON names)
// filled in. The filter sets Since, Until and, when the report names one,
// Sensor, nothing else. A report spends less on an event than reading it
// costs, so a source should read ahead of fn; the store does, on two
// connections.
type Source interface {
	ScanFields(ctx context.Context, f inspect.Filter, fields []string,
		fn func(inspect.Event) error) error
}

// scanFields are the event fields a report reads: those of the client
// table and summary, and those the correlation reads.
var scanFields = []string{"id", "time", "duration_ms", "sensor", "client_ip", "client_user",
	"host", "endpoint", "outcome", "bytes_down", "close", "tls_version", "tls_alert",
	"tls_issuer"}

// Generate builds the report of opts from the events of src.
func Generate(ctx context.Context, src Source, opts Options) (*Report, error) {
	b, err := NewBuilder(opts)
	if err != nil {
		return nil, err
	}
	f := inspect.Filter{Since: b.From(), Until: b.until, Sensor: opts.Sensor}
	err = src.ScanFields(ctx, f, scanFields, func(ev inspect.Event) error {
		b.add(&ev)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("building report: %w", err)
	}
	return b.Report(), nil
}

// Builder makes a report from events given one by one, oldest first. It
// keeps a few counters per client and the correlation's bounded state, not
// the events, so its memory does not grow with their number. The zero
// Builder is not usable; call NewBuilder.
type Builder struct {
	opts         Options
	now          time.Time
	since, until time.Time
	from         time.Time // start of the replay: since less the warm-up

	correlation *inspect.Clients
	hist        history
	clients     map[clientKey]*client
	chart       *chartAcc
	added       int64 // events taken from From on

	events        int
	failByOutcome map[inspect.Outcome]int
	targets       map[string]int
}

type clientKey struct{ sensor, ip string }

// client is what the builder keeps of one client: its counts over the
// report's window and, until the recent stretch begins, its condensed
// history.
type client struct {
	acc
	past past
}

// acc is what the builder counts per client over the report's window.
type acc struct {
	counts       [maxOutcomes]int
	first, last  time.Time
	failures     int
	failingSince time.Time // zero: no failure since the latest success
	seen         bool      // an event of the window was counted
}

// maxOutcomes sizes per-client counters; init checks it against the
// outcome list.
const maxOutcomes = 16

// maxTargets bounds the target hosts counted for the summary; failures to
// further hosts are counted together.
const maxTargets = 1000

// OtherTargets is the summary's name for failures to hosts past the first
// maxTargets.
const OtherTargets = "(other hosts)"

// NoTarget is the summary's name for failures that name no host: requests
// too malformed to say where they were going.
const NoTarget = "(no host)"

func init() {
	if len(inspect.Outcomes) > maxOutcomes {
		panic("report: raise maxOutcomes to the number of outcomes")
	}
}

// NewBuilder returns a Builder for opts. It fails when the window is empty
// or has no start.
func NewBuilder(opts Options) (*Builder, error) {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	until := opts.Until
	if until.IsZero() {
		until = now
	}
	switch {
	case opts.Since.IsZero():
		return nil, errors.New("report: the window needs a start (since)")
	case !opts.Since.Before(until):
		return nil, fmt.Errorf("report: since %s is not before until %s",
			opts.Since.UTC().Format(time.RFC3339), until.UTC().Format(time.RFC3339))
	}

	// States at the end of the window need one state window of history,
	// and a challenge or revocation failure just before it needs its own
	// window: events from that far back are replayed but not counted.
	cs := inspect.NewClients(opts.Correlation)
	c := cs.Correlation()
	warm := c.StateWindow() + max(c.AuthWindow, c.RevocationWindow)
	from := until.Add(-warm)
	if opts.Since.Before(from) {
		from = opts.Since
	}

	return &Builder{
		opts: opts, now: now.UTC(), since: opts.Since.UTC(), until: until.UTC(), from: from.UTC(),
		correlation:   cs,
		hist:          history{judgeFrom: until.Add(-warm), corr: c},
		clients:       make(map[clientKey]*client),
		chart:         newChartAcc(opts.Since.UTC(), until.UTC()),
		failByOutcome: make(map[inspect.Outcome]int),
		targets:       make(map[string]int),
	}, nil
}

// From is the time from which the builder needs events: the window's start,
// or earlier when the window is shorter than the history that client
// states need.
func (b *Builder) From() time.Time { return b.from }

// Add takes one finished event. Events must come oldest first, each once;
// events outside [From, Until), still open, without a client address, or
// of other traffic that is neither denied nor malformed are ignored, as
// inspect.Clients ignores them. Add reads the fields a Source must fill in
// for Generate, no other.
func (b *Builder) Add(ev inspect.Event) { b.add(&ev) }

// add is Add on an event the builder may change.
func (b *Builder) add(ev *inspect.Event) {
	if ev.Time.Before(b.from) || !ev.Time.Before(b.until) || !ev.Outcome.Valid() ||
		ev.ClientIP == "" || b.opts.Sensor != "" && ev.Sensor != b.opts.Sensor {
		return
	}
	if !ev.Endpoint.Valid() {
		ev.Endpoint = inspect.EndpointOther
	}
	if ev.Endpoint == inspect.EndpointOther && ev.Outcome != inspect.Denied &&
		ev.Outcome != inspect.BadRequest {
		return
	}
	key := clientKey{ev.Sensor, ev.ClientIP}
	c := b.clients[key]
	if c == nil {
		c = &client{}
		b.clients[key] = c
	}
	end := eventEnd(ev)
	b.added++
	b.hist.feed(b.correlation, b.clients, ev, end, &c.past, b.added)
	if ev.Time.Before(b.since) {
		return // history for the states only
	}

	// Counted in the window.
	b.events++
	a := &c.acc
	start, end := ev.Time.UTC(), end.UTC()
	if !a.seen || start.Before(a.first) {
		a.first = start
	}
	if !a.seen || end.After(a.last) {
		a.last = end
	}
	a.seen = true
	if i := slices.Index(inspect.Outcomes, ev.Outcome); i >= 0 {
		a.counts[i]++
	}
	switch {
	case ev.Endpoint == inspect.EndpointTetra && ev.Outcome == inspect.OK:
		a.failingSince = time.Time{}
	case ev.Endpoint.Updates() && ev.Outcome.Failure() && a.failingSince.IsZero():
		a.failingSince = start
	}
	if !ev.Outcome.Failure() {
		return
	}

	a.failures++
	b.failByOutcome[ev.Outcome]++
	b.chart.add(start, ev.Outcome)
	host := strings.ToLower(ev.Host)
	if host == "" {
		host = NoTarget
	}
	if _, ok := b.targets[host]; !ok && len(b.targets) >= maxTargets {
		host = OtherTargets
	}
	b.targets[host]++
}

// NoDiagnosis is the summary's name for the failures of clients without a
// diagnosis.
const NoDiagnosis = "none"

// Report returns the report of the events added so far. The Builder can go
// on taking events afterwards.
func (b *Builder) Report() *Report {
	b.hist.flush(b.correlation, b.clients)
	rep := &Report{
		Version:     Version,
		Generated:   b.now,
		Since:       b.since,
		Until:       b.until,
		Sensor:      b.opts.Sensor,
		StateWindow: b.correlation.Correlation().StateWindow().Seconds(),
		Clients:     []Row{},
		NotSeen:     []NotSeen{},
	}

	// Clients kept by the correlation and seen in the window; the list
	// comes failing first, then silent, unknown and healthy.
	for _, c := range b.correlation.List(b.until) {
		bc := b.clients[clientKey{c.Sensor, c.ClientIP}]
		if bc == nil || !bc.seen {
			continue // seen only before the window
		}
		rep.Clients = append(rep.Clients, b.row(c, &bc.acc))
	}

	b.correlate(rep)
	rep.Summary = b.summary(rep)
	return rep
}

// row completes one client's row from the correlation's view c and the
// window's counts a.
func (b *Builder) row(c inspect.Client, a *acc) Row {
	c.FirstSeen, c.LastSeen = a.first, a.last
	c.Counts = make(map[inspect.Outcome]int, len(inspect.Outcomes))
	for i, o := range inspect.Outcomes {
		c.Counts[o] = a.counts[i]
	}
	r := Row{Client: c, Failures: a.failures, HostName: machineHost(c.Users)}
	if !a.failingSince.IsZero() {
		t := a.failingSince
		r.FailingSince = &t
	}
	if info, ok := lookupCode(c.ExpectedLastError); ok {
		r.ExpectedMeaning = info.Meaning
	}
	switch {
	case len(c.Diagnoses) > 0:
		r.Advice = c.Diagnoses[0].Advice
	case c.ExpectedLastError != inspect.LastErrorNone:
		if info, ok := inspect.LookupLastError(c.ExpectedLastError); ok {
			r.Advice = upperFirst(info.Action) + "."
		}
	}
	return r
}

// summary counts what the rows and the added events say.
func (b *Builder) summary(rep *Report) Summary {
	s := Summary{
		Events:              b.events,
		FailuresByOutcome:   map[inspect.Outcome]int{},
		FailuresByDiagnosis: map[string]int{},
		ClientsByDiagnosis:  map[string]int{},
		WorstHosts:          []HostFailures{},
		FailingTargets:      []TargetFailures{},
		Timeline:            b.chart.timeline(),
	}
	for _, o := range inspect.Outcomes {
		if o.Failure() {
			s.FailuresByOutcome[o] = b.failByOutcome[o]
			s.Failures += b.failByOutcome[o]
		}
	}
	for _, r := range rep.Clients {
		s.Clients.Seen++
		switch r.State {
		case inspect.StateHealthy:
			s.Clients.Healthy++
		case inspect.StateFailing:
			s.Clients.Failing++
		case inspect.StateSilent:
			s.Clients.Silent++
		default:
			s.Clients.Unknown++
		}
		if r.Diagnosis != "" {
			s.ClientsByDiagnosis[r.Diagnosis]++
		}
		if r.Failures > 0 {
			s.FailuresByDiagnosis[cmp.Or(r.Diagnosis, NoDiagnosis)] += r.Failures
		}
		if r.Failures > 0 {
			s.WorstHosts = append(s.WorstHosts, HostFailures{
				ClientIP: r.ClientIP, Sensor: r.Sensor, HostName: r.HostName,
				ClientUser: r.ClientUser, Failures: r.Failures, State: r.State,
				Diagnosis: r.Diagnosis,
			})
		}
	}
	slices.SortStableFunc(s.WorstHosts, func(x, y HostFailures) int {
		return cmp.Compare(y.Failures, x.Failures) // rows are already in key order
	})
	s.WorstHosts = s.WorstHosts[:min(len(s.WorstHosts), TopN)]

	for host, n := range b.targets {
		s.FailingTargets = append(s.FailingTargets, TargetFailures{Host: host, Failures: n})
	}
	slices.SortFunc(s.FailingTargets, func(x, y TargetFailures) int {
		return cmp.Or(cmp.Compare(y.Failures, x.Failures), cmp.Compare(x.Host, y.Host))
	})
	s.FailingTargets = s.FailingTargets[:min(len(s.FailingTargets), TopN)]

	if rep.LastErrors != nil {
		s.Agreement = &AgreementCounts{NotSeen: len(rep.NotSeen)}
		for _, r := range rep.Clients {
			switch r.Agreement {
			case inspect.AgreementAgree:
				s.Agreement.Agree++
			case inspect.AgreementDisagree:
				s.Agreement.Disagree++
			}
		}
	}
	return s
}

// TopN is the length of the summary's lists of worst hosts and failing
// targets.
const TopN = 10

// Summary is the first part of a JSON or HTML report.
type Summary struct {
	// Events counts the events of the window that concern the connector
	// (those that make clients); Failures those that failed.
	Events   int          `json:"events"`
	Failures int          `json:"failures"`
	Clients  ClientCounts `json:"clients"`
	// FailuresByOutcome has every failure outcome, zero included.
	FailuresByOutcome map[inspect.Outcome]int `json:"failures_by_outcome"`
	// FailuresByDiagnosis counts failed events by the main diagnosis of
	// their client at the end of the window, NoDiagnosis for a client
	// without one.
	FailuresByDiagnosis map[string]int `json:"failures_by_diagnosis"`
	// ClientsByDiagnosis counts clients by main diagnosis; clients without
	// one are left out.
	ClientsByDiagnosis map[string]int `json:"clients_by_diagnosis"`
	// WorstHosts are the TopN clients with the most failures, most first;
	// FailingTargets the TopN target hosts with the most failures.
	WorstHosts     []HostFailures   `json:"worst_hosts"`
	FailingTargets []TargetFailures `json:"failing_targets"`
	// Agreement counts the client rows per agreement and the endpoints
	// not seen; nil when nothing was imported.
	Agreement *AgreementCounts `json:"agreement,omitempty"`
	Timeline  Timeline         `json:"timeline"`
}

// ClientCounts counts the clients of the report by state.
type ClientCounts struct {
	Seen    int `json:"seen"`
	Healthy int `json:"healthy"`
	Failing int `json:"failing"`
	Silent  int `json:"silent"`
	Unknown int `json:"unknown"`
}

// HostFailures is one of the worst hosts: a client and its failures.
type HostFailures struct {
	ClientIP   string              `json:"client_ip"`
	Sensor     string              `json:"sensor"`
	HostName   string              `json:"host_name"`
	ClientUser string              `json:"client_user"`
	Failures   int                 `json:"failures"`
	State      inspect.ClientState `json:"state"`
	Diagnosis  string              `json:"diagnosis"`
}

// TargetFailures counts the failures of one target host.
type TargetFailures struct {
	Host     string `json:"host"`
	Failures int    `json:"failures"`
}

// AgreementCounts counts rows by agreement.
type AgreementCounts struct {
	Agree    int `json:"agree"`
	Disagree int `json:"disagree"`
	NotSeen  int `json:"not_seen"`
}

// machineHost returns the host of the first machine account among users
// (DOMAIN\HOST$ or HOST$@REALM, as Windows services authenticating with
// NTLM or Kerberos appear), as written; empty when there is none.
func machineHost(users []string) string {
	for _, u := range users {
		if h := machineAccount(u); h != "" {
			return h
		}
	}
	return ""
}

// machineAccount returns HOST for a machine account DOMAIN\HOST$ or
// HOST$@REALM, and "" for any other user name.
func machineAccount(user string) string {
	u := strings.TrimSpace(user)
	if i := strings.LastIndexByte(u, '\\'); i >= 0 {
		u = u[i+1:]
	} else if i := strings.IndexByte(u, '@'); i >= 0 {
		u = u[:i]
	}
	h, ok := strings.CutSuffix(u, "$")
	if !ok || h == "" || strings.ContainsAny(h, " \t/@:.$") {
		return ""
	}
	return h
}

// canonicalIP returns s as netip writes it, or s itself when it is not an
// address.
func canonicalIP(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return s
	}
	return a.WithZone("").Unmap().String()
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// codeText writes a lasterror as "4294965193 (-2103)", the signed form
// only for codes of 2^31 and more.
func codeText(c inspect.LastError) string {
	if c.Signed() < 0 {
		return strconv.FormatUint(uint64(c), 10) + " (" + strconv.Itoa(int(c.Signed())) + ")"
	}
	return strconv.FormatUint(uint64(c), 10)
}
