package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/inspect/squidlog"
)

// The sidecar cases: a real Squid, started on loopback with a generated
// squid.conf, writes its access log in the native format and in a custom
// format with %err_code while real curl traffic goes through it (success,
// a 407 challenge, wrong and right credentials, a denied domain and port,
// an unresolvable name, a refused port, an aborted download, a missing CRL,
// bytes that are not HTTP). The same traffic then goes through `tetrascope
// serve`. Each case's client sends from its own loopback address, with the
// same credentials through both proxies, so that both see the same
// clients. Then:
//
//   - parse_*: inspect/squidlog reads each log; every case gives the
//     expected event. This needs no tetrascope binary.
//   - agrees_with_serve: serve gives the same endpoint and lasterror per
//     case, and the same outcome where the log can tell (the differences
//     are listed per case).
//   - tail_*: `tetrascope tail` on each log stores exactly those events,
//     and `tetrascope report` on its database agrees with the report on
//     serve's, client by client and in the summary, but for the
//     differences listed in squid_report_test.go; then tail follows a line
//     appended later, and resumes after a restart without reading anything
//     twice.
//
// Squid is Debian's 5.7 here (scripts/deps installs it in CI). It sends DNS
// queries to port 53 only, so the test's DNS server listens on
// 127.0.0.15x:53, which needs root.

// squidUser and squidPassword are the credentials Squid and serve accept.
const (
	squidUser     = "alice"
	squidPassword = "secret"
	deniedDomain  = "blocked.example.test"
)

// squidCase is one request through Squid and what each source must say.
type squidCase struct {
	name string
	// client is the loopback address the request is sent from; each
	// client is one row of a report.
	client string
	// send makes the request from the address from through the proxy at
	// addr: Squid, or tetrascope serve, which answers some requests
	// otherwise (502 where Squid 5 says 500 or 503, and it has no domain
	// policy).
	send func(t *testing.T, from, addr string, serve bool)
	// match finds the case's event (by who and where, never by outcome).
	match func(e *inspect.Event) bool

	endpoint inspect.Endpoint
	status   int    // from Squid
	user     string // client_user Squid logs
	native   inspect.Outcome
	custom   inspect.Outcome
	// serve is what `tetrascope serve` says for the same request; empty
	// when serve stores no event for it (it lets through what only
	// Squid's policy refuses, and does not keep other traffic).
	serve inspect.Outcome
}

// run sends the case's request from its client through the proxy at addr.
func (c *squidCase) run(t *testing.T, addr string, serve bool) {
	t.Helper()
	c.send(t, c.client, addr, serve)
}

// span is when one run of the cases' traffic began and ended.
type span struct{ begin, end time.Time }

// serveRun is the cases' traffic through `tetrascope serve`.
type serveRun struct {
	span
	db     string                   // serve's database, after serve stopped
	events map[string]inspect.Event // by case name, for the cases with a serve outcome
	report madeReport               // `tetrascope report` on db
}

type squidWorld struct {
	pki      *testPKI
	dns      *dnsServer
	download *tlsServer
	rev      *revocationServer
	slow     int // port of the slow origin
	refused  int // port nothing listens on
	denied   int // port outside SSL_ports
	htpasswd string
	squid    *squidProc
	cases    []squidCase
	begin    time.Time
	// squidSpan is the traffic through Squid; serve the same through
	// tetrascope serve.
	squidSpan span
	serve     serveRun
}

func TestSquid(t *testing.T) {
	bin := requireSquid(t)
	requireTool(t, "curl")
	w := newSquidWorld(t, bin)

	// The traffic through both proxies, before any subtest, so that each
	// can run alone.
	w.squidSpan.begin = time.Now()
	for _, c := range w.cases {
		c.run(t, w.squid.Addr, false)
	}
	w.squidSpan.end = time.Now()
	// Squid logs a tunnel when it closes and flushes at shutdown: the
	// logs are complete once it stopped.
	w.squid.Stop()
	w.runServe(t)
	if t.Failed() {
		t.FailNow()
	}

	t.Run("parse_native", func(t *testing.T) {
		w.checkParsed(t, w.parse(t, squidlog.Config{}, w.squid.NativeLog), false)
	})
	t.Run("parse_custom", func(t *testing.T) {
		w.checkParsed(t, w.parse(t, squidlog.Config{Format: squidlog.FormatCustom,
			LogFormat: squidLogFormat}, w.squid.CustomLog), true)
	})
	t.Run("agrees_with_serve", w.caseAgreesWithServe)
	t.Run("tail_native", func(t *testing.T) {
		w.caseTail(t, logNative, squidlog.Config{}, w.squid.NativeLog)
	})
	t.Run("tail_custom", func(t *testing.T) {
		w.caseTail(t, logCustom, squidlog.Config{Format: squidlog.FormatCustom,
			LogFormat: squidLogFormat}, w.squid.CustomLog,
			"--format", "custom", "--logformat", squidLogFormat)
	})
}

