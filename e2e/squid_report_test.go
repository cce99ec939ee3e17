package e2e

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The report-level comparison of the sidecar cases: `tetrascope report`
// on the database `tail` filled from a Squid log, against the report on
// the database `serve` filled with the same traffic. Each case's client
// sends from its own address through both proxies, so that every row of
// one report has its pair in the other. The facts compared are those a
// report is read for: per client its attempts, failures and counts by
// outcome, state, diagnoses, expected lasterror and users; in the summary
// the counts by state, outcome and diagnosis, the worst hosts and the
// failing targets. Times are not compared (the two runs happen one after
// the other), only whether a time is set.
//
// A difference fails the test unless logGaps lists it, with the value from
// each side and the reason the log cannot do better; a listed difference
// that no longer occurs fails it too, so that the list stays exact.

// The two logs of the Squid cases.
const (
	logNative = "native"
	logCustom = "custom"
)

// reportTimeout bounds one `tetrascope report` run.
const reportTimeout = 30 * time.Second

// reportMargin widens a run's span on both sides for the report's window;
// the report judges states and diagnoses at the window's end, so both
// reports judge at the same distance from their traffic.
const reportMargin = time.Second

// jsonReport is what the comparison reads of a JSON report (docs/report.md).
type jsonReport struct {
	StateWindow float64 `json:"state_window_s"`
	Summary     struct {
		Events              int            `json:"events"`
		Failures            int            `json:"failures"`
		Clients             map[string]int `json:"clients"`
		FailuresByOutcome   map[string]int `json:"failures_by_outcome"`
		FailuresByDiagnosis map[string]int `json:"failures_by_diagnosis"`
		ClientsByDiagnosis  map[string]int `json:"clients_by_diagnosis"`
		WorstHosts          []struct {
			ClientIP   string `json:"client_ip"`
			ClientUser string `json:"client_user"`
			Failures   int    `json:"failures"`
			State      string `json:"state"`
			Diagnosis  string `json:"diagnosis"`
		} `json:"worst_hosts"`
		FailingTargets []struct {
			Host     string `json:"host"`
			Failures int    `json:"failures"`
		} `json:"failing_targets"`
	} `json:"summary"`
	Clients []struct {
		ClientIP      string         `json:"client_ip"`
		ClientUser    string         `json:"client_user"`
		Users         []string       `json:"users"`
		HostName      string         `json:"host_name"`
		LastTetraOK   *time.Time     `json:"last_tetra_ok"`
		TetraAttempts int            `json:"tetra_attempts"`
		TetraFailures int            `json:"tetra_failures"`
		Failures      int            `json:"failures"`
		FailingSince  *time.Time     `json:"failing_since"`
		Counts        map[string]int `json:"counts"`
		State         string         `json:"state"`
		Diagnosis     string         `json:"diagnosis"`
		Diagnoses     []struct {
			Name string `json:"name"`
		} `json:"diagnoses"`
		ExpectedLastError uint32 `json:"expected_lasterror"`
		LastErrorBasis    string `json:"lasterror_basis"`
	} `json:"clients"`
}

// reportKeys are the keys the comparison reads, which every report must
// hold: a renamed or missing field would otherwise compare as equal zeros.
var reportKeys = map[string][]string{
	"": {"state_window_s", "summary", "clients"},
	"summary": {"events", "failures", "clients", "failures_by_outcome",
		"failures_by_diagnosis", "clients_by_diagnosis", "worst_hosts", "failing_targets"},
	"clients[]": {"client_ip", "client_user", "users", "host_name", "last_tetra_ok",
		"tetra_attempts", "tetra_failures", "failures", "failing_since", "counts", "state",
		"diagnosis", "diagnoses", "expected_lasterror", "lasterror_basis"},
}

// missingKeys lists the keys of reportKeys that the JSON report b lacks.
func missingKeys(b []byte) []string {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return []string{err.Error()}
	}
	var summary map[string]json.RawMessage
	var clients []map[string]json.RawMessage
	json.Unmarshal(top["summary"], &summary)
	json.Unmarshal(top["clients"], &clients)

	var missing []string
	check := func(where string, obj map[string]json.RawMessage, keys []string) {
		for _, k := range keys {
			if _, ok := obj[k]; !ok {
				missing = append(missing, where+k)
			}
		}
	}
	check("", top, reportKeys[""])
	check("summary.", summary, reportKeys["summary"])
	for i, c := range clients {
		check(fmt.Sprintf("clients[%d].", i), c, reportKeys["clients[]"])
	}
	return missing
}

// factKey names one fact of a report: whom it is about (a client, a
// target host, or the summary) and the field.
type factKey struct{ who, field string }

