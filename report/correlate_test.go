package report

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

func TestMachineAccount(t *testing.T) {
	cases := map[string]string{
		`CORP\PC42$`:           "PC42",
		`corp.example\pc42$`:   "pc42",
		"PC42$@CORP.EXAMPLE":   "PC42",
		"PC42$":                "PC42",
		`CORP\alice`:           "",
		"alice@corp.example":   "",
		"$":                    "",
		`CORP\$`:               "",
		"pc42.corp.example$":   "",
		"":                     "",
		`CORP\LONGHOSTNAME12$`: "LONGHOSTNAME12",
	}
	for user, want := range cases {
		if got := machineAccount(user); got != want {
			t.Errorf("machineAccount(%q) = %q, want %q", user, got, want)
		}
	}
}

// TestMatch covers how an endpoint row finds its client.
func TestMatch(t *testing.T) {
	eps := []Endpoint{
		{Line: 2, Host: "PC-A.corp.example", IP: "10.0.0.1"},
		{Line: 3, Host: "pc-b", LastError: inspect.LastErrorProxyAuth},
		{Line: 4, IP: "10.0.0.3"},
		{Line: 5, Host: "WORKSTATION-LONGNAME.corp.example"},
		{Line: 6, Host: "PC-NEW", IP: "10.0.0.6"},
		{Line: 7, IP: "2001:db8::7"},
	}
	m := newMatcher(eps)
	cases := []struct {
		name  string
		ip    string
		users []string
		line  int // 0: no match
		by    string
	}{
		{"address", "10.0.0.1", nil, 2, MatchIP},
		{"address with a user account", "10.0.0.1", []string{`CORP\alice`}, 2, MatchIP},
		{"machine account, FQDN first label", "10.9.9.9", []string{`CORP\PC-A$`}, 2,
			MatchMachineAccount},
		{"machine account, any case, any address", "10.9.9.9", []string{`corp\PC-B$`}, 3,
			MatchMachineAccount},
		{"Kerberos form", "10.9.9.9", []string{"PC-B$@CORP.EXAMPLE"}, 3, MatchMachineAccount},
		{"account wins over address", "10.0.0.1", []string{`CORP\PC-B$`}, 3,
			MatchMachineAccount},
		{"NetBIOS name of a long host", "10.9.9.9", []string{`CORP\WORKSTATION-LON$`}, 5,
			MatchMachineAccount},
		{"address only row", "10.0.0.3", []string{`CORP\PC-Z$`}, 4, MatchIP},
		{"address now used by another machine", "10.0.0.6", []string{`CORP\PC-OLD$`}, 0, ""},
		{"IPv6 written differently", "2001:DB8:0::7", nil, 7, MatchIP},
		{"nothing", "10.0.0.99", []string{"bob"}, 0, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, by := m.match(tc.ip, tc.users)
			line := 0
			if k >= 0 {
				line = eps[k].Line
			}
			if line != tc.line || by != tc.by {
				t.Errorf("match = line %d by %q, want line %d by %q", line, by, tc.line, tc.by)
			}
		})
	}
}

// clientHistory gives one client, at address ip, a few events before reportEnd,
// numbered from *id on.
type clientHistory func(ip string, id *int64) []inspect.Event

// step is one event of a clientHistory: how long before reportEnd, of which
// endpoint class, with which outcome.
type step = struct {
	ago time.Duration
	p   inspect.Endpoint
	o   inspect.Outcome
}

func events(steps ...step) clientHistory {
	return func(ip string, id *int64) []inspect.Event {
		var out []inspect.Event
		for _, s := range steps {
			*id++
			out = append(out, fixtureEvent(*id, at(s.ago), ip, s.p, s.o))
		}
		return out
	}
}

var (
	healthy = events(step{30 * time.Minute, inspect.EndpointTetra, inspect.OK})
	// authFailing was refused credentials by this proxy.
	authFailing = events(step{40 * time.Minute, inspect.EndpointTetra, inspect.AuthFailed},
		step{20 * time.Minute, inspect.EndpointTetra, inspect.AuthFailed})
	// dnsFailing reached this proxy, whose lookups fail; no 407 at all.
	dnsFailing = events(step{40 * time.Minute, inspect.EndpointTetra, inspect.DNSFailure},
		step{10 * time.Minute, inspect.EndpointTetra, inspect.DNSFailure})
	// challengedThenDNS was challenged, answered, then failed on DNS.
	challengedThenDNS = events(
		step{40*time.Minute + time.Second, inspect.EndpointTetra, inspect.AuthRequired},
		step{40 * time.Minute, inspect.EndpointTetra, inspect.DNSFailure})
	silentClient = events(step{10 * time.Hour, inspect.EndpointTetra, inspect.OK})
	upstream     = events(step{10 * time.Minute, inspect.EndpointTetra,
		inspect.UpstreamUnreachable})
	revocationOK = events(step{30*time.Minute + time.Second, inspect.EndpointRevocation,
		inspect.OK}, step{30 * time.Minute, inspect.EndpointTetra, inspect.OK})
	revocationBlocked = events(
		step{30 * time.Minute, inspect.EndpointRevocation, inspect.HTTPError},
		step{30*time.Minute - 2*time.Second, inspect.EndpointTetra, inspect.TLSAborted})
	unknownYoung = events(step{20 * time.Minute, inspect.EndpointAMP, inspect.OK})
)

