package inspect

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect/tlsrec"
)

// t0 is the fake clock's origin; every time in these tests is an offset
// from it.
var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

const (
	sensorA = "edge1"
	ipA     = "10.0.0.5"
	ipB     = "10.0.0.6"

	issuerCisco = "CN=HydrantID Server CA O1,O=IdenTrust,C=US"
	issuerCorp  = "CN=Corp Inspection CA,O=Corp Ltd,C=DE"
)

type opt func(*Event)

func from(ip string) opt { return func(e *Event) { e.ClientIP = ip } }
func dur(d time.Duration) opt {
	return func(e *Event) { e.DurationMS = float64(d.Milliseconds()) }
}
func user(u string) opt       { return func(e *Event) { e.ClientUser = u } }
func down(n int64) opt        { return func(e *Event) { e.BytesDown = n } }
func closed(c Close) opt      { return func(e *Event) { e.Close = c } }
func alert(a string) opt      { return func(e *Event) { e.TLSAlert = a } }
func host(h string) opt       { return func(e *Event) { e.Host = h } }
func tlsVersion(v string) opt { return func(e *Event) { e.TLSVersion = v } }
func issuedBy(dn string) opt {
	return func(e *Event) { e.TLSIssuer, e.TLSVersion = dn, "TLS 1.2" }
}
func status(code int) opt      { return func(e *Event) { e.Status = code } }
func upstreamStatus(c int) opt { return func(e *Event) { e.UpstreamStatus = c } }

// ev builds a finished event starting off after t0, lasting 200 ms unless
// told otherwise, from client ipA of sensor sensorA.
func ev(id int64, off time.Duration, p Endpoint, o Outcome, opts ...opt) Event {
	e := Event{ID: id, Time: t0.Add(off), DurationMS: 200, Source: SourceProxy,
		Sensor: sensorA, ClientIP: ipA, Endpoint: p, Outcome: o}
	switch p {
	case EndpointTetra:
		e.Method, e.Host, e.Port = "CONNECT", "tetra-defs.amp.cisco.com", 443
	case EndpointRevocation:
		e.Method, e.Host, e.Port = "GET", "crl.identrust.com", 80
		e.URL = "http://crl.identrust.com/DSTROOTCAX3CRL.crl"
	case EndpointAMP:
		e.Method, e.Host, e.Port = "CONNECT", "intake.amp.cisco.com", 443
	default:
		e.Method, e.Host, e.Port = "CONNECT", "www.example.com", 443
	}
	switch o {
	case OK:
		e.Status, e.UpstreamStatus, e.Close = 200, 200, ClientFIN
		if p == EndpointTetra {
			e.TLSVersion, e.BytesDown = "TLS 1.3", 3<<20
		}
	case AuthRequired, AuthFailed:
		e.Status, e.DurationMS = 407, 2
	case DNSFailure, ConnectRefused, UpstreamUnreachable, UpstreamRefused:
		e.Status = 502
	case ConnectTimeout:
		e.Status = 504
	case DownloadAborted:
		e.Status, e.Close, e.TLSVersion = 200, ServerRST, "TLS 1.3"
	}
	for _, f := range opts {
		f(&e)
	}
	return e
}

// okTetra is a definition download that worked.
func okTetra(id int64, off time.Duration, opts ...opt) Event {
	return ev(id, off, EndpointTetra, OK, opts...)
}

// abandoned is a tetra tunnel the client closed right after the server's
// TLS 1.2 certificate flight, the mark of a failed certificate check.
func abandoned(id int64, off time.Duration, opts ...opt) Event {
	base := []opt{status(200), closed(ClientFIN), tlsVersion("TLS 1.2"), down(4200),
		dur(2 * time.Second)}
	return ev(id, off, EndpointTetra, TLSAborted, append(base, opts...)...)
}

// revFail is a revocation fetch that failed with outcome o.
func revFail(id int64, off time.Duration, o Outcome, opts ...opt) Event {
	return ev(id, off, EndpointRevocation, o, opts...)
}

// feed adds the events to a new Clients with the default correlation and
// judges it at t0+now, after telling it the time.
func feed(t *testing.T, events []Event, now time.Duration) *Clients {
	t.Helper()
	cs := NewClients(Correlation{})
	for _, e := range events {
		cs.Add(e)
	}
	cs.Tick(t0.Add(now))
	return cs
}

func names(ds []Diagnosis) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.Name)
	}
	return out
}

type judged struct {
	state     ClientState
	diagnoses []string
	evidence  map[string][]int64 // per diagnosis, when checked
	code      LastError
	basis     Basis
	attempts  int // checked when >= 0
	failures  int
	advice    string // a substring of the main diagnosis' advice, when set
}