func newSquidWorld(t *testing.T, bin string) *squidWorld {
	t.Helper()
	w := &squidWorld{begin: time.Now()}
	w.pki = newPKI(t, t.TempDir())
	w.dns = startDNS53(t, []string{hostTetra, hostTetraAPJC, hostCRL, deniedDomain},
		[]string{hostTetraEU})
	w.download = startTLSServer(t, w.pki, tlsServerOptions{})
	w.rev = startRevocationServer(t, w.pki)
	w.slow = startSlowServer(t).Listener.Addr().(*net.TCPAddr).Port
	w.refused = freePort(t)
	w.denied = 8443
	for w.denied == w.download.Port || w.denied == w.refused {
		w.denied++
	}
	w.htpasswd = filepath.Join(t.TempDir(), "htpasswd")
	writeHtpasswd(t, w.htpasswd, squidUser, squidPassword)

	w.cases = w.makeCases()
	for _, c := range w.cases {
		requireLoopbackAlias(t, c.client)
	}
	w.squid = startSquid(t, bin, squidConfig{
		DNS:        w.dns.Addr,
		Htpasswd:   w.htpasswd,
		SSLPorts:   []int{w.download.Port, w.refused},
		DenyDomain: deniedDomain,
		AuthAll:    true,
		Clients:    squidClients,
	})
	return w
}

// squidClients is the range the cases' clients send from.
const squidClients = "127.0.0.0/24"

// connectTarget matches a CONNECT to host:port, answered status (0: any)
// for user ("-": any).
func connectTarget(host string, port, status int, user string) func(*inspect.Event) bool {
	return func(e *inspect.Event) bool {
		return e.Method == http.MethodConnect && e.Host == host && e.Port == port &&
			(status == 0 || e.Status == status) && (user == "-" || e.ClientUser == user)
	}
}