// compareFactKeys orders facts by whom they are about, then by field.
func compareFactKeys(a, b factKey) int {
	return cmp.Or(strings.Compare(a.who, b.who), strings.Compare(a.field, b.field))
}

// reportFacts are the comparable facts of one report.
type reportFacts map[factKey]string

// madeReport is one report made by the binary: its file and its facts.
type madeReport struct {
	path  string
	facts reportFacts
}

// report runs `tetrascope report --format json` on the database db for
// the window of run, widened by reportMargin, and reads its facts; name
// says whose database it is.
func (w *squidWorld) report(t *testing.T, name, db string, run span) madeReport {
	t.Helper()
	out := filepath.Join(t.TempDir(), "report-"+name+".json")
	args := []string{"report", "--db", db, "--format", "json", "-o", out,
		"--since", run.begin.Add(-reportMargin).UTC().Format(time.RFC3339Nano),
		"--until", run.end.Add(reportMargin).UTC().Format(time.RFC3339Nano)}
	ctx, cancel := context.WithTimeout(context.Background(), reportTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, needBinary(t), args...)
	cmd.Dir = t.TempDir() // so that no config file is picked up
	cmd.Env = childEnv()
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		t.Fatalf("tetrascope %s: %v\n%s", strings.Join(args, " "), err, output.String())
	}

	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if missing := missingKeys(b); len(missing) > 0 {
		t.Fatalf("report %s lacks %s", out, strings.Join(missing, ", "))
	}
	var r jsonReport
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("decoding report %s: %v", out, err)
	}
	return madeReport{path: out, facts: w.facts(r)}
}

// clientLabel names a client in the facts: its address and the cases it
// sent.
func (w *squidWorld) clientLabel(ip string) string {
	var names []string
	for _, c := range w.cases {
		if c.client == ip {
			names = append(names, c.name)
		}
	}
	if len(names) == 0 {
		return "client " + ip + " (of no case)"
	}
	return "client " + ip + " (" + strings.Join(names, ", ") + ")"
}

// caseClient names the client of the case called name, as the facts do.
func (w *squidWorld) caseClient(name string) string {
	for _, c := range w.cases {
		if c.name == name {
			return w.clientLabel(c.client)
		}
	}
	panic("no case " + name)
}

// facts flattens r into its comparable facts. The order of the worst
// hosts is not one of them: it follows from their failures and states,
// which are.
func (w *squidWorld) facts(r jsonReport) reportFacts {
	f := reportFacts{}
	setTime := func(t *time.Time) string {
		if t == nil {
			return "none"
		}
		return "set"
	}
	const summary = "summary"

	f[factKey{summary, "state_window_s"}] = strconv.FormatFloat(r.StateWindow, 'f', -1, 64)
	f[factKey{summary, "events"}] = strconv.Itoa(r.Summary.Events)
	f[factKey{summary, "failures"}] = strconv.Itoa(r.Summary.Failures)
	for _, m := range []struct {
		name   string
		counts map[string]int
	}{
		{"clients", r.Summary.Clients},
		{"failures_by_outcome", r.Summary.FailuresByOutcome},
		{"failures_by_diagnosis", r.Summary.FailuresByDiagnosis},
		{"clients_by_diagnosis", r.Summary.ClientsByDiagnosis},
	} {
		for k, n := range m.counts {
			f[factKey{summary, m.name + "." + k}] = strconv.Itoa(n)
		}
	}
	for _, h := range r.Summary.WorstHosts {
		f[factKey{w.clientLabel(h.ClientIP), "summary.worst_hosts"}] = fmt.Sprintf(
			"failures %d, state %s, diagnosis %q, client_user %q",
			h.Failures, h.State, h.Diagnosis, h.ClientUser)
	}
	for _, g := range r.Summary.FailingTargets {
		f[factKey{"target " + g.Host, "summary.failing_targets.failures"}] = strconv.Itoa(g.Failures)
	}

	for _, c := range r.Clients {
		who := w.clientLabel(c.ClientIP)
		var diagnoses []string
		for _, d := range c.Diagnoses {
			diagnoses = append(diagnoses, d.Name)
		}
		for field, v := range map[string]string{
			"row":                "present",
			"client_user":        c.ClientUser,
			"users":              strings.Join(c.Users, ","),
			"host_name":          c.HostName,
			"last_tetra_ok":      setTime(c.LastTetraOK),
			"tetra_attempts":     strconv.Itoa(c.TetraAttempts),
			"tetra_failures":     strconv.Itoa(c.TetraFailures),
			"failures":           strconv.Itoa(c.Failures),
			"failing_since":      setTime(c.FailingSince),
			"state":              c.State,
			"diagnosis":          c.Diagnosis,
			"diagnoses":          strings.Join(diagnoses, ","),
			"expected_lasterror": strconv.FormatUint(uint64(c.ExpectedLastError), 10),
			"lasterror_basis":    c.LastErrorBasis,
		} {
			f[factKey{who, field}] = v
		}
		for o, n := range c.Counts {
			f[factKey{who, "counts." + o}] = strconv.Itoa(n)
		}
	}
	return f
}