func (w judged) check(t *testing.T, c Client) {
	t.Helper()
	if c.State != w.state {
		t.Errorf("state = %s, want %s", c.State, w.state)
	}
	want := w.diagnoses
	if want == nil {
		want = []string{}
	}
	if got := names(c.Diagnoses); !slices.Equal(got, want) {
		t.Errorf("diagnoses = %v, want %v", got, want)
	}
	if len(want) > 0 && c.Diagnosis != want[0] || len(want) == 0 && c.Diagnosis != "" {
		t.Errorf("main diagnosis = %q, want the first of %v", c.Diagnosis, want)
	}
	for name, ids := range w.evidence {
		for _, d := range c.Diagnoses {
			if d.Name == name && !slices.Equal(d.Evidence, ids) {
				t.Errorf("%s evidence = %v, want %v", name, d.Evidence, ids)
			}
		}
	}
	if c.ExpectedLastError != w.code || c.LastErrorBasis != w.basis {
		t.Errorf("lasterror = %d %s (%s), want %d %s", c.ExpectedLastError, c.LastErrorBasis,
			c.LastErrorReason, w.code, w.basis)
	}
	if c.LastErrorReason == "" {
		t.Error("no lasterror reason")
	}
	if w.attempts >= 0 && (c.TetraAttempts != w.attempts || c.TetraFailures != w.failures) {
		t.Errorf("attempts/failures = %d/%d, want %d/%d", c.TetraAttempts, c.TetraFailures,
			w.attempts, w.failures)
	}
	if w.advice != "" &&
		(len(c.Diagnoses) == 0 || !strings.Contains(c.Diagnoses[0].Advice, w.advice)) {
		t.Errorf("advice %v lacks %q", c.Diagnoses, w.advice)
	}
	for _, d := range c.Diagnoses {
		if d.Advice == "" || len(d.Evidence) == 0 {
			t.Errorf("%s: advice %q, evidence %v", d.Name, d.Advice, d.Evidence)
		}
	}
}