func (w *squidWorld) makeCases() []squidCase {
	creds := []string{"-U", squidUser + ":" + squidPassword}
	// via returns the curl arguments for a request from the address from
	// through the proxy at addr, with the right credentials unless the
	// case brings its own (an empty list: none). Squid and serve both
	// want them for every request that gets past their port policy.
	via := func(from, addr string, own ...string) []string {
		args := []string{"--interface", from, "-x", "http://" + addr}
		if own == nil {
			args = append(args, creds...)
		}
		return append(args, own...)
	}
	tunnel := func(host string, port int, squidCode, serveCode int,
		own ...string) func(*testing.T, string, string, bool) {
		return func(t *testing.T, from, addr string, serve bool) {
			want := squidCode
			if serve {
				want = serveCode
			}
			args := append(via(from, addr, own...), "--cacert", w.pki.CAFile, tetraURL(host, port))
			if r := runCurl(t, args...); r.ConnectCode != want {
				t.Errorf("%v; want the CONNECT answered %d", r, want)
			}
		}
	}
	noCreds := []string{}
	slowURL := fmt.Sprintf("http://%s:%d/defs.bin", hostTetra, w.slow)
	crlURL := fmt.Sprintf("http://%s:%d/missing.crl", hostCRL, w.rev.Port)

	cases := []squidCase{
		{
			name: "success", client: "127.0.0.21",
			send:     tunnel(hostTetra, w.download.Port, 200, 200),
			match:    connectTarget(hostTetra, w.download.Port, 0, "-"),
			endpoint: inspect.EndpointTetra, status: 200, user: squidUser,
			native: inspect.OK, custom: inspect.OK, serve: inspect.OK,
		},
		{
			// The first 407, without credentials: a normal challenge,
			// which the same client answers with right_credentials.
			name: "challenge", client: "127.0.0.22",
			send:     tunnel(hostTetraAPJC, w.download.Port, 407, 407, noCreds...),
			match:    connectTarget(hostTetraAPJC, w.download.Port, 407, ""),
			endpoint: inspect.EndpointTetra, status: 407,
			native: inspect.AuthRequired, custom: inspect.AuthRequired, serve: inspect.AuthRequired,
		},
		{
			name: "wrong_credentials", client: "127.0.0.23",
			send: tunnel(hostTetraAPJC, w.download.Port, 407, 407,
				"-U", squidUser+":wrong"),
			match:    connectTarget(hostTetraAPJC, w.download.Port, 407, squidUser),
			endpoint: inspect.EndpointTetra, status: 407, user: squidUser,
			native: inspect.AuthFailed, custom: inspect.AuthFailed, serve: inspect.AuthFailed,
		},
		{
			name: "right_credentials", client: "127.0.0.22",
			send:     tunnel(hostTetraAPJC, w.download.Port, 200, 200),
			match:    connectTarget(hostTetraAPJC, w.download.Port, 200, squidUser),
			endpoint: inspect.EndpointTetra, status: 200, user: squidUser,
			native: inspect.OK, custom: inspect.OK, serve: inspect.OK,
		},
		{
			// serve has no domain policy: the tunnel goes through, to a
			// host of no endpoint class, and no event is stored.
			name: "denied_domain", client: "127.0.0.24",
			send:     tunnel(deniedDomain, w.download.Port, 403, 200),
			match:    connectTarget(deniedDomain, w.download.Port, 0, "-"),
			endpoint: inspect.EndpointOther, status: 403,
			native: inspect.Denied, custom: inspect.Denied,
		},
		{
			// Both refuse the port before checking credentials; only
			// serve records the user the request named.
			name: "denied_port", client: "127.0.0.25",
			send:     tunnel(hostTetra, w.denied, 403, 403),
			match:    connectTarget(hostTetra, w.denied, 0, "-"),
			endpoint: inspect.EndpointTetra, status: 403,
			native: inspect.Denied, custom: inspect.Denied, serve: inspect.Denied,
		},
		{
			// Squid 5 answers 500 ERR_CANNOT_FORWARD: even %err_code
			// does not say DNS.
			name: "unresolvable", client: "127.0.0.26",
			send:     tunnel(hostTetraEU, w.download.Port, 500, 502),
			match:    connectTarget(hostTetraEU, w.download.Port, 0, "-"),
			endpoint: inspect.EndpointTetra, status: 500, user: squidUser,
			native: inspect.Unreachable, custom: inspect.Unreachable, serve: inspect.DNSFailure,
		},
		{
			// Only %err_code tells a refused connect from a DNS failure.
			name: "refused_port", client: "127.0.0.27",
			send:     tunnel(hostTetra, w.refused, 503, 502),
			match:    connectTarget(hostTetra, w.refused, 0, "-"),
			endpoint: inspect.EndpointTetra, status: 503, user: squidUser,
			native: inspect.Unreachable, custom: inspect.ConnectRefused, serve: inspect.ConnectRefused,
		},
		{
			// The client gives up after a second, mid-body.
			name: "aborted_download", client: "127.0.0.28",
			send: func(t *testing.T, from, addr string, _ bool) {
				args := append(via(from, addr), "--max-time", "1", slowURL)
				if r := runCurl(t, args...); r.Exit != 28 || r.HTTPCode != 200 || r.SizeDown <= 0 {
					t.Errorf("%v; want a timeout (exit 28) after part of a 200 body", r)
				}
			},
			match: func(e *inspect.Event) bool {
				return e.Method == http.MethodGet && e.URL == slowURL
			},
			endpoint: inspect.EndpointTetra, status: 200, user: squidUser,
			native: inspect.DownloadAborted, custom: inspect.DownloadAborted, serve: inspect.DownloadAborted,
		},
		{
			// The client rejects the server's certificate (its CA is not
			// trusted) and closes: serve sees the handshake fail, Squid
			// logs a short tunnel like any other.
			name: "rejected_certificate", client: "127.0.0.31",
			send: func(t *testing.T, from, addr string, _ bool) {
				args := append(via(from, addr), tetraURL(hostTetra, w.download.Port))
				if r := runCurl(t, args...); r.ConnectCode != 200 || r.Exit != 60 {
					t.Errorf("%v; want the CONNECT answered 200, then exit 60 (certificate)", r)
				}
			},
			match:    connectTarget(hostTetra, w.download.Port, 0, "-"),
			endpoint: inspect.EndpointTetra, status: 200, user: squidUser,
			native: inspect.OK, custom: inspect.OK, serve: inspect.TLSAborted,
		},
		{
			name: "missing_crl", client: "127.0.0.29",
			send: func(t *testing.T, from, addr string, _ bool) {
				if r := runCurl(t, append(via(from, addr), crlURL)...); r.HTTPCode != 404 {
					t.Errorf("%v; want the origin's 404", r)
				}
			},
			match: func(e *inspect.Event) bool {
				return e.Method == http.MethodGet && e.URL == crlURL
			},
			endpoint: inspect.EndpointRevocation, status: 404, user: squidUser,
			native: inspect.HTTPError, custom: inspect.HTTPError, serve: inspect.HTTPError,
		},
		{
			name: "bad_request", client: "127.0.0.30",
			send: func(t *testing.T, from, addr string, _ bool) {
				line, err := rawExchangeFrom(from, addr, "THIS IS NOT HTTP\r\n\r\n")
				if err != nil || !status400.MatchString(line) {
					t.Errorf("answer %q, error %v; want HTTP/1.x 400", line, err)
				}
			},
			match: func(e *inspect.Event) bool {
				return e.Host == "" && e.Status == 400
			},
			endpoint: inspect.EndpointOther, status: 400,
			native: inspect.BadRequest, custom: inspect.BadRequest, serve: inspect.BadRequest,
		},
	}
	// Every match is for the case's client.
	for i := range cases {
		client, target := cases[i].client, cases[i].match
		cases[i].match = func(e *inspect.Event) bool { return e.ClientIP == client && target(e) }
	}
	return cases
}

