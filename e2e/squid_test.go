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
// bytes that are not HTTP). Then:
//
//   - parse_*: inspect/squidlog reads each log; every case gives the
//     expected event. This needs no tetrascope binary.
//   - agrees_with_serve: the same traffic through `tetrascope serve` gives
//     the same endpoint and lasterror per case, and the same outcome where
//     the log can tell (the differences are listed per case).
//   - tail_*: `tetrascope tail` on each log stores exactly those events,
//     follows a line appended later, and resumes after a restart without
//     reading anything twice.
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
	// send makes the request through the proxy at addr: Squid, or
	// tetrascope serve, which wants credentials for every request and
	// answers 502 where Squid 5 says 500 or 503.
	send func(t *testing.T, addr string, serve bool)
	// match finds the case's event (by who and where, never by outcome).
	match func(e *inspect.Event) bool

	endpoint inspect.Endpoint
	status   int    // from Squid
	user     string // client_user Squid logs
	native   inspect.Outcome
	custom   inspect.Outcome
	// serve is what `tetrascope serve` says for the same request; empty
	// when serve has no equivalent (a policy only Squid has).
	serve inspect.Outcome
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
}

func TestSquid(t *testing.T) {
	bin := requireSquid(t)
	requireTool(t, "curl")
	w := newSquidWorld(t, bin)

	// The traffic, before any subtest, so that each can run alone.
	for _, c := range w.cases {
		c.send(t, w.squid.Addr, false)
	}
	// Squid logs a tunnel when it closes and flushes at shutdown: the
	// logs are complete once it stopped.
	w.squid.Stop()
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
		w.caseTail(t, squidlog.Config{}, w.squid.NativeLog)
	})
	t.Run("tail_custom", func(t *testing.T) {
		w.caseTail(t, squidlog.Config{Format: squidlog.FormatCustom, LogFormat: squidLogFormat},
			w.squid.CustomLog, "--format", "custom", "--logformat", squidLogFormat)
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
	w.squid = startSquid(t, bin, squidConfig{
		DNS:        w.dns.Addr,
		Htpasswd:   w.htpasswd,
		SSLPorts:   []int{w.download.Port, w.refused},
		AuthDomain: hostTetraAPJC,
		DenyDomain: deniedDomain,
	})
	return w
}

// connectTarget matches the CONNECT of one client to host:port.
func connectTarget(host string, port, status int, user string) func(*inspect.Event) bool {
	return func(e *inspect.Event) bool {
		return e.Method == http.MethodConnect && e.ClientIP == "127.0.0.1" && e.Host == host &&
			e.Port == port && (status == 0 || e.Status == status) && (user == "-" || e.ClientUser == user)
	}
}

func (w *squidWorld) makeCases() []squidCase {
	creds := []string{"-U", squidUser + ":" + squidPassword}
	// via returns the proxy arguments, with the right credentials for
	// serve unless the case brings its own.
	via := func(addr string, serve bool, own ...string) []string {
		args := []string{"-x", "http://" + addr}
		if serve && own == nil {
			args = append(args, creds...)
		}
		return append(args, own...)
	}
	tunnel := func(host string, port int, wantConnect int, own ...string) func(*testing.T, string, bool) {
		return func(t *testing.T, addr string, serve bool) {
			want := wantConnect
			if serve && want >= 500 {
				want = http.StatusBadGateway
			}
			args := append(via(addr, serve, own...), "--cacert", w.pki.CAFile, tetraURL(host, port))
			if r := runCurl(t, args...); r.ConnectCode != want {
				t.Errorf("%v; want the CONNECT answered %d", r, want)
			}
		}
	}
	noCreds := []string{}
	slowURL := fmt.Sprintf("http://%s:%d/defs.bin", hostTetra, w.slow)
	crlURL := fmt.Sprintf("http://%s:%d/missing.crl", hostCRL, w.rev.Port)

	return []squidCase{
		{
			name: "success", send: tunnel(hostTetra, w.download.Port, 200),
			match:    connectTarget(hostTetra, w.download.Port, 0, "-"),
			endpoint: inspect.EndpointTetra, status: 200,
			native: inspect.OK, custom: inspect.OK, serve: inspect.OK,
		},
		{
			// The first 407, without credentials: a normal challenge.
			name: "challenge", send: tunnel(hostTetraAPJC, w.download.Port, 407, noCreds...),
			match:    connectTarget(hostTetraAPJC, w.download.Port, 407, ""),
			endpoint: inspect.EndpointTetra, status: 407,
			native: inspect.AuthRequired, custom: inspect.AuthRequired, serve: inspect.AuthRequired,
		},
		{
			name:     "wrong_credentials",
			send:     tunnel(hostTetraAPJC, w.download.Port, 407, "-U", squidUser+":wrong"),
			match:    connectTarget(hostTetraAPJC, w.download.Port, 407, squidUser),
			endpoint: inspect.EndpointTetra, status: 407, user: squidUser,
			native: inspect.AuthFailed, custom: inspect.AuthFailed, serve: inspect.AuthFailed,
		},
		{
			name: "right_credentials", send: tunnel(hostTetraAPJC, w.download.Port, 200, creds...),
			match:    connectTarget(hostTetraAPJC, w.download.Port, 200, squidUser),
			endpoint: inspect.EndpointTetra, status: 200, user: squidUser,
			native: inspect.OK, custom: inspect.OK, serve: inspect.OK,
		},
		{
			// serve has no domain policy: nothing to compare.
			name: "denied_domain", send: tunnel(deniedDomain, w.download.Port, 403),
			match:    connectTarget(deniedDomain, w.download.Port, 0, "-"),
			endpoint: inspect.EndpointOther, status: 403,
			native: inspect.Denied, custom: inspect.Denied,
		},
		{
			name: "denied_port", send: tunnel(hostTetra, w.denied, 403),
			match:    connectTarget(hostTetra, w.denied, 0, "-"),
			endpoint: inspect.EndpointTetra, status: 403,
			native: inspect.Denied, custom: inspect.Denied, serve: inspect.Denied,
		},
		{
			// Squid 5 answers 500 ERR_CANNOT_FORWARD: even %err_code
			// does not say DNS.
			name: "unresolvable", send: tunnel(hostTetraEU, w.download.Port, 500),
			match:    connectTarget(hostTetraEU, w.download.Port, 0, "-"),
			endpoint: inspect.EndpointTetra, status: 500,
			native: inspect.Unreachable, custom: inspect.Unreachable, serve: inspect.DNSFailure,
		},
		{
			// Only %err_code tells a refused connect from a DNS failure.
			name: "refused_port", send: tunnel(hostTetra, w.refused, 503),
			match:    connectTarget(hostTetra, w.refused, 0, "-"),
			endpoint: inspect.EndpointTetra, status: 503,
			native: inspect.Unreachable, custom: inspect.ConnectRefused, serve: inspect.ConnectRefused,
		},
		{
			// The client gives up after a second, mid-body.
			name: "aborted_download", send: func(t *testing.T, addr string, serve bool) {
				args := append(via(addr, serve), "--max-time", "1", slowURL)
				if r := runCurl(t, args...); r.Exit != 28 || r.HTTPCode != 200 || r.SizeDown <= 0 {
					t.Errorf("%v; want a timeout (exit 28) after part of a 200 body", r)
				}
			},
			match: func(e *inspect.Event) bool {
				return e.Method == http.MethodGet && e.URL == slowURL && e.ClientIP == "127.0.0.1"
			},
			endpoint: inspect.EndpointTetra, status: 200,
			native: inspect.DownloadAborted, custom: inspect.DownloadAborted, serve: inspect.DownloadAborted,
		},
		{
			name: "missing_crl", send: func(t *testing.T, addr string, serve bool) {
				if r := runCurl(t, append(via(addr, serve), crlURL)...); r.HTTPCode != 404 {
					t.Errorf("%v; want the origin's 404", r)
				}
			},
			match: func(e *inspect.Event) bool {
				return e.Method == http.MethodGet && e.URL == crlURL && e.ClientIP == "127.0.0.1"
			},
			endpoint: inspect.EndpointRevocation, status: 404,
			native: inspect.HTTPError, custom: inspect.HTTPError, serve: inspect.HTTPError,
		},
		{
			name: "bad_request", send: func(t *testing.T, addr string, _ bool) {
				line, err := rawExchange(addr, "THIS IS NOT HTTP\r\n\r\n")
				if err != nil || !status400.MatchString(line) {
					t.Errorf("answer %q, error %v; want HTTP/1.x 400", line, err)
				}
			},
			match: func(e *inspect.Event) bool {
				return e.Host == "" && e.Status == 400 && e.ClientIP == "127.0.0.1"
			},
			endpoint: inspect.EndpointOther, status: 400,
			native: inspect.BadRequest, custom: inspect.BadRequest, serve: inspect.BadRequest,
		},
	}
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

// caseAgreesWithServe sends the same traffic through `tetrascope serve`
// (with the same DNS server and, for every request, the same credentials
// rule: serve authenticates everything, so requests that Squid let through
// without credentials carry the right ones) and compares each case.
func (w *squidWorld) caseAgreesWithServe(t *testing.T) {
	natives := w.parse(t, squidlog.Config{}, w.squid.NativeLog).events
	customs := w.parse(t, squidlog.Config{Format: squidlog.FormatCustom,
		LogFormat: squidLogFormat}, w.squid.CustomLog).events

	p := newServeProc(t, needBinary(t), serveConfig{
		DNS:        []string{w.dns.Addr},
		AllowPorts: []int{w.download.Port, w.refused},
	}, "TETRASCOPE_AUTH_HTPASSWD="+w.htpasswd)
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	api := newAPIClient(p.UIAddr())

	for _, c := range w.cases {
		if c.serve == "" {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			c.send(t, p.ProxyAddr(), true)
			got, err := api.WaitEvent(url.Values{"limit": {"1000"}}, c.match, eventWait)
			if err != nil {
				t.Fatal(err)
			}
			s := got.Event
			if s.Outcome != c.serve {
				t.Errorf("serve: outcome %s, want %s (event %+v)", s.Outcome, c.serve, s)
			}
			for _, sq := range []struct {
				name   string
				events []inspect.Event
				want   inspect.Outcome
			}{{"native", natives, c.native}, {"custom", customs, c.custom}} {
				e, ok := c.find(t, sq.events)
				if !ok {
					continue
				}
				if e.Endpoint != s.Endpoint || e.LastError != s.LastError {
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

// caseTail runs `tetrascope tail --from-start` on one log and checks that
// the API holds exactly the events the parser makes of it; then that a
// line appended later is followed, and that a restart on the same database
// reads only what is new.
func (w *squidWorld) caseTail(t *testing.T, cfg squidlog.Config, path string, args ...string) {
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