// absent is the value of a fact a report does not hold.
const absent = "(absent)"

// logGap is a difference between the report from a Squid log and the one
// from serve for the same traffic: something the log cannot tell, or the
// mark of a policy only the test's Squid has.
type logGap struct {
	logs       []string // the logs it shows in
	who, field string
	log, serve string // the value in each report
	why        string
}

// Why the reports differ.
const (
	whyPolicy = "only the test's Squid refuses this domain; serve lets the tunnel through, " +
		"to a host of no endpoint class, and stores no event of such traffic"
	whyUser = "Squid refuses the port before it authenticates and logs no user; serve " +
		"names the user of the Proxy-Authorization header even on a request it refuses"
	whyTunnel = "a log sees nothing inside a tunnel: the client that rejected the " +
		"certificate left a short TCP_TUNNEL/200, which reads as a success; serve saw the " +
		"handshake fail (tls_aborted) with no revocation request from the client " +
		"(revocation_outside), so it expects 4294965187 where the log expects 0"
	whySquid5 = "Squid 5 answers a CONNECT to a name that does not resolve with " +
		"ERR_CANNOT_FORWARD, so even with %err_code the log says unreachable where serve " +
		"says dns_failure, and the diagnosis is connect_blocked where serve says dns"
	whyErrCode = "without %err_code the log cannot tell a refused connect from a DNS " +
		"failure: unreachable where serve says connect_refused"
	whyBoth = "both the unresolvable name (" + whySquid5 + ") and the refused port (" +
		whyErrCode + ")"
)

// logGaps lists every difference the reports may show, with its reason.
// The summary's differences are those of the clients' rows, added up.
// summary.failures happens to be equal: the denied domain adds a failure to
// the log's report, the rejected certificate one to serve's.
func (w *squidWorld) logGaps() []logGap {
	both := []string{logNative, logCustom}
	native := []string{logNative}
	custom := []string{logCustom}
	const sum = "summary"
	domain := w.caseClient("denied_domain")
	port := w.caseClient("denied_port")
	rejected := w.caseClient("rejected_certificate")
	unresolvable := w.caseClient("unresolvable")
	refused := w.caseClient("refused_port")
	const worst = "summary.worst_hosts"

	return []logGap{
		{both, domain, "row", "present", absent, whyPolicy},
		{both, sum, "events", "12", "11", whyPolicy},
		{both, sum, "clients.seen", "11", "10", whyPolicy},
		{both, sum, "clients.unknown", "3", "2", whyPolicy},
		{both, sum, "failures_by_outcome.denied", "2", "1", whyPolicy},
		{both, sum, "failures_by_diagnosis.none", "5", "4", whyPolicy},
		{both, "target " + deniedDomain, "summary.failing_targets.failures", "1", absent, whyPolicy},

		{both, port, "client_user", "", squidUser, whyUser},
		{both, port, "users", "", squidUser, whyUser},
		{both, port, worst, `failures 1, state failing, diagnosis "", client_user ""`,
			`failures 1, state failing, diagnosis "", client_user "alice"`, whyUser},

		{both, rejected, "counts.ok", "1", "0", whyTunnel},
		{both, rejected, "counts.tls_aborted", "0", "1", whyTunnel},
		{both, rejected, "last_tetra_ok", "set", "none", whyTunnel},
		{both, rejected, "tetra_failures", "0", "1", whyTunnel},
		{both, rejected, "failures", "0", "1", whyTunnel},
		{both, rejected, "failing_since", "none", "set", whyTunnel},
		{both, rejected, "state", "healthy", "failing", whyTunnel},
		{both, rejected, "diagnosis", "", "revocation_outside", whyTunnel},
		{both, rejected, "diagnoses", "", "revocation_outside", whyTunnel},
		{both, rejected, "expected_lasterror", "0", "4294965187", whyTunnel},
		{both, rejected, worst, absent,
			`failures 1, state failing, diagnosis "revocation_outside", client_user "alice"`,
			whyTunnel},
		{both, sum, "clients.healthy", "3", "2", whyTunnel},
		{both, sum, "clients.failing", "5", "6", whyTunnel},
		{both, sum, "failures_by_outcome.tls_aborted", "0", "1", whyTunnel},
		{both, sum, "failures_by_diagnosis.revocation_outside", absent, "1", whyTunnel},
		{both, sum, "clients_by_diagnosis.revocation_outside", absent, "1", whyTunnel},
		{both, "target " + hostTetra, "summary.failing_targets.failures", "3", "4", whyTunnel},

		{both, unresolvable, "counts.unreachable", "1", "0", whySquid5},
		{both, unresolvable, "counts.dns_failure", "0", "1", whySquid5},
		{both, unresolvable, "diagnosis", "connect_blocked", "dns", whySquid5},
		{both, unresolvable, "diagnoses", "connect_blocked", "dns", whySquid5},
		{both, unresolvable, worst,
			`failures 1, state failing, diagnosis "connect_blocked", client_user "alice"`,
			`failures 1, state failing, diagnosis "dns", client_user "alice"`, whySquid5},
		{both, sum, "failures_by_outcome.dns_failure", "0", "1", whySquid5},
		{both, sum, "failures_by_diagnosis.dns", absent, "1", whySquid5},
		{both, sum, "failures_by_diagnosis.connect_blocked", "2", "1", whySquid5},
		{both, sum, "clients_by_diagnosis.dns", absent, "1", whySquid5},
		{both, sum, "clients_by_diagnosis.connect_blocked", "2", "1", whySquid5},
		{custom, sum, "failures_by_outcome.unreachable", "1", "0", whySquid5},

		{native, refused, "counts.unreachable", "1", "0", whyErrCode},
		{native, refused, "counts.connect_refused", "0", "1", whyErrCode},
		{native, sum, "failures_by_outcome.connect_refused", "0", "1", whyErrCode},
		{native, sum, "failures_by_outcome.unreachable", "2", "0", whyBoth},
	}
}