// runServe sends the cases' traffic through `tetrascope serve` (with the
// same DNS server, ports and users as Squid), collects the event of each
// case that has a serve outcome, stops serve and makes the report of its
// database.
func (w *squidWorld) runServe(t *testing.T) {
	t.Helper()
	p := newServeProc(t, needBinary(t), serveConfig{
		DNS:        []string{w.dns.Addr},
		AllowPorts: []int{w.download.Port, w.refused},
	}, "TETRASCOPE_AUTH_HTPASSWD="+w.htpasswd)
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	api := newAPIClient(p.UIAddr())

	w.serve.begin = time.Now()
	for _, c := range w.cases {
		c.run(t, p.ProxyAddr(), true)
	}
	w.serve.end = time.Now()

	w.serve.events = map[string]inspect.Event{}
	for _, c := range w.cases {
		if c.serve == "" {
			continue
		}
		got, err := api.WaitEvent(url.Values{"limit": {"1000"}}, c.match, eventWait)
		if err != nil {
			t.Errorf("serve: %s: %v", c.name, err)
			continue
		}
		w.serve.events[c.name] = got.Event
	}
	p.Stop()

	w.serve.db = p.cfg.DB
	w.serve.report = w.report(t, "serve", w.serve.db, w.serve.span)
}

// parsed is one log read with inspect/squidlog.
type parsed struct {
	events  []inspect.Event
	skipped int // lines that record no request
}