// TestAgreement builds one client per situation, gives each an endpoint
// row, and checks the agreement and the words that explain it.
func TestAgreement(t *testing.T) {
	const (
		none     = inspect.LastErrorNone
		connect  = inspect.LastErrorProxyConnect
		auth     = inspect.LastErrorProxyAuth
		download = inspect.LastErrorDownloadFailed
	)
	cases := []struct {
		name      string
		h         clientHistory
		reported  inspect.LastError
		agreement string
		meaning   string // a phrase the meaning must hold
	}{
		{"healthy, no error", healthy, none, "agree", "Both sides say the last update worked"},
		{"auth refused, -2100", authFailing, auth, "agree", "authentication failure this proxy saw"},
		{"dns, -2109", dnsFailing, download, "agree", "the cause found here is dns"},
		{"silent, -2103", silentClient, connect, "agree", "network path from the endpoint"},
		{"revocation blocked, -2109", revocationBlocked, download, "agree",
			"revocation_blocked"},

		{"-2100 but no 407 here", dnsFailing, auth, "disagree",
			"this proxy sent it no 407 in the report's window: another proxy in its path " +
				"refuses its credentials"},
		{"-2100 after 407s this proxy let through", challengedThenDNS, auth, "disagree",
			"sent it 407 answers (1 in the window)"},
		{"-2103 but seen recently", dnsFailing, connect, "disagree",
			"yet this proxy saw it at 2026-03-02T11:50:00Z: its proxy setting for updates " +
				"points elsewhere"},
		{"-2103 with the upstream proxy down", upstream, connect, "disagree",
			"could not get through its upstream proxy"},
		{"-2109 while silent here", silentClient, download, "disagree",
			"it uses another proxy, where the download fails"},
		{"-2109 while this proxy refused its credentials", authFailing, download, "disagree",
			"got through on another attempt or another proxy"},
		{"-2109 after a success here", healthy, download, "disagree",
			"this proxy saw one succeed at 2026-03-02T11:30:00Z"},
		{"-2109 for a client barely seen", unknownYoung, download, "disagree",
			"saw too little of the endpoint to judge (state unknown)"},
		{"0 while silent here", silentClient, none, "disagree",
			"updates over another path (another proxy, or direct)"},
		{"0 while failing here", dnsFailing, none, "disagree",
			"this proxy saw its updates fail"},
		{"Windows revocation code, same cause", revocationBlocked, 0x80092013, "disagree",
			"this proxy found the same cause (revocation_blocked)"},
		{"Windows revocation code, not seen here", revocationOK, 0x80092012, "disagree",
			"this proxy saw no failed revocation check"},
		{"a code nobody knows", dnsFailing, 12345, "disagree",
			"12345, a value not known to tetrascope"},
	}

	var (
		evs []inspect.Event
		eps []Endpoint
		id  int64
	)
	for i, tc := range cases {
		ip := "10.2.0." + strconv.Itoa(i+1)
		evs = append(evs, tc.h(ip, &id)...)
		eps = append(eps, Endpoint{Line: i + 2, IP: ip, LastError: tc.reported})
	}
	slices.SortStableFunc(evs, func(a, b inspect.Event) int { return a.Time.Compare(b.Time) })
	opts := fixtureOptions()
	opts.Endpoints = eps
	rep := build(t, evs, opts)

	rows := map[string]*Row{}
	for i := range rep.Clients {
		rows[rep.Clients[i].ClientIP] = &rep.Clients[i]
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rows["10.2.0."+strconv.Itoa(i+1)]
			if r == nil {
				t.Fatal("no row")
			}
			if r.ReportedLastError == nil || *r.ReportedLastError != tc.reported ||
				r.MatchedBy != MatchIP || r.Reported == nil || r.Reported.Line != i+2 {
				t.Fatalf("reported %v by %q from %+v", r.ReportedLastError, r.MatchedBy, r.Reported)
			}
			if r.Agreement != tc.agreement {
				t.Errorf("agreement %q (expected %d, reported %d), want %q", r.Agreement,
					r.ExpectedLastError, tc.reported, tc.agreement)
			}
			if !strings.Contains(r.AgreementMeaning, tc.meaning) {
				t.Errorf("meaning %q lacks %q", r.AgreementMeaning, tc.meaning)
			}
		})
	}
	if rep.LastErrors == nil || rep.LastErrors.Matched != len(cases) || len(rep.NotSeen) != 0 {
		t.Errorf("import %+v, not seen %v", rep.LastErrors, rep.NotSeen)
	}
	if a := rep.Summary.Agreement; a == nil || a.Agree != 5 || a.Disagree != len(cases)-5 {
		t.Errorf("summary agreement %+v", a)
	}
}