func TestDiagnoses(t *testing.T) {
	const (
		documented = Documented
		inferred   = Inferred
	)
	cases := []struct {
		name   string
		events []Event
		now    time.Duration
		client string // ipA when empty
		want   judged
	}{
		{
			name:   "proxy_auth: credentials rejected",
			events: []Event{ev(1, 0, EndpointTetra, AuthFailed, user("CORP\\svc"))},
			now:    5 * time.Minute,
			want: judged{state: StateFailing, diagnoses: []string{DiagnosisProxyAuth},
				evidence: map[string][]int64{DiagnosisProxyAuth: {1}},
				code:     LastErrorProxyAuth, basis: documented, attempts: 1, failures: 1},
		},
		{
			name:   "proxy_auth: challenge never answered",
			events: []Event{ev(1, 0, EndpointTetra, AuthRequired)},
			now:    2 * time.Minute,
			want: judged{state: StateFailing, diagnoses: []string{DiagnosisProxyAuth},
				code: LastErrorProxyAuth, basis: documented, attempts: 1, failures: 1},
		},
		{
			name: "proxy_auth: only the revocation fetch is challenged",
			events: []Event{
				ev(1, 0, EndpointTetra, AuthRequired),
				abandoned(2, 10*time.Millisecond, user("alice"), dur(3*time.Second)),
				revFail(3, 500*time.Millisecond, AuthRequired),
			},
			now: 5 * time.Minute,
			want: judged{state: StateFailing,
				diagnoses: []string{DiagnosisProxyAuth, DiagnosisRevocationBlocked},
				evidence: map[string][]int64{DiagnosisProxyAuth: {3},
					DiagnosisRevocationBlocked: {2, 3}},
				code: LastErrorDownloadFailed, basis: inferred, attempts: 1, failures: 1},
		},
		{
			name:   "upstream_proxy: upstream unreachable for the download",
			events: []Event{ev(1, 0, EndpointTetra, UpstreamUnreachable)},
			now:    time.Minute,
			want: judged{state: StateFailing, diagnoses: []string{DiagnosisUpstreamProxy},
				code: LastErrorDownloadFailed, basis: documented, attempts: 1, failures: 1,
				advice: "one hop further"},
		},
		{
			name: "upstream_proxy: upstream refuses the revocation fetch",
			events: []Event{
				abandoned(2, 0),
				revFail(1, 500*time.Millisecond, UpstreamRefused, upstreamStatus(403)),
			},
			now: time.Minute,
			want: judged{state: StateFailing,
				diagnoses: []string{DiagnosisUpstreamProxy, DiagnosisRevocationBlocked},
				evidence: map[string][]int64{DiagnosisUpstreamProxy: {1},
					DiagnosisRevocationBlocked: {1, 2}},
				code: LastErrorDownloadFailed, basis: inferred, attempts: 1, failures: 1},
		},
		{
			name: "dns: definition host does not resolve",
			events: []Event{ev(1, 0, EndpointTetra, DNSFailure),
				ev(2, time.Minute, EndpointTetra, DNSFailure)},
			now: 2 * time.Minute,
			want: judged{state: StateFailing, diagnoses: []string{DiagnosisDNS},
				evidence: map[string][]int64{DiagnosisDNS: {1, 2}},
				code:     LastErrorDownloadFailed, basis: documented, attempts: 2, failures: 2},
		},
		{
			name: "revocation_blocked: fetch refused, then the tunnel abandoned",
			events: []Event{
				abandoned(1, 0),
				revFail(2, 500*time.Millisecond, HTTPError, upstreamStatus(403)),
			},
			now: time.Minute,
			want: judged{state: StateFailing, diagnoses: []string{DiagnosisRevocationBlocked},
				evidence: map[string][]int64{DiagnosisRevocationBlocked: {1, 2}},
				code:     LastErrorDownloadFailed, basis: inferred, attempts: 1, failures: 1},
		},
		{
			name: "revocation_blocked: OCSP by form times out, abort within the window",
			events: []Event{
				revFail(1, 0, ConnectTimeout, host("ocsp.some-ca.test"), dur(10*time.Second)),
				abandoned(2, 5*time.Second, dur(20*time.Second), closed(ClientRST),
					tlsVersion("TLS 1.3"), alert("")),
			},
			now: time.Minute,
			want: judged{state: StateFailing,
				diagnoses: []string{DiagnosisRevocationBlocked, DiagnosisConnectBlocked},
				evidence:  map[string][]int64{DiagnosisRevocationBlocked: {1, 2}},
				code:      LastErrorDownloadFailed, basis: inferred, attempts: 1, failures: 1},
		},
		{
			name:   "revocation_outside: abandoned with no revocation request at all",
			events: []Event{abandoned(1, 0), abandoned(2, time.Hour)},
			now:    time.Hour + time.Minute,
			want: judged{state: StateFailing, diagnoses: []string{DiagnosisRevocationOutside},
				evidence: map[string][]int64{DiagnosisRevocationOutside: {1, 2}},
				code:     LastErrorDownloadFailed, basis: inferred, attempts: 2, failures: 2},
		},
		{
			name: "tls_interception: unexpected issuer, client rejects it",
			events: []Event{abandoned(1, 0, issuedBy(issuerCorp), alert("unknown_ca"),
				closed(ClientRST))},
			now: time.Minute,
			want: judged{state: StateFailing, diagnoses: []string{DiagnosisTLSInterception},
				evidence: map[string][]int64{DiagnosisTLSInterception: {1}},
				code:     LastErrorDownloadFailed, basis: documented, attempts: 1, failures: 1,
				advice: "Corp Inspection CA"},
		},
		{
			name:   "tls_interception: re-signed but trusted, download works",
			events: []Event{okTetra(1, 0, issuedBy(issuerCorp))},
			now:    time.Minute,
			want: judged{state: StateHealthy, diagnoses: []string{DiagnosisTLSInterception},
				code: LastErrorNone, basis: inferred, attempts: 1, failures: 0},
		},
		{
			name: "tls_interception: gone once the expected issuer is back",
			events: []Event{okTetra(1, 0, issuedBy(issuerCorp)),
				okTetra(2, 10*time.Minute, issuedBy(issuerCisco))},
			now:  20 * time.Minute,
			want: judged{state: StateHealthy, code: LastErrorNone, basis: inferred, attempts: 2},
		},
		{
			name:   "expected issuer with an abort is not interception",
			events: []Event{abandoned(1, 0, issuedBy(issuerCisco))},
			now:    time.Minute,
			want: judged{state: StateFailing, diagnoses: []string{DiagnosisRevocationOutside},
				code: LastErrorDownloadFailed, basis: inferred, attempts: 1, failures: 1},
		},
		{
			name:   "connect_blocked: connect to the definition host times out",
			events: []Event{ev(1, 0, EndpointTetra, ConnectTimeout)},
			now:    time.Minute,
			want: judged{state: StateFailing, diagnoses: []string{DiagnosisConnectBlocked},
				code: LastErrorDownloadFailed, basis: documented, attempts: 1, failures: 1},
		},
		{
			name: "connect_blocked: squid cannot tell dns from tcp",
			events: []Event{ev(1, 0, EndpointTetra, Unreachable, func(e *Event) {
				e.Source = SourceSquidLog
			})},
			now: time.Minute,
			want: judged{state: StateFailing, diagnoses: []string{DiagnosisConnectBlocked},
				code: LastErrorDownloadFailed, basis: documented, attempts: 1, failures: 1},
		},
		{
			name: "interrupted_download: three aborts, median bytes",
			events: []Event{
				ev(1, 0, EndpointTetra, DownloadAborted, down(1_000_000)),
				ev(2, 10*time.Minute, EndpointTetra, DownloadAborted, down(3_000_000),
					closed(IdleTimeout)),
				ev(3, 20*time.Minute, EndpointTetra, DownloadAborted, down(2_000_000)),
			},
			now: 30 * time.Minute,
			want: judged{state: StateFailing, diagnoses: []string{DiagnosisInterruptedDownload},
				evidence: map[string][]int64{DiagnosisInterruptedDownload: {1, 2, 3}},
				code:     LastErrorDownloadFailed, basis: documented, attempts: 3, failures: 3,
				advice: "2000000 bytes (1.9 MiB)"},
		},
		{
			name:   "silent: no attempt within twice the update interval",
			events: []Event{okTetra(1, 0), ev(2, time.Hour, EndpointAMP, OK)},
			now:    2*time.Hour + time.Second,
			want: judged{state: StateSilent, diagnoses: []string{DiagnosisSilent},
				evidence: map[string][]int64{DiagnosisSilent: {1}},
				code:     LastErrorProxyConnect, basis: inferred, attempts: 0},
		},
		{
			name:   "failing without a diagnosis: denied by policy",
			events: []Event{ev(1, 0, EndpointTetra, Denied, status(403))},
			now:    time.Minute,
			want: judged{state: StateFailing, code: LastErrorDownloadFailed, basis: documented,
				attempts: 1, failures: 1},
		},
		{
			name: "priority: proxy_auth before dns and connect_blocked",
			events: []Event{
				ev(1, 0, EndpointTetra, ConnectRefused),
				ev(2, time.Minute, EndpointTetra, DNSFailure),
				ev(3, 2*time.Minute, EndpointTetra, AuthFailed),
			},
			now: 3 * time.Minute,
			want: judged{state: StateFailing,
				diagnoses: []string{DiagnosisProxyAuth, DiagnosisDNS, DiagnosisConnectBlocked},
				code:      LastErrorProxyAuth, basis: documented, attempts: 3, failures: 3},
		},

		// The cases that must not raise an alarm.
		{
			name: "no alarm: Basic challenge then success",
			events: []Event{ev(1, 0, EndpointTetra, AuthRequired),
				okTetra(2, 50*time.Millisecond, user("alice"))},
			now:  5 * time.Minute,
			want: judged{state: StateHealthy, code: LastErrorNone, basis: inferred, attempts: 1},
		},
		{
			name: "no alarm: NTLM two challenges then success",
			events: []Event{
				ev(1, 0, EndpointTetra, AuthRequired),
				ev(2, 20*time.Millisecond, EndpointTetra, AuthRequired, user("CORP\\svc")),
				okTetra(3, 40*time.Millisecond, user("CORP\\svc")),
			},
			now:  5 * time.Minute,
			want: judged{state: StateHealthy, code: LastErrorNone, basis: inferred, attempts: 1},
		},
		{
			name: "no alarm: NTLM second 407 logged as a failure, then success",
			events: []Event{
				ev(1, 0, EndpointTetra, AuthRequired),
				ev(2, 20*time.Millisecond, EndpointTetra, AuthFailed, user("CORP\\svc")),
				okTetra(3, 40*time.Millisecond, user("CORP\\svc")),
			},
			now:  5 * time.Minute,
			want: judged{state: StateHealthy, code: LastErrorNone, basis: inferred, attempts: 1},
		},
		{
			name:   "no alarm: challenge within the auth window is pending",
			events: []Event{ev(1, 0, EndpointTetra, AuthRequired)},
			now:    30 * time.Second,
			want:   judged{state: StateUnknown, code: LastErrorNone, basis: inferred},
		},
		{
			name:   "no alarm: client not due yet",
			events: []Event{okTetra(1, 0)},
			now:    2*time.Hour - time.Second,
			want: judged{state: StateHealthy, code: LastErrorNone, basis: inferred,
				attempts: 1},
		},
		{
			name:   "no alarm: new client with only cloud traffic",
			events: []Event{ev(1, 0, EndpointAMP, OK), ev(2, time.Hour, EndpointAMP, OK)},
			now:    time.Hour + time.Minute,
			want:   judged{state: StateUnknown, code: LastErrorNone, basis: inferred},
		},
		{
			name: "no alarm for this client: revocation failure of another client",
			events: []Event{
				abandoned(1, 0),
				revFail(2, 500*time.Millisecond, HTTPError, from(ipB)),
			},
			now:    time.Minute,
			client: ipB,
			want:   judged{state: StateUnknown, code: LastErrorNone, basis: inferred},
		},
		{
			name: "no revocation_blocked from another client's revocation failure",
			events: []Event{
				abandoned(1, 0),
				revFail(2, 500*time.Millisecond, HTTPError, from(ipB)),
			},
			now: time.Minute,
			want: judged{state: StateFailing, diagnoses: []string{DiagnosisRevocationOutside},
				code: LastErrorDownloadFailed, basis: inferred, attempts: 1, failures: 1},
		},
		{
			name: "no revocation_blocked: failure outside the revocation window",
			events: []Event{
				revFail(1, 0, HTTPError),
				abandoned(2, 5*time.Minute),
			},
			now: 6 * time.Minute,
			want: judged{state: StateFailing, code: LastErrorDownloadFailed, basis: documented,
				attempts: 1, failures: 1},
		},
		{
			name: "no alarm: revocation failure, then a successful tunnel",
			events: []Event{
				okTetra(1, 0, dur(3*time.Second)),
				revFail(2, 500*time.Millisecond, HTTPError),
				revFail(3, time.Second, ConnectRefused, host("ocsp.identrust.com")),
			},
			now:  time.Minute,
			want: judged{state: StateHealthy, code: LastErrorNone, basis: inferred, attempts: 1},
		},
		{
			name: "no alarm: revocation failure for an unrelated host",
			events: []Event{
				okTetra(1, 0),
				revFail(2, 10*time.Minute, ConnectRefused, host("crl.other-ca.test")),
				revFail(3, 11*time.Minute, AuthRequired, host("ocsp.other-ca.test")),
				revFail(4, 12*time.Minute, DNSFailure, host("crl.gone.test")),
			},
			now:  20 * time.Minute,
			want: judged{state: StateHealthy, code: LastErrorNone, basis: inferred, attempts: 1},
		},
		{
			name: "no alarm: aborts followed by a success",
			events: []Event{
				ev(1, 0, EndpointTetra, DownloadAborted),
				ev(2, time.Minute, EndpointTetra, DownloadAborted),
				ev(3, 2*time.Minute, EndpointTetra, DownloadAborted),
				okTetra(4, 3*time.Minute),
			},
			now: 4 * time.Minute,
			want: judged{state: StateHealthy, code: LastErrorNone, basis: inferred,
				attempts: 4, failures: 3},
		},
		{
			name: "no interrupted_download from two aborts",
			events: []Event{ev(1, 0, EndpointTetra, DownloadAborted),
				ev(2, time.Minute, EndpointTetra, DownloadAborted)},
			now: 2 * time.Minute,
			want: judged{state: StateFailing, code: LastErrorDownloadFailed, basis: documented,
				attempts: 2, failures: 2},
		},
		{
			name:   "no rejection: server ends the negotiation with an alert",
			events: []Event{abandoned(1, 0, alert("handshake_failure"))},
			now:    time.Minute,
			want: judged{state: StateFailing, code: LastErrorDownloadFailed, basis: documented,
				attempts: 1, failures: 1},
		},
		{
			name:   "no alarm: events of other traffic are not clients",
			events: []Event{ev(1, 0, EndpointOther, ConnectRefused), ev(2, 0, EndpointOther, OK)},
			now:    3 * time.Hour,
			client: "none",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			now := t0.Add(tc.now)
			ip := cmpOr(tc.client, ipA)
			cs := feed(t, tc.events, tc.now)
			got, ok := cs.Get(sensorA, ip, now)
			if tc.client == "none" {
				if ok || cs.Len() != 0 {
					t.Fatalf("client kept for other traffic: %+v", got)
				}
				return
			}
			if !ok {
				t.Fatalf("client %s not found", ip)
			}
			tc.want.check(t, got)

			// A Clients judging the same events fresh, without the result
			// kept since the last Tick, must agree.
			fresh := NewClients(Correlation{})
			for _, e := range tc.events {
				fresh.Add(e)
			}
			again, _ := fresh.Get(sensorA, ip, now)
			if !sameHealth(got, again) {
				t.Errorf("kept and fresh judgement differ:\n%+v\n%+v", got, again)
			}
		})
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// sameHealth compares what Clients derives, ignoring nothing that a viewer
// sees.
func sameHealth(a, b Client) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// TestStateTransitions drives one client through its states with Add and
// Tick, checking at each step the state and whether Add or Tick reported
// a change.
func TestStateTransitions(t *testing.T) {
	type step struct {
		add     *Event        // added when set; otherwise Tick(t0+tick)
		tick    time.Duration // for Tick steps
		state   ClientState
		changed bool   // Add's flag, or Tick returning the client
		diag    string // the main diagnosis after the step
	}
	add := func(e Event) *Event { return &e }
	cases := []struct {
		name  string
		steps []step
	}{
		{"unknown to healthy", []step{
			{add: add(ev(1, 0, EndpointAMP, OK)), state: StateUnknown, changed: true},
			{add: add(ev(2, time.Minute, EndpointAMP, OK)), state: StateUnknown, changed: false},
			{add: add(okTetra(3, 5*time.Minute)), state: StateHealthy, changed: true},
		}},
		{"unknown to failing", []step{
			{add: add(ev(1, 0, EndpointAMP, OK)), state: StateUnknown, changed: true},
			{add: add(ev(2, time.Minute, EndpointTetra, ConnectRefused)), state: StateFailing,
				changed: true, diag: DiagnosisConnectBlocked},
		}},
		{"failing to healthy", []step{
			{add: add(abandoned(1, 0)), state: StateFailing, changed: true,
				diag: DiagnosisRevocationOutside},
			{add: add(okTetra(2, time.Hour)), state: StateHealthy, changed: true},
		}},
		{"healthy to failing as the success leaves the window", []step{
			{add: add(okTetra(1, 0)), state: StateHealthy, changed: true},
			{add: add(ev(2, time.Hour, EndpointTetra, DownloadAborted)), state: StateHealthy,
				changed: true},
			{add: add(ev(3, 90*time.Minute, EndpointTetra, DownloadAborted)),
				state: StateHealthy, changed: true},
			{tick: 2 * time.Hour, state: StateHealthy, changed: false},
			{tick: 2*time.Hour + time.Second, state: StateFailing, changed: true},
		}},
		{"healthy to silent", []step{
			{add: add(okTetra(1, 0)), state: StateHealthy, changed: true},
			{tick: time.Hour, state: StateHealthy, changed: false},
			{tick: 2*time.Hour + 100*time.Millisecond, state: StateHealthy, changed: false},
			{tick: 2*time.Hour + 200*time.Millisecond, state: StateSilent, changed: true,
				diag: DiagnosisSilent},
			{tick: 5 * time.Hour, state: StateSilent, changed: false, diag: DiagnosisSilent},
		}},
		{"unknown to silent", []step{
			{add: add(ev(1, 0, EndpointAMP, OK)), state: StateUnknown, changed: true},
			{tick: 2*time.Hour - time.Millisecond, state: StateUnknown, changed: false},
			{tick: 2 * time.Hour, state: StateSilent, changed: true, diag: DiagnosisSilent},
		}},
		{"silent to healthy", []step{
			{add: add(okTetra(1, 0)), state: StateHealthy, changed: true},
			{tick: 3 * time.Hour, state: StateSilent, changed: true, diag: DiagnosisSilent},
			{add: add(okTetra(2, 3*time.Hour+time.Minute)), state: StateHealthy, changed: true},
		}},
		{"failing to silent", []step{
			{add: add(ev(1, 0, EndpointTetra, DNSFailure)), state: StateFailing, changed: true,
				diag: DiagnosisDNS},
			{tick: 2*time.Hour + time.Second, state: StateSilent, changed: true,
				diag: DiagnosisSilent},
		}},
		{"pending challenge to proxy_auth", []step{
			{add: add(ev(1, 0, EndpointTetra, AuthRequired)), state: StateUnknown, changed: true},
			{tick: 30 * time.Second, state: StateUnknown, changed: false},
			{tick: 60 * time.Second, state: StateUnknown, changed: false},
			{tick: 61 * time.Second, state: StateFailing, changed: true,
				diag: DiagnosisProxyAuth},
		}},
		{"pending challenge answered in time", []step{
			{add: add(ev(1, 0, EndpointTetra, AuthRequired)), state: StateUnknown, changed: true},
			{add: add(okTetra(2, 20*time.Second, user("alice"))), state: StateHealthy,
				changed: true},
			{tick: 2 * time.Minute, state: StateHealthy, changed: false},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cs := NewClients(Correlation{})
			for i, s := range tc.steps {
				var (
					c       Client
					changed bool
					last    time.Time
				)
				if s.add != nil {
					c, changed = cs.Add(*s.add)
					last = c.LastSeen
				} else {
					last = t0.Add(s.tick)
					out := cs.Tick(last)
					if len(out) > 1 {
						t.Fatalf("step %d: Tick returned %d clients", i, len(out))
					}
					if changed = len(out) == 1; changed {
						c = out[0]
					} else {
						c, _ = cs.Get(sensorA, ipA, last)
					}
				}
				if c.State != s.state || changed != s.changed || c.Diagnosis != s.diag {
					t.Fatalf("step %d: state %s changed %v diagnosis %q; want %s %v %q",
						i, c.State, changed, c.Diagnosis, s.state, s.changed, s.diag)
				}
				if g, _ := cs.Get(sensorA, ipA, last); g.State != c.State {
					t.Fatalf("step %d: Get says %s, step says %s", i, g.State, c.State)
				}
			}
		})
	}
}

func TestTickReportsOnlyChangedClients(t *testing.T) {
	cs := NewClients(Correlation{UpdateInterval: 30 * time.Minute})
	for i := range 10 {
		ip := fmt.Sprintf("10.1.0.%d", i)
		cs.Add(okTetra(int64(i+1), time.Duration(i)*time.Minute, from(ip)))
	}
	if out := cs.Tick(t0.Add(59 * time.Minute)); len(out) != 0 {
		t.Fatalf("early Tick reported %d clients", len(out))
	}
	out := cs.Tick(t0.Add(63*time.Minute + time.Second))
	var ips []string
	for _, c := range out {
		if c.State != StateSilent {
			t.Errorf("%s: %s", c.ClientIP, c.State)
		}
		ips = append(ips, c.ClientIP)
	}
	if want := []string{"10.1.0.0", "10.1.0.1", "10.1.0.2", "10.1.0.3"}; !slices.Equal(ips, want) {
		t.Fatalf("Tick reported %v, want %v", ips, want)
	}
	if out := cs.Tick(t0.Add(63*time.Minute + time.Second)); len(out) != 0 {
		t.Fatalf("repeated Tick reported %d clients", len(out))
	}
	// A Tick earlier than the last one changes nothing.
	if out := cs.Tick(t0); len(out) != 0 {
		t.Fatalf("Tick back in time reported %d clients", len(out))
	}
}

func TestListOrderAndKeys(t *testing.T) {
	cs := NewClients(Correlation{})
	cs.Add(okTetra(1, 0, from("10.0.0.10")))
	cs.Add(ev(2, 0, EndpointTetra, DNSFailure, from("10.0.0.9")))
	cs.Add(ev(3, 0, EndpointAMP, OK, from("10.0.0.2")))
	cs.Add(ev(4, 0, EndpointTetra, DNSFailure, from("10.0.0.10"), func(e *Event) {
		e.Sensor = "edge0"
	}))
	cs.Add(okTetra(5, 0, from("10.0.0.1")))
	cs.Add(okTetra(6, -3*time.Hour, from("10.0.0.3")))

	var got []string
	for _, c := range cs.List(t0.Add(time.Minute)) {
		got = append(got, fmt.Sprintf("%s/%s/%s", c.State, c.Sensor, c.ClientIP))
	}
	want := []string{
		"failing/edge0/10.0.0.10", "failing/edge1/10.0.0.9",
		"silent/edge1/10.0.0.3",
		"unknown/edge1/10.0.0.2",
		"healthy/edge1/10.0.0.1", "healthy/edge1/10.0.0.10",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("List order:\n got %v\nwant %v", got, want)
	}
	if _, ok := cs.Get(sensorA, "10.9.9.9", t0); ok {
		t.Fatal("unknown client found")
	}
}

func TestUsersAndCounts(t *testing.T) {
	cs := NewClients(Correlation{})
	cs.Add(ev(1, 0, EndpointTetra, AuthRequired))
	cs.Add(okTetra(2, time.Second, user("bob")))
	cs.Add(okTetra(3, 2*time.Second, user("alice")))
	c, _ := cs.Add(ev(4, 3*time.Second, EndpointRevocation, OK, user("bob")))
	if c.ClientUser != "bob" || !slices.Equal(c.Users, []string{"alice", "bob"}) {
		t.Fatalf("user %q users %v", c.ClientUser, c.Users)
	}
	if c.Counts[OK] != 3 || c.Counts[AuthRequired] != 1 || len(c.Counts) != len(Outcomes) {
		t.Fatalf("counts %v", c.Counts)
	}
	if c.FirstSeen != t0 || !c.LastSeen.Equal(t0.Add(3200*time.Millisecond)) {
		t.Fatalf("first %v last %v", c.FirstSeen, c.LastSeen)
	}
	if c.LastTetraOK == nil || !c.LastTetraOK.Equal(t0.Add(2200*time.Millisecond)) {
		t.Fatalf("last tetra ok %v", c.LastTetraOK)
	}
}

func TestClientJSON(t *testing.T) {
	cs := NewClients(Correlation{})
	c, _ := cs.Add(ev(7, 0, EndpointAMP, OK))
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"client_ip", "client_user", "users", "sensor", "first_seen",
		"last_seen", "last_tetra_ok", "tetra_attempts", "tetra_failures", "counts", "state",
		"diagnosis", "diagnoses", "expected_lasterror", "lasterror_basis", "lasterror_reason"} {
		if _, ok := m[k]; !ok {
			t.Errorf("key %s missing from %s", k, b)
		}
	}
	for k, want := range map[string]string{"last_tetra_ok": "null", "users": "[]",
		"diagnoses": "[]", "first_seen": `"2026-03-02T09:00:00Z"`} {
		if got := string(m[k]); got != want {
			t.Errorf("%s = %s, want %s", k, got, want)
		}
	}
	if _, ok := m["reported_lasterror"]; ok {
		t.Error("reported_lasterror present without an import")
	}
	if len(m) != 16 {
		t.Errorf("%d keys: %s", len(m), b)
	}

	// Marshalling twice gives the same bytes: map keys are sorted, slices
	// never nil.
	again, _ := json.Marshal(c)
	if string(again) != string(b) {
		t.Fatal("unstable JSON")
	}
}