// compareReports compares the report from the log called name with the
// report from serve, fact by fact, against the listed gaps.
func (w *squidWorld) compareReports(t *testing.T, name string, fromLog madeReport) {
	// The comparison means something only when the log's report holds a
	// row for every client, and serve's for every client whose traffic
	// serve stores.
	for _, c := range w.cases {
		row := factKey{w.clientLabel(c.client), "row"}
		if _, ok := fromLog.facts[row]; !ok {
			t.Errorf("the %s log's report has no row for %s", name, row.who)
		}
		if _, ok := w.serve.report.facts[row]; !ok && c.serve != "" {
			t.Errorf("serve's report has no row for %s", row.who)
		}
	}

	gaps := map[factKey]logGap{}
	for _, g := range w.logGaps() {
		if slices.Contains(g.logs, name) {
			gaps[factKey{g.who, g.field}] = g
		}
	}
	value := func(f reportFacts, k factKey) string {
		if v, ok := f[k]; ok {
			return v
		}
		return absent
	}
	// A client seen by one side only is one difference, its row.
	oneSided := map[string]bool{}
	union := map[factKey]bool{}
	for _, f := range []reportFacts{fromLog.facts, w.serve.report.facts} {
		for k := range f {
			union[k] = true
			if k.field == "row" && value(fromLog.facts, k) != value(w.serve.report.facts, k) {
				oneSided[k.who] = true
			}
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(union), compareFactKeys) {
		if oneSided[k.who] && k.field != "row" {
			continue
		}
		l, s := value(fromLog.facts, k), value(w.serve.report.facts, k)
		g, listed := gaps[k]
		delete(gaps, k)
		switch {
		case l == s && !listed:
		case l == s:
			t.Errorf("%s: %s: both reports say %q; the listed difference (%s log %q, serve %q) "+
				"no longer occurs", k.who, k.field, l, name, g.log, g.serve)
		case !listed:
			t.Errorf("%s: %s: the %s log's report says %q, serve's %q; not a listed difference",
				k.who, k.field, name, l, s)
		case l != g.log || s != g.serve:
			t.Errorf("%s: %s: the %s log's report says %q, serve's %q; listed as %q and %q (%s)",
				k.who, k.field, name, l, s, g.log, g.serve, g.why)
		default:
			t.Logf("%s: %s: %s log %q, serve %q: %s", k.who, k.field, name, l, s, g.why)
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(gaps), compareFactKeys) {
		g := gaps[k]
		t.Errorf("%s: %s: listed difference (%s log %q, serve %q) is in neither report",
			k.who, k.field, name, g.log, g.serve)
	}

	if t.Failed() {
		if dir, err := keepArtifacts(artifactsDir, t.Name(), fromLog.path,
			w.serve.report.path); err == nil {
			t.Logf("both reports kept in e2e/%s", dir)
		}
	}
}
