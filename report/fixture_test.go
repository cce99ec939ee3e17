package report

import (
	"os"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// reportEnd is the fixed clock of the fixture: the end of its window and
// the time the report is made.
var reportEnd = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

// at is a time before reportEnd.
func at(before time.Duration) time.Time { return reportEnd.Add(-before) }

type evOpt func(*inspect.Event)

func user(u string) evOpt   { return func(e *inspect.Event) { e.ClientUser = u } }
func sensor(s string) evOpt { return func(e *inspect.Event) { e.Sensor = s } }
func closedBy(c inspect.Close) evOpt {
	return func(e *inspect.Event) { e.Close = c }
}
func bytesDown(n int64) evOpt { return func(e *inspect.Event) { e.BytesDown = n } }
func target(h string, port int) evOpt {
	return func(e *inspect.Event) { e.Host, e.Port = h, port }
}

// fixtureEvent builds a finished event of client ip, 200 ms long, with the
// fields a proxy would give it.
func fixtureEvent(id int64, t time.Time, ip string, p inspect.Endpoint, o inspect.Outcome,
	opts ...evOpt) inspect.Event {
	e := inspect.Event{ID: id, Time: t, DurationMS: 200, Source: inspect.SourceProxy,
		Sensor: "edge1", ClientIP: ip, Endpoint: p, Outcome: o, Detail: string(o)}
	switch p {
	case inspect.EndpointTetra:
		e.Method, e.Host, e.Port, e.SNI = "CONNECT", "tetra-defs.amp.cisco.com", 443,
			"tetra-defs.amp.cisco.com"
	case inspect.EndpointRevocation:
		e.Method, e.Host, e.Port = "GET", "crl.identrust.com", 80
		e.URL = "http://crl.identrust.com/DSTROOTCAX3CRL.crl"
	default:
		e.Method, e.Host, e.Port = "CONNECT", "www.example.com", 443
	}
	switch o {
	case inspect.OK:
		e.Status, e.Close = 200, inspect.ClientFIN
		if p == inspect.EndpointTetra {
			e.TLSVersion, e.BytesDown = "TLS 1.3", 3<<20
		}
	case inspect.AuthRequired, inspect.AuthFailed:
		e.Status, e.DurationMS = 407, 2
	case inspect.DNSFailure, inspect.ConnectRefused, inspect.UpstreamUnreachable:
		e.Status = 502
	case inspect.ConnectTimeout:
		e.Status = 504
	case inspect.DownloadAborted:
		e.Status, e.Close, e.TLSVersion = 200, inspect.ServerRST, "TLS 1.3"
	case inspect.TLSAborted:
		e.Status, e.Close, e.TLSVersion, e.BytesDown = 200, inspect.ClientFIN, "TLS 1.3", 4500
	case inspect.HTTPError:
		e.Status, e.UpstreamStatus = 403, 403
	case inspect.Denied:
		e.Status = 403
	}
	e.LastError = uint32(lastErrorOf(p, o))
	for _, f := range opts {
		f(&e)
	}
	return e
}

func lastErrorOf(p inspect.Endpoint, o inspect.Outcome) inspect.LastError {
	code, _ := inspect.EventLastError(p, o)
	return code
}

// fixtureEvents is the fixed event set of the golden files, oldest first:
// one client per situation the report must show.
func fixtureEvents() []inspect.Event {
	const (
		tetra = inspect.EndpointTetra
		rev   = inspect.EndpointRevocation
		other = inspect.EndpointOther
	)
	h, m, s := time.Hour, time.Minute, time.Second
	evs := []inspect.Event{
		// Before the window: history for the states, not counted. 10.0.0.20
		// is seen only then and is no row of the report.
		fixtureEvent(1, at(25*h), "10.0.0.20", tetra, inspect.OK),
		fixtureEvent(2, at(24*h+30*m), "10.0.0.12", tetra, inspect.DNSFailure),

		// 10.0.0.13 downloaded once, long ago, and then fell silent.
		fixtureEvent(10, at(22*h), "10.0.0.13", tetra, inspect.OK),
		// 10.0.0.10 is healthy, answering the 407 challenge each time.
		fixtureEvent(11, at(20*h), "10.0.0.10", tetra, inspect.OK, user(`CORP\PC-OK$`)),
		fixtureEvent(12, at(12*h), "10.0.0.17", tetra, inspect.OK, sensor("edge2")),
		fixtureEvent(13, at(6*h), "10.0.0.19", tetra, inspect.TLSAborted,
			closedBy(inspect.ServerFIN)),
		fixtureEvent(14, at(5*h), "10.0.0.15", tetra, inspect.OK),
		// 10.0.0.17 (another sensor) cannot get through to the host.
		fixtureEvent(15, at(3*h), "10.0.0.17", tetra, inspect.ConnectRefused, sensor("edge2")),
		// 10.0.0.18 was denied by policy (other traffic, stored anyway).
		fixtureEvent(16, at(100*m), "10.0.0.18", other, inspect.Denied, target("smtp.example.com", 25)),
		// 10.0.0.15's downloads break off.
		fixtureEvent(17, at(90*m), "10.0.0.15", tetra, inspect.DownloadAborted, bytesDown(1<<20)),
		fixtureEvent(18, at(70*m), "10.0.0.12", tetra, inspect.DNSFailure),
		fixtureEvent(19, at(60*m), "10.0.0.15", tetra, inspect.DownloadAborted, bytesDown(1<<20)),
		fixtureEvent(20, at(60*m), "2001:db8::5", tetra, inspect.OK),
		fixtureEvent(21, at(60*m), "10.0.0.19", tetra, inspect.OK),
		// 10.0.0.11 (a machine account) is refused by this proxy.
		fixtureEvent(22, at(50*m), "10.0.0.11", tetra, inspect.AuthFailed, user(`CORP\PC-AUTH$`)),
		fixtureEvent(23, at(45*m), "10.0.0.16", tetra, inspect.UpstreamUnreachable, user("alice")),
		// 10.0.0.14's revocation fetch is refused, then it abandons the
		// definition server after its certificate.
		fixtureEvent(24, at(40*m), "10.0.0.14", rev, inspect.HTTPError, user(`CORP\PC-REV$`)),
		fixtureEvent(25, at(40*m-2*s), "10.0.0.14", tetra, inspect.TLSAborted, user(`CORP\PC-REV$`)),
		fixtureEvent(26, at(30*m+2*s), "10.0.0.10", rev, inspect.OK, user(`CORP\PC-OK$`)),
		fixtureEvent(27, at(30*m+s), "10.0.0.10", tetra, inspect.AuthRequired),
		fixtureEvent(28, at(30*m), "10.0.0.10", tetra, inspect.OK, user(`CORP\PC-OK$`)),
		fixtureEvent(29, at(30*m), "10.0.0.15", tetra, inspect.DownloadAborted, bytesDown(1<<20)),
		fixtureEvent(30, at(25*m), "10.0.0.17", tetra, inspect.ConnectRefused, sensor("edge2")),
		fixtureEvent(31, at(20*m), "10.0.0.11", tetra, inspect.AuthFailed, user(`CORP\PC-AUTH$`)),
		// 10.0.0.19 downloaded, then a revocation check timed out.
		fixtureEvent(32, at(20*m), "10.0.0.19", rev, inspect.ConnectTimeout),
		fixtureEvent(33, at(15*m), "10.0.0.14", rev, inspect.HTTPError, user(`CORP\PC-REV$`)),
		fixtureEvent(34, at(15*m-2*s), "10.0.0.14", tetra, inspect.TLSAborted, user(`CORP\PC-REV$`)),
		fixtureEvent(35, at(12*m), "10.0.0.17", tetra, inspect.ConnectTimeout, sensor("edge2")),
		fixtureEvent(36, at(10*m), "10.0.0.12", tetra, inspect.DNSFailure),
		fixtureEvent(37, at(5*m), "10.0.0.16", tetra, inspect.UpstreamUnreachable, user("alice")),
		// Ignored: browsing, and a tunnel still open.
		fixtureEvent(38, at(4*m), "10.0.0.10", other, inspect.OK),
		fixtureEvent(39, at(3*m), "10.0.0.10", tetra, ""),
	}
	return evs
}

// fixtureOptions are the options of the golden reports.
func fixtureOptions() Options {
	return Options{Since: reportEnd.Add(-24 * time.Hour), Until: reportEnd, Now: reportEnd}
}

// fixtureEndpoints parses testdata/lasterrors.csv.
func fixtureEndpoints(t *testing.T) ([]Endpoint, []RowError) {
	t.Helper()
	f, err := os.Open("testdata/lasterrors.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	eps, errs, err := ParseLastErrors(f)
	if err != nil {
		t.Fatal(err)
	}
	return eps, errs
}

// build makes the report of events with opts.
func build(t testing.TB, events []inspect.Event, opts Options) *Report {
	t.Helper()
	b, err := NewBuilder(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		b.Add(onlyFields(ev, scanFields))
	}
	return b.Report()
}