func TestReportedLastErrors(t *testing.T) {
	cs := NewClients(Correlation{})
	cs.Add(okTetra(1, 0, from(ipA)))
	cs.Add(ev(2, 0, EndpointTetra, AuthFailed, from(ipB)))
	cs.SetReported(map[string]LastError{
		ipA:        LastErrorDownloadFailed,
		ipB:        LastErrorProxyAuth,
		"10.0.0.7": LastErrorProxyConnect,
	})
	now := t0.Add(time.Minute)
	a, _ := cs.Get(sensorA, ipA, now)
	b, _ := cs.Get(sensorA, ipB, now)
	if a.Agreement != AgreementDisagree || *a.ReportedLastError != LastErrorDownloadFailed {
		t.Errorf("a: %s %v", a.Agreement, a.ReportedLastError)
	}
	if b.Agreement != AgreementAgree {
		t.Errorf("b: %s", b.Agreement)
	}
	ns := cs.NotSeen()
	if len(ns) != 1 || ns[0].ClientIP != "10.0.0.7" || ns[0].Agreement != AgreementNotSeen ||
		ns[0].ExpectedLastError != LastErrorProxyConnect || ns[0].LastErrorBasis != Inferred {
		t.Fatalf("not seen: %+v", ns)
	}
	cs.SetReported(nil)
	if a, _ := cs.Get(sensorA, ipA, now); a.ReportedLastError != nil || a.Agreement != "" ||
		cs.NotSeen() != nil {
		t.Fatal("reported values kept after SetReported(nil)")
	}
}