func TestNotSeen(t *testing.T) {
	eps := []Endpoint{
		{Line: 2, Host: "GONE", LastError: inspect.LastErrorProxyConnect},
		{Line: 3, IP: "10.3.0.2", LastError: inspect.LastErrorNone},
		{Line: 4, Host: "ELSEWHERE", IP: "10.3.0.3", LastError: inspect.LastErrorProxyAuth},
		{Line: 5, Host: "ODD", LastError: 77},
	}
	opts := fixtureOptions()
	opts.Endpoints = eps
	var id int64
	rep := build(t, healthy("10.3.0.9", &id), opts)

	want := []string{
		"Consistent: the endpoint cannot reach its proxy",
		"uses another proxy or goes direct",
		"but not this one: its proxy setting points elsewhere",
		"never saw the endpoint, which shows 77",
	}
	if len(rep.NotSeen) != len(want) {
		t.Fatalf("%d not seen, want %d", len(rep.NotSeen), len(want))
	}
	for i, n := range rep.NotSeen {
		if n.Line != eps[i].Line || n.Agreement != inspect.AgreementNotSeen ||
			n.ExpectedLastError != inspect.LastErrorProxyConnect ||
			n.LastErrorBasis != inspect.Inferred || !strings.Contains(n.AgreementMeaning, want[i]) {
			t.Errorf("not seen %d: %+v", i, n)
		}
	}
	if rep.Clients[0].Agreement != "" || rep.Clients[0].ReportedLastError != nil {
		t.Errorf("a client without a row got %q", rep.Clients[0].Agreement)
	}
}

// TestMachineAccountMatchInReport: an endpoint listed by host name only is
// found at whatever address its machine account used, and the row takes
// the endpoint's host name.
func TestMachineAccountMatchInReport(t *testing.T) {
	ev := fixtureEvent(1, at(20*time.Minute), "10.4.0.1", inspect.EndpointTetra,
		inspect.AuthFailed, user(`CORP\KIOSK7$`))
	opts := fixtureOptions()
	opts.Endpoints = []Endpoint{{Line: 2, Host: "kiosk7.corp.example",
		LastError: inspect.LastErrorProxyAuth, DefVersion: "1:94000"}}
	rep := build(t, []inspect.Event{ev}, opts)
	r := rep.Clients[0]
	if r.MatchedBy != MatchMachineAccount || r.HostName != "kiosk7.corp.example" ||
		r.Agreement != inspect.AgreementAgree || r.Reported.DefVersion != "1:94000" {
		t.Fatalf("row %+v", r)
	}
	if len(rep.NotSeen) != 0 || rep.LastErrors.Matched != 1 {
		t.Errorf("not seen %v, import %+v", rep.NotSeen, rep.LastErrors)
	}
}

func TestReportedByIP(t *testing.T) {
	eps := []Endpoint{
		{Line: 2, Host: "PC-A", LastError: inspect.LastErrorProxyAuth},
		{Line: 3, IP: "10.5.0.2", LastError: inspect.LastErrorNone},
		{Line: 4, IP: "10.5.0.9", LastError: inspect.LastErrorProxyConnect},
		{Line: 5, Host: "PC-NOWHERE", LastError: inspect.LastErrorProxyConnect},
	}
	clients := []inspect.Client{
		{ClientIP: "10.5.0.1", Users: []string{`CORP\PC-A$`}},
		{ClientIP: "10.5.0.2"},
		{ClientIP: "10.5.0.3"},
	}
	got := ReportedByIP(eps, clients)
	want := map[string]inspect.LastError{
		"10.5.0.1": inspect.LastErrorProxyAuth,
		"10.5.0.2": inspect.LastErrorNone,
		"10.5.0.9": inspect.LastErrorProxyConnect, // unseen, so NotSeen lists it
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for ip, code := range want {
		if c, ok := got[ip]; !ok || c != code {
			t.Errorf("%s: %d, %v; want %d", ip, c, ok, code)
		}
	}

	// The map feeds inspect.Clients, which then agrees with the report.
	cs := inspect.NewClients(inspect.Correlation{})
	cs.Add(fixtureEvent(1, at(10*time.Minute), "10.5.0.1", inspect.EndpointTetra,
		inspect.AuthFailed, user(`CORP\PC-A$`)))
	cs.SetReported(ReportedByIP(eps, cs.List(reportEnd)))
	c, _ := cs.Get("edge1", "10.5.0.1", reportEnd)
	if c.Agreement != inspect.AgreementAgree {
		t.Errorf("live agreement %q", c.Agreement)
	}
	if ns := cs.NotSeen(); len(ns) != 2 {
		t.Errorf("live not seen %v", ns)
	}
}