// parse reads a whole log; every line must parse or record no request.
func (w *squidWorld) parse(t *testing.T, cfg squidlog.Config, path string) parsed {
	t.Helper()
	cfg.Catalog = defaultCatalog(t)
	p, err := squidlog.NewParser(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out parsed
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		ev, err := p.Parse(sc.Bytes())
		switch {
		case err == squidlog.ErrNoRequest:
			out.skipped++
		case err != nil:
			t.Errorf("%s:%d: %v\n%s", filepath.Base(path), n, err, sc.Text())
		default:
			out.events = append(out.events, ev)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// defaultCatalog is the endpoint catalog of DESIGN.md's default hosts, as
// the binary uses it.
func defaultCatalog(t *testing.T) *inspect.Catalog {
	t.Helper()
	c, err := inspect.NewCatalog(inspect.DefaultTetraHosts,
		[]string{"crl.identrust.com", "validation.identrust.com", "*.ocsp.identrust.com"},
		[]string{"*.amp.cisco.com"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// find returns the one event of the case among events.
func (c *squidCase) find(t *testing.T, events []inspect.Event) (inspect.Event, bool) {
	t.Helper()
	var found []inspect.Event
	for _, e := range events {
		if c.match(&e) {
			found = append(found, e)
		}
	}
	if len(found) != 1 {
		t.Errorf("%s: %d events match, want 1: %+v", c.name, len(found), found)
		return inspect.Event{}, false
	}
	return found[0], true
}

// checkParsed checks the event of every case in one parsed log.
func (w *squidWorld) checkParsed(t *testing.T, p parsed, custom bool) {
	if len(p.events) != len(w.cases) {
		t.Errorf("%d events, want one per case (%d)", len(p.events), len(w.cases))
	}
	for _, c := range w.cases {
		t.Run(c.name, func(t *testing.T) {
			e, ok := c.find(t, p.events)
			if !ok {
				return
			}
			want := c.native
			if custom {
				want = c.custom
			}
			code, _ := inspect.EventLastError(c.endpoint, want)
			if e.Outcome != want || e.Endpoint != c.endpoint || e.Status != c.status ||
				e.ClientUser != c.user || e.LastError != uint32(code) || e.Source != inspect.SourceSquidLog {
				t.Errorf("event %+v\nwant outcome %s, endpoint %s, status %d, user %q, lasterror %d",
					e, want, c.endpoint, c.status, c.user, code)
			}
			if !strings.HasPrefix(e.Detail, "squid: ") {
				t.Errorf("detail %q does not quote Squid's tags", e.Detail)
			}
			// Squid logs at the end; the event's time is the start.
			end := e.Time.Add(time.Duration(e.DurationMS) * time.Millisecond)
			if e.Time.Before(w.begin.Add(-time.Second)) || end.After(time.Now()) {
				t.Errorf("time %v (+%vms) is outside the test's run from %v", e.Time, e.DurationMS, w.begin)
			}
		})
	}
}

// caseAgreesWithServe compares the event of each case from serve with the
// one from each log.
func (w *squidWorld) caseAgreesWithServe(t *testing.T) {
	natives := w.parse(t, squidlog.Config{}, w.squid.NativeLog).events
	customs := w.parse(t, squidlog.Config{Format: squidlog.FormatCustom,
		LogFormat: squidLogFormat}, w.squid.CustomLog).events

	for _, c := range w.cases {
		if c.serve == "" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			s, ok := w.serve.events[c.name]
			if !ok {
				t.Fatal("serve stored no event for the case")
			}
			code, _ := inspect.EventLastError(c.endpoint, c.serve)
			if s.Outcome != c.serve || s.Endpoint != c.endpoint || s.LastError != uint32(code) {
				t.Errorf("serve: outcome %s, endpoint %s, lasterror %d; want %s, %s, %d (event %+v)",
					s.Outcome, s.Endpoint, s.LastError, c.serve, c.endpoint, code, s)
			}
			for _, sq := range []struct {
				name   string
				events []inspect.Event
				want   inspect.Outcome
			}{{logNative, natives, c.native}, {logCustom, customs, c.custom}} {
				e, ok := c.find(t, sq.events)
				if !ok {
					continue
				}
				// Where the outcomes differ, each event's lasterror follows
				// its own outcome (parse_* and the check above hold them to
				// it), and may differ too.
				if e.Endpoint != s.Endpoint || e.Outcome == s.Outcome && e.LastError != s.LastError {
					t.Errorf("%s log: endpoint %s, lasterror %d; serve: %s, %d",
						sq.name, e.Endpoint, e.LastError, s.Endpoint, s.LastError)
				}
				if e.Outcome != s.Outcome && e.Outcome != sq.want {
					t.Errorf("%s log: outcome %s, serve %s", sq.name, e.Outcome, s.Outcome)
				}
				if e.Outcome != s.Outcome {
					t.Logf("%s log says %s where serve says %s: %s", sq.name, e.Outcome, s.Outcome, e.Detail)
				}
			}
		})
	}
}

// caseTail runs `tetrascope tail --from-start` on the log called name and
// checks that the API holds exactly the events the parser makes of it, and
// that the report on tail's database agrees with the one on serve's; then
// that a line appended later is followed, and that a restart on the same
// database reads only what is new.
func (w *squidWorld) caseTail(t *testing.T, name string, cfg squidlog.Config, path string,
	args ...string) {
	// A copy, so that appending does not touch Squid's own log.
	log := filepath.Join(t.TempDir(), filepath.Base(path))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(log, b, 0o644); err != nil {
		t.Fatal(err)
	}
	want := w.parse(t, cfg, log).events

	p := startTail(t, serveConfig{Sensor: "e2e"}, append(append([]string{"--from-start"}, args...), log)...)
	api := newAPIClient(p.UIAddr())
	stored := 0
	for _, c := range w.cases {
		e, ok := c.find(t, want)
		if !ok {
			continue
		}
		if !e.Stored(false) {
			continue
		}
		stored++
		got, err := api.WaitEvent(url.Values{"limit": {"1000"}}, c.match, eventWait)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		for _, pr := range checkEventJSON(got.Raw) {
			t.Errorf("%s: event %s: %s", c.name, got.Raw, pr)
		}
		g := got.Event
		if g.Sensor != "e2e" || g.ID <= 0 {
			t.Errorf("%s: sensor %q, id %d; want e2e and a positive id", c.name, g.Sensor, g.ID)
		}
		g.ID, g.Sensor, g.Diagnosis = 0, "", ""
		if !g.Time.Equal(e.Time) {
			t.Errorf("%s: time %v, want %v", c.name, g.Time, e.Time)
		}
		g.Time = e.Time
		if g != e {
			t.Errorf("%s: stored\n %+v\nwant what the parser reads\n %+v", c.name, g, e)
		}
	}
	w.waitCount(t, api, stored)
	t.Run("report", func(t *testing.T) {
		w.compareReports(t, name, w.report(t, name, p.cfg.DB, w.squidSpan))
	})

	// Follow: a line appended while tail runs (the success line again).
	success := w.lineOf(t, log, cfg, w.cases[0].match)
	appendLine(t, log, success)
	all := w.waitCount(t, api, stored+1)
	maxID := int64(0)
	for _, e := range all {
		maxID = max(maxID, e.ID)
	}

	// Resume: stopped, one more line, started again without --from-start
	// on the same database: only the new line is read.
	p.Stop()
	appendLine(t, log, success)
	if err := startTailProc(p, append(args, log)...); err != nil {
		t.Fatal(err)
	}
	all = w.waitCount(t, api, stored+2)
	for _, e := range all {
		if e.ID > maxID && !w.cases[0].match(&e.Event) {
			t.Errorf("after the restart, unexpected event %s", e.Raw)
		}
	}
	time.Sleep(500 * time.Millisecond) // anything read twice would show by now
	if n := len(w.events(t, api)); n != stored+2 {
		t.Errorf("%d events after the restart, want %d: lines were read twice", n, stored+2)
	}
}

// lineOf returns the log line whose event matches.
func (w *squidWorld) lineOf(t *testing.T, path string, cfg squidlog.Config,
	match func(*inspect.Event) bool) string {
	t.Helper()
	cfg.Catalog = defaultCatalog(t)
	p, err := squidlog.NewParser(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if ev, err := p.Parse([]byte(l)); err == nil && match(&ev) {
			return l
		}
	}
	t.Fatalf("no line in %s matches", path)
	return ""
}

func appendLine(t *testing.T, path, line string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		t.Fatal(err)
	}
}

func (w *squidWorld) events(t *testing.T, api *apiClient) []apiEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	all, err := api.Events(ctx, url.Values{"limit": {"1000"}})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// waitCount waits until the API holds n events and returns them; more
// than n is an error.
func (w *squidWorld) waitCount(t *testing.T, api *apiClient, n int) []apiEvent {
	t.Helper()
	var all []apiEvent
	waitFor(eventWait, 100*time.Millisecond, func() bool {
		all = w.events(t, api)
		return len(all) >= n
	})
	if len(all) != n {
		var lines []string
		for _, e := range all {
			lines = append(lines, strconv.FormatInt(e.ID, 10)+" "+string(e.Raw))
		}
		t.Fatalf("the API holds %d events, want %d:\n%s", len(all), n, strings.Join(lines, "\n"))
	}
	return all
}