func TestDiagnosisFor(t *testing.T) {
	cs := feed(t, []Event{abandoned(1, 0), revFail(2, 500*time.Millisecond, ConnectRefused),
		ev(3, time.Second, EndpointAMP, OK)}, time.Minute)
	c, _ := cs.Get(sensorA, ipA, t0.Add(time.Minute))
	for id, want := range map[int64]string{1: DiagnosisRevocationBlocked,
		2: DiagnosisRevocationBlocked, 3: ""} {
		if got := c.DiagnosisFor(id); got != want {
			t.Errorf("DiagnosisFor(%d) = %q, want %q", id, got, want)
		}
	}
}

func TestAdvice(t *testing.T) {
	for _, name := range DiagnosisNames {
		if Advice(name) == "" {
			t.Errorf("no advice for %s", name)
		}
	}
	if Advice("nonsense") != "" {
		t.Error("advice for an unknown name")
	}
}

func TestIssuerExpected(t *testing.T) {
	c := Correlation{}
	cases := map[string]bool{
		issuerCisco: true,
		"CN=TrustID Server CA O1,O=IdenTrust,C=US": true,
		"CN=hydrantid rsa ca,O=Avast":              true,
		issuerCorp:                                 false,
		`CN=Corp\, IdenTrust-like,O=Corp`:          true, // a substring is enough, as documented
		"OU=IdenTrust,O=Other":                     false,
		"O=Other+CN=IdenTrust Sub":                 true,
		`CN=Iden\54rust`:                           true,
		"":                                         false,
		"garbage without equals":                   false,
	}
	for dn, want := range cases {
		if got := c.IssuerExpected(dn); got != want {
			t.Errorf("IssuerExpected(%q) = %v, want %v", dn, got, want)
		}
	}
	own := Correlation{ExpectedIssuers: []string{" ", "Corp Inspection"}}
	if !own.IssuerExpected(issuerCorp) || own.IssuerExpected(issuerCisco) {
		t.Error("configured issuers not used")
	}
}

func TestCorrelationDefaults(t *testing.T) {
	c := NewClients(Correlation{RevocationWindow: -time.Second}).Correlation()
	if c.UpdateInterval != time.Hour || c.RevocationWindow != 30*time.Second ||
		c.AuthWindow != time.Minute || !slices.Equal(c.ExpectedIssuers, DefaultExpectedIssuers) ||
		c.MaxClients != DefaultMaxClients || c.MaxEvents != DefaultMaxEvents {
		t.Fatalf("defaults: %+v", c)
	}
	if w := (Correlation{UpdateInterval: 15 * time.Minute}).StateWindow(); w != 30*time.Minute {
		t.Fatalf("state window %v", w)
	}
}

// TestClassifyIssuer checks that Classify carries the certificate issuer
// the sniffer saw into the event.
func TestClassifyIssuer(t *testing.T) {
	o := &Observation{Event: Event{Method: "CONNECT", Endpoint: EndpointTetra, Close: ClientFIN},
		TLS: &tlsrec.Result{TLS: true, ClientHello: true, ServerHello: true, Certificate: true,
			ServerFlightDone: true, Version: "TLS 1.2", LeafIssuer: issuerCorp}}
	if e := Classify(o); e.TLSIssuer != issuerCorp || e.Outcome != TLSAborted {
		t.Fatalf("issuer %q outcome %s", e.TLSIssuer, e.Outcome)
	}
	plain := &Observation{Event: Event{Method: "GET", Endpoint: EndpointRevocation,
		UpstreamStatus: 200}, ContentLength: -1}
	if e := Classify(plain); e.TLSIssuer != "" {
		t.Fatalf("issuer %q on plain HTTP", e.TLSIssuer)
	}
}

func TestOutcomeCounters(t *testing.T) {
	if len(Outcomes) > maxOutcomes {
		t.Fatalf("%d outcomes, counters for %d: raise maxOutcomes", len(Outcomes), maxOutcomes)
	}
}

// TestRejectionWhoeverClosedFirst: a client's certificate alert in clear is
// its rejection even when the server's FIN reached the proxy first.
func TestRejectionWhoeverClosedFirst(t *testing.T) {
	cs := NewClients(Correlation{})
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	cl, _ := cs.Add(Event{ID: 1, Time: t0, Sensor: "s", ClientIP: "10.0.0.9", Method: "CONNECT",
		Host: "tetra-defs.amp.cisco.com", Port: 443, Endpoint: EndpointTetra, Outcome: TLSAborted,
		Close: ServerFIN, TLSVersion: "TLS 1.2", TLSAlert: "bad_certificate",
		TLSIssuer: "CN=IdenTrust Server CA,O=IdenTrust"})
	if cl.Diagnosis != DiagnosisRevocationOutside {
		t.Fatalf("diagnosis %q, want %s", cl.Diagnosis, DiagnosisRevocationOutside)
	}
	// A negotiation alert is not a rejection of the certificate.
	cl, _ = cs.Add(Event{ID: 2, Time: t0, Sensor: "s", ClientIP: "10.0.0.10", Method: "CONNECT",
		Host: "tetra-defs.amp.cisco.com", Port: 443, Endpoint: EndpointTetra, Outcome: TLSAborted,
		Close: ServerFIN, TLSVersion: "TLS 1.2", TLSAlert: "protocol_version"})
	if cl.Diagnosis == DiagnosisRevocationOutside {
		t.Fatal("a protocol_version alert taken for a certificate rejection")
	}
}
