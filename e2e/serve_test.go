package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/tetrascope/tetrascope/inspect"
)

// The cases of the outside contract, run through one `tetrascope serve`.
// Each case makes one connection or request, finds its event in
// /api/v1/events by who and where (never by outcome, so that a wrong
// outcome shows as such), checks the fields, and checks that the stream
// announced it as "open" and then "event" with the same id. At the end the
// binary is restarted on the same database and every event must still be
// there.

const (
	// lasterrorDownload is -2109, "connected to the proxy, download
	// failed", as a connector records it.
	lasterrorDownload = uint32(inspect.LastErrorDownloadFailed)
	// deniedClient is a loopback address outside --allow-clients.
	deniedClient = "127.0.0.3"
)

// world is everything one TestServe run sets up.
type world struct {
	pki *testPKI
	dns *dnsServer

	// One TLS server per case, so that (host, port) names a case.
	download, reset, tls12Reject, tls13Reject, goReject, byteHello, splitHello *tlsServer

	rev         *revocationServer
	refusedPort int // nothing listens there; allowed
	deniedPort  int // not in --allow-ports

	serve  *serveProc
	api    *apiClient
	stream *streamRecorder
	begin  time.Time

	mu   sync.Mutex
	seen map[int64]inspect.Outcome // every event a case checked
}

func TestServe(t *testing.T) {
	needBinary(t)
	requireTool(t, "curl")

	w := newWorld(t)

	t.Run("success", w.caseSuccess)
	t.Run("dns_failure", w.caseNXDOMAIN)
	t.Run("connect_refused", w.caseRefused)
	t.Run("download_aborted_by_reset", w.caseReset)
	t.Run("tls_aborted_tls12_unknown_ca", w.caseTLS12Reject)
	t.Run("tls_aborted_tls13_curl", w.caseTLS13RejectCurl)
	t.Run("tls_aborted_tls13_encrypted_alert", w.caseTLS13RejectGo)
	t.Run("sni_hello_byte_at_a_time", w.caseHelloByteAtATime)
	t.Run("sni_hello_in_three_records", w.caseHelloSplitRecords)
	t.Run("revocation_crl_404", w.caseCRLMissing)
	t.Run("revocation_crl_ok", w.caseCRLGood)
	t.Run("revocation_ocsp_by_form", w.caseOCSP)
	t.Run("denied_client", w.caseDeniedClient)
	t.Run("denied_port", w.caseDeniedPort)
	t.Run("bad_request", w.caseBadRequest)
	t.Run("restart_keeps_events", w.caseRestart)
}

// requireLoopbackAlias checks that the test can use addr as a source
// address (any 127/8 address on Linux; macOS has only 127.0.0.1 unless
// aliased).
func requireLoopbackAlias(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp4", addr+":0")
	if err == nil {
		ln.Close()
		return
	}
	if inCI() {
		t.Fatalf("loopback address %s is required in CI: %v", addr, err)
	}
	t.Skipf("loopback address %s not usable (%v); on macOS: sudo ifconfig lo0 alias %s", addr, err, addr)
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{begin: time.Now(), seen: map[int64]inspect.Outcome{}}
	w.pki = newPKI(t, t.TempDir())
	w.dns = startDNS(t, []string{hostTetraAPJC}, []string{hostTetraEU})

	w.download = startTLSServer(t, w.pki, tlsServerOptions{})
	w.reset = startTLSServer(t, w.pki, tlsServerOptions{ResetAfter: bodySize / 4})
	w.tls12Reject = startTLSServer(t, w.pki, tlsServerOptions{MaxVersion: tls.VersionTLS12})
	w.tls13Reject = startTLSServer(t, w.pki, tlsServerOptions{})
	w.goReject = startTLSServer(t, w.pki, tlsServerOptions{})
	w.byteHello = startTLSServer(t, w.pki, tlsServerOptions{})
	w.splitHello = startTLSServer(t, w.pki, tlsServerOptions{})
	w.rev = startRevocationServer(t, w.pki)
	w.refusedPort = freePort(t)

	allowed := []int{w.refusedPort}
	for _, s := range []*tlsServer{w.download, w.reset, w.tls12Reject, w.tls13Reject, w.goReject,
		w.byteHello, w.splitHello} {
		allowed = append(allowed, s.Port)
	}
	w.deniedPort = 8443
	for slices.Contains(allowed, w.deniedPort) {
		w.deniedPort++
	}

	w.serve = startServe(t, serveConfig{
		DNS:          []string{w.dns.Addr},
		Resolve:      []string{hostTetra + "=127.0.0.1", hostCRL + "=127.0.0.1", hostOCSP + "=127.0.0.1"},
		AllowPorts:   allowed,
		AllowClients: []string{"127.0.0.1/32"},
	})
	w.api = newAPIClient(w.serve.UIAddr())
	w.checkHealthz(t)
	w.openStream(t)
	return w
}

func (w *world) checkHealthz(t *testing.T) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + w.serve.UIAddr() + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(bytes.TrimSpace(b)) != "ok" {
		t.Errorf("GET /healthz = %s %q, want 200 ok", resp.Status, b)
	}
}

// openStream subscribes to the stream and waits for the first stats
// message, which shows that the subscription is live before any case runs.
func (w *world) openStream(t *testing.T) {
	t.Helper()
	s, err := dialStream(w.serve.UIAddr(), url.Values{"backfill": {"0"}})
	if err != nil {
		t.Fatal(err)
	}
	w.stream = s
	t.Cleanup(s.Close)
	if !s.WaitFor(eventWait, func(m []streamMsg) bool { return hasType(m, "stats") }) {
		msgs, rerr := s.Messages()
		t.Errorf("no stats message on the stream within %v (%d messages, read error %v)",
			eventWait, len(msgs), rerr)
	}
}

// expect finds the event of one case: the first one matching, in
// /api/v1/events?host=host (all hosts when host is empty). It checks what
// every event must satisfy, that the stream sent "open" then "event" for
// its id, and records the id for the restart check.
func (w *world) expect(t *testing.T, host string, match func(*inspect.Event) bool) inspect.Event {
	t.Helper()
	q := url.Values{"limit": {"1000"}}
	if host != "" {
		q.Set("host", host)
	}
	got, err := w.api.WaitEvent(q, match, eventWait)
	if err != nil {
		t.Fatal(err)
	}
	e := got.Event

	for _, p := range checkEventJSON(got.Raw) {
		t.Errorf("event %s: %s", got.Raw, p)
	}
	if e.Source != inspect.SourceProxy || e.Sensor != "e2e" {
		t.Errorf("source, sensor = %q, %q; want proxy, e2e", e.Source, e.Sensor)
	}
	if d := time.Since(e.Time); d < -time.Minute || e.Time.Before(w.begin.Add(-time.Minute)) {
		t.Errorf("time %v is not around the test's run (%v)", e.Time, w.begin)
	}
	if e.DurationMS < 0 {
		t.Errorf("duration_ms = %v, want >= 0", e.DurationMS)
	}
	if e.ClientUser != "" {
		t.Errorf("client_user = %q, want empty (no authentication)", e.ClientUser)
	}
	if e.Method == http.MethodConnect && e.URL != "" {
		t.Errorf("url = %q on a CONNECT, want empty (url is for plain HTTP)", e.URL)
	}

	w.expectStream(t, e)
	w.mu.Lock()
	w.seen[e.ID] = e.Outcome
	w.mu.Unlock()
	return e
}

// expectStream checks that the stream sent "open" and later "event" for
// e.ID, and that the final message agrees with the API.
func (w *world) expectStream(t *testing.T, e inspect.Event) {
	t.Helper()
	ok := w.stream.WaitFor(eventWait, func(m []streamMsg) bool {
		_, _, ok := openThenEvent(m, e.ID)
		return ok
	})
	msgs, rerr := w.stream.Messages()
	if !ok {
		var ofID []string
		for _, m := range msgs {
			if m.Event.ID == e.ID {
				ofID = append(ofID, string(m.Raw))
			}
		}
		t.Errorf("stream: no \"open\" then \"event\" for id %d within %v (read error %v); "+
			"messages for it: %q",
			e.ID, eventWait, rerr, ofID)
		return
	}
	open, end, _ := openThenEvent(msgs, e.ID)
	if open.Event.Outcome != "" {
		t.Errorf("stream open message has outcome %q, want none yet: %s", open.Event.Outcome, open.Raw)
	}
	if open.Event.ClientIP != e.ClientIP || (open.Event.Host != "" && open.Event.Host != e.Host) {
		t.Errorf("stream open message %s disagrees with the event (client %s, host %s)",
			open.Raw, e.ClientIP, e.Host)
	}
	for _, p := range checkEventJSON(end.RawEvent) {
		t.Errorf("stream event %s: %s", end.RawEvent, p)
	}
	se := end.Event
	if se.Outcome != e.Outcome || se.Status != e.Status || se.Host != e.Host ||
		se.LastError != e.LastError {
		t.Errorf("stream event %s disagrees with the API's outcome %s, status %d, host %s, lasterror %d",
			end.RawEvent, e.Outcome, e.Status, e.Host, e.LastError)
	}
}

// connectTo matches the CONNECT event of one client to host:port.
func connectTo(client, host string, port int) func(*inspect.Event) bool {
	return func(e *inspect.Event) bool {
		return e.Method == http.MethodConnect && e.ClientIP == client && e.Host == host && e.Port == port
	}
}

// want compares named fields and reports each difference.
func want(t *testing.T, e inspect.Event, fields map[string]any) {
	t.Helper()
	got := map[string]any{
		"method": e.Method, "host": e.Host, "port": e.Port, "url": e.URL, "sni": e.SNI,
		"endpoint": string(e.Endpoint), "outcome": string(e.Outcome), "status": e.Status,
		"upstream_status": e.UpstreamStatus, "close": string(e.Close), "tls_version": e.TLSVersion,
		"tls_alert": e.TLSAlert, "lasterror": e.LastError, "client_ip": e.ClientIP,
	}
	for name, w := range fields {
		g, ok := got[name]
		if !ok {
			t.Fatalf("want: unknown field %q", name)
		}
		if fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("%s = %v, want %v", name, g, w)
		}
	}
	if t.Failed() {
		t.Logf("event: %+v", e)
	}
}

func tetraURL(host string, port int) string {
	return fmt.Sprintf("https://%s:%d/defs.bin", host, port)
}

// 1. A definition download through the tunnel.
func (w *world) caseSuccess(t *testing.T) {
	r := runCurl(t, "-x", "http://"+w.serve.ProxyAddr(), "--cacert", w.pki.CAFile,
		tetraURL(hostTetra, w.download.Port))
	if r.Exit != 0 || r.ConnectCode != 200 || r.HTTPCode != 200 || r.SizeDown != bodySize {
		t.Errorf("%v; want CONNECT 200, GET 200, %d bytes", r, bodySize)
	}

	e := w.expect(t, hostTetra, connectTo("127.0.0.1", hostTetra, w.download.Port))
	want(t, e, map[string]any{
		"endpoint": "tetra", "outcome": "ok", "status": 200, "upstream_status": 0,
		"sni": hostTetra, "tls_version": "TLS 1.3", "tls_alert": "", "close": "client_fin",
		"lasterror": 0,
	})
	if e.BytesDown < bodySize || e.BytesUp <= 0 {
		t.Errorf("bytes_down, bytes_up = %d, %d; want >= %d, > 0", e.BytesDown, e.BytesUp, bodySize)
	}
}

// 2. The name does not resolve at the proxy's DNS server.
func (w *world) caseNXDOMAIN(t *testing.T) {
	r := runCurl(t, "-x", "http://"+w.serve.ProxyAddr(), "--cacert", w.pki.CAFile,
		tetraURL(hostTetraEU, w.download.Port))
	if r.Exit == 0 || r.ConnectCode != 502 {
		t.Errorf("%v; want the CONNECT answered 502", r)
	}

	e := w.expect(t, hostTetraEU, connectTo("127.0.0.1", hostTetraEU, w.download.Port))
	want(t, e, map[string]any{
		"endpoint": "tetra", "outcome": "dns_failure", "status": 502, "close": "", "sni": "",
		"tls_version": "", "lasterror": lasterrorDownload,
	})
	if w.dns.Queries(hostTetraEU) == 0 {
		t.Errorf("the proxy never asked the --dns server for %s", hostTetraEU)
	}
}

// 3. The name resolves (through --dns) to a port where nothing listens.
func (w *world) caseRefused(t *testing.T) {
	r := runCurl(t, "-x", "http://"+w.serve.ProxyAddr(), "--cacert", w.pki.CAFile,
		tetraURL(hostTetraAPJC, w.refusedPort))
	if r.Exit == 0 || r.ConnectCode != 502 {
		t.Errorf("%v; want the CONNECT answered 502", r)
	}

	e := w.expect(t, hostTetraAPJC, connectTo("127.0.0.1", hostTetraAPJC, w.refusedPort))
	want(t, e, map[string]any{
		"endpoint": "tetra", "outcome": "connect_refused", "status": 502, "close": "", "sni": "",
		"tls_version": "", "lasterror": lasterrorDownload,
	})
	if w.dns.Queries(hostTetraAPJC) == 0 {
		t.Errorf("the proxy never asked the --dns server for %s", hostTetraAPJC)
	}
}

// 4. The server resets the connection after a quarter of the body.
func (w *world) caseReset(t *testing.T) {
	r := runCurl(t, "-x", "http://"+w.serve.ProxyAddr(), "--cacert", w.pki.CAFile,
		tetraURL(hostTetra, w.reset.Port))
	if r.Exit == 0 || r.ConnectCode != 200 {
		t.Errorf("%v; want the tunnel opened and the download failed", r)
	}

	e := w.expect(t, hostTetra, connectTo("127.0.0.1", hostTetra, w.reset.Port))
	want(t, e, map[string]any{
		"endpoint": "tetra", "outcome": "download_aborted", "status": 200, "close": "server_rst",
		"sni": hostTetra, "lasterror": lasterrorDownload,
	})
	if e.BytesDown <= 0 || e.BytesDown >= bodySize {
		t.Errorf("bytes_down = %d, want between 0 and %d", e.BytesDown, bodySize)
	}
}

// 5. curl rejects the certificate on TLS 1.2: the unknown_ca alert crosses
// the tunnel in clear.
func (w *world) caseTLS12Reject(t *testing.T) {
	r := runCurl(t, "-x", "http://"+w.serve.ProxyAddr(), "--tlsv1.2", "--tls-max", "1.2",
		tetraURL(hostTetra, w.tls12Reject.Port))
	if r.Exit != 60 || r.ConnectCode != 200 {
		t.Errorf("%v; want the tunnel opened and curl exit 60 (certificate not trusted)", r)
	}
	hs := w.tls12Reject.WaitHandshakes(1, eventWait)
	if len(hs) != 1 || hs[0].ClearAlert != "unknown_ca" {
		t.Errorf("the server saw %+v, want one handshake ended by unknown_ca in clear", hs)
	}

	e := w.expect(t, hostTetra, connectTo("127.0.0.1", hostTetra, w.tls12Reject.Port))
	want(t, e, map[string]any{
		"endpoint": "tetra", "outcome": "tls_aborted", "status": 200, "sni": hostTetra,
		"tls_version": "TLS 1.2", "tls_alert": "unknown_ca", "lasterror": lasterrorDownload,
	})
}

// 6. curl rejects the certificate on TLS 1.3. OpenSSL (3.0 at least) sends
// this alert before switching to its handshake keys, so it crosses in
// clear; the event must name what crossed in clear, which the server's
// record tap saw.
func (w *world) caseTLS13RejectCurl(t *testing.T) {
	r := runCurl(t, "-x", "http://"+w.serve.ProxyAddr(), tetraURL(hostTetra, w.tls13Reject.Port))
	if r.Exit != 60 || r.ConnectCode != 200 {
		t.Errorf("%v; want the tunnel opened and curl exit 60 (certificate not trusted)", r)
	}
	hs := w.tls13Reject.WaitHandshakes(1, eventWait)
	if len(hs) != 1 || hs[0].Err == nil {
		t.Fatalf("the server saw %+v, want one failed handshake", hs)
	}
	t.Logf("alert in clear from this curl on TLS 1.3: %q", hs[0].ClearAlert)

	e := w.expect(t, hostTetra, connectTo("127.0.0.1", hostTetra, w.tls13Reject.Port))
	want(t, e, map[string]any{
		"endpoint": "tetra", "outcome": "tls_aborted", "status": 200, "sni": hostTetra,
		"tls_version": "TLS 1.3", "tls_alert": hs[0].ClearAlert, "lasterror": lasterrorDownload,
	})
}

// 6b. A Go client rejects the certificate on TLS 1.3: its alert is
// encrypted, so tls_alert stays empty and the abort is inferred.
func (w *world) caseTLS13RejectGo(t *testing.T) {
	target := net.JoinHostPort(hostTetra, strconv.Itoa(w.goReject.Port))
	c, status, err := dialTunnel(w.serve.ProxyAddr(), target)
	if err != nil || status != 200 {
		t.Fatalf("CONNECT %s: status %d, error %v", target, status, err)
	}
	if _, _, _, err := fetchOverTLS(c, hostTetra, x509.NewCertPool(), "/defs.bin", nil); err == nil {
		t.Fatal("the handshake succeeded with no trusted roots")
	}
	if hs := w.goReject.WaitHandshakes(1, eventWait); len(hs) != 1 || hs[0].ClearAlert != "" {
		t.Errorf("the server saw %+v, want one handshake ended by an encrypted alert", hs)
	}

	e := w.expect(t, hostTetra, connectTo("127.0.0.1", hostTetra, w.goReject.Port))
	want(t, e, map[string]any{
		"endpoint": "tetra", "outcome": "tls_aborted", "status": 200, "sni": hostTetra,
		"tls_version": "TLS 1.3", "tls_alert": "", "lasterror": lasterrorDownload,
	})
}

// 7. The ClientHello arrives one byte per TCP segment.
func (w *world) caseHelloByteAtATime(t *testing.T) {
	target := net.JoinHostPort(hostTetra, strconv.Itoa(w.byteHello.Port))
	c, status, err := dialTunnel(w.serve.ProxyAddr(), target)
	if err != nil || status != 200 {
		t.Fatalf("CONNECT %s: status %d, error %v", target, status, err)
	}
	sc := &slowConn{Conn: c}
	_, code, b, err := fetchOverTLS(sc, hostTetra, w.pki.RootsCA, "/defs.bin", sc.Fast)
	if err != nil || code != 200 || len(b) != bodySize {
		t.Errorf("download: status %d, %d bytes, error %v; want 200, %d bytes",
			code, len(b), err, bodySize)
	}

	e := w.expect(t, hostTetra, connectTo("127.0.0.1", hostTetra, w.byteHello.Port))
	want(t, e, map[string]any{
		"endpoint": "tetra", "outcome": "ok", "status": 200, "sni": hostTetra,
		"tls_version": "TLS 1.3", "close": "client_fin", "lasterror": 0,
	})
}

// 7b. The ClientHello arrives in three TLS records.
func (w *world) caseHelloSplitRecords(t *testing.T) {
	target := net.JoinHostPort(hostTetra, strconv.Itoa(w.splitHello.Port))
	c, status, err := dialTunnel(w.serve.ProxyAddr(), target)
	if err != nil || status != 200 {
		t.Fatalf("CONNECT %s: status %d, error %v", target, status, err)
	}
	sc := &splitHelloConn{Conn: c, parts: 3}
	_, code, b, err := fetchOverTLS(sc, hostTetra, w.pki.RootsCA, "/defs.bin", nil)
	if err != nil || code != 200 || len(b) != bodySize || sc.records != 3 {
		t.Errorf("download: status %d, %d bytes, %d hello records, error %v; want 200, %d bytes, 3",
			code, len(b), sc.records, err, bodySize)
	}

	e := w.expect(t, hostTetra, connectTo("127.0.0.1", hostTetra, w.splitHello.Port))
	want(t, e, map[string]any{
		"endpoint": "tetra", "outcome": "ok", "status": 200, "sni": hostTetra,
		"tls_version": "TLS 1.3", "close": "client_fin", "lasterror": 0,
	})
}

// plainTo matches the plain-HTTP event of a request for u.
func plainTo(method, u string) func(*inspect.Event) bool {
	return func(e *inspect.Event) bool {
		return e.Method == method && e.URL == u && e.ClientIP == "127.0.0.1"
	}
}

// 8. A CRL the revocation server does not have.
func (w *world) caseCRLMissing(t *testing.T) {
	u := fmt.Sprintf("http://%s:%d/missing.crl", hostCRL, w.rev.Port)
	r := runCurl(t, "-x", "http://"+w.serve.ProxyAddr(), u)
	if r.Exit != 0 || r.HTTPCode != 404 {
		t.Errorf("%v; want the origin's 404", r)
	}
	w.expectOriginSaw(t, "GET", hostCRL, "/missing.crl")

	e := w.expect(t, hostCRL, plainTo("GET", u))
	want(t, e, map[string]any{
		"host": hostCRL, "port": w.rev.Port, "url": u, "endpoint": "revocation", "outcome": "http_error",
		"status": 404, "upstream_status": 404, "sni": "", "tls_version": "",
		"lasterror": lasterrorDownload,
	})
}

// 8. A CRL fetched whole.
func (w *world) caseCRLGood(t *testing.T) {
	u := fmt.Sprintf("http://%s:%d/good.crl", hostCRL, w.rev.Port)
	out := filepath.Join(t.TempDir(), "good.crl")
	r := runCurl(t, "-x", "http://"+w.serve.ProxyAddr(), "-o", out, u)
	if r.Exit != 0 || r.HTTPCode != 200 {
		t.Errorf("%v; want 200", r)
	}
	if b, _ := os.ReadFile(out); !bytes.Equal(b, w.pki.CRL) {
		t.Errorf("the CRL came through changed: %d bytes, want %d", len(b), len(w.pki.CRL))
	}

	e := w.expect(t, hostCRL, plainTo("GET", u))
	want(t, e, map[string]any{
		"host": hostCRL, "port": w.rev.Port, "url": u, "endpoint": "revocation", "outcome": "ok",
		"status": 200, "upstream_status": 200, "lasterror": 0,
	})
	if e.BytesDown != int64(len(w.pki.CRL)) {
		t.Errorf("bytes_down = %d, want the CRL's %d (the body)", e.BytesDown, len(w.pki.CRL))
	}
}

// 8. An OCSP query to a host the catalog does not know: revocation by its
// form.
func (w *world) caseOCSP(t *testing.T) {
	u := fmt.Sprintf("http://%s:%d/", hostOCSP, w.rev.Port)
	dir := t.TempDir()
	reqFile, out := filepath.Join(dir, "req.der"), filepath.Join(dir, "resp.der")
	if err := os.WriteFile(reqFile, w.pki.OCSPRequest(t), 0o644); err != nil {
		t.Fatal(err)
	}
	r := runCurl(t, "-x", "http://"+w.serve.ProxyAddr(), "-o", out,
		"-H", "Content-Type: application/ocsp-request", "--data-binary", "@"+reqFile, u)
	if r.Exit != 0 || r.HTTPCode != 200 {
		t.Errorf("%v; want 200", r)
	}
	der, _ := os.ReadFile(out)
	resp, err := ocsp.ParseResponseForCert(der, w.pki.LeafX, w.pki.CA)
	if err != nil || resp.Status != ocsp.Good {
		t.Errorf("OCSP response through the proxy: %v; want a good status", err)
	}

	e := w.expect(t, hostOCSP, plainTo("POST", u))
	want(t, e, map[string]any{
		"host": hostOCSP, "port": w.rev.Port, "url": u, "endpoint": "revocation", "outcome": "ok",
		"status": 200, "upstream_status": 200, "lasterror": 0,
	})
	if e.BytesDown != int64(len(der)) || e.BytesUp <= 0 {
		t.Errorf("bytes_down, bytes_up = %d, %d; want the response's %d, > 0",
			e.BytesDown, e.BytesUp, len(der))
	}
}

// expectOriginSaw checks that the revocation server got the request, with
// the Host the client asked for.
func (w *world) expectOriginSaw(t *testing.T, method, host, path string) {
	t.Helper()
	wantHost := net.JoinHostPort(host, strconv.Itoa(w.rev.Port))
	for _, r := range w.rev.Requests() {
		if r.Method == method && r.Path == path && r.Host == wantHost {
			return
		}
	}
	t.Errorf("the origin did not get %s %s with Host %s; it got %+v",
		method, path, wantHost, w.rev.Requests())
}

// 9. A client outside --allow-clients.
func (w *world) caseDeniedClient(t *testing.T) {
	requireLoopbackAlias(t, deniedClient)
	r := runCurl(t, "--interface", deniedClient, "-x", "http://"+w.serve.ProxyAddr(),
		"--cacert", w.pki.CAFile, tetraURL(hostTetra, w.download.Port))
	if r.Exit == 0 || r.ConnectCode != 403 {
		t.Errorf("%v; want the CONNECT answered 403", r)
	}

	e := w.expect(t, hostTetra, connectTo(deniedClient, hostTetra, w.download.Port))
	want(t, e, map[string]any{
		"client_ip": deniedClient, "endpoint": "tetra", "outcome": "denied", "status": 403, "close": "",
		"lasterror": lasterrorDownload,
	})
}

// 10. A port outside --allow-ports.
func (w *world) caseDeniedPort(t *testing.T) {
	r := runCurl(t, "-x", "http://"+w.serve.ProxyAddr(), "--cacert", w.pki.CAFile,
		tetraURL(hostTetra, w.deniedPort))
	if r.Exit == 0 || r.ConnectCode != 403 {
		t.Errorf("%v; want the CONNECT answered 403", r)
	}

	e := w.expect(t, hostTetra, connectTo("127.0.0.1", hostTetra, w.deniedPort))
	want(t, e, map[string]any{
		"endpoint": "tetra", "outcome": "denied", "status": 403, "close": "",
		"lasterror": lasterrorDownload,
	})
}

var status400 = regexp.MustCompile(`^HTTP/1\.[01] 400 `)

// 11. Bytes that are not HTTP.
func (w *world) caseBadRequest(t *testing.T) {
	// Every earlier case's event is already in; this one is newer.
	var before int64
	w.mu.Lock()
	for id := range w.seen {
		before = max(before, id)
	}
	w.mu.Unlock()

	line, err := rawExchange(w.serve.ProxyAddr(), "THIS IS NOT HTTP\r\n\r\n")
	if err != nil || !status400.MatchString(line) {
		t.Errorf("answer %q, error %v; want HTTP/1.x 400", line, err)
	}

	e := w.expect(t, "", func(e *inspect.Event) bool {
		return e.ID > before && e.ClientIP == "127.0.0.1" && e.Host == ""
	})
	want(t, e, map[string]any{
		"outcome": "bad_request", "status": 400, "endpoint": "other", "lasterror": 0,
	})
}

// 12. After a restart on the same database every event is still there,
// unchanged, and new ids continue above the old ones.
func (w *world) caseRestart(t *testing.T) {
	w.mu.Lock()
	seen := make(map[int64]inspect.Outcome, len(w.seen))
	var maxID int64
	for id, o := range w.seen {
		seen[id] = o
		maxID = max(maxID, id)
	}
	w.mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("no case recorded an event")
	}

	w.stream.Close()
	w.serve.Restart()

	events, err := w.api.Events(t.Context(), url.Values{"limit": {"10000"}})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[int64]inspect.Event{}
	for _, e := range events {
		byID[e.ID] = e.Event
	}
	for id, o := range seen {
		e, ok := byID[id]
		switch {
		case !ok:
			t.Errorf("event %d (%s) is gone after the restart", id, o)
		case e.Outcome != o:
			t.Errorf("event %d: outcome %s after the restart, %s before", id, e.Outcome, o)
		}
	}
	for i := 1; i < len(events); i++ {
		if events[i-1].Time.Before(events[i].Time) {
			t.Errorf("events not newest first: id %d (%v) before id %d (%v)",
				events[i-1].ID, events[i-1].Time, events[i].ID, events[i].Time)
			break
		}
	}

	r := runCurl(t, "-x", "http://"+w.serve.ProxyAddr(), "--cacert", w.pki.CAFile,
		tetraURL(hostTetra, w.download.Port))
	if r.Exit != 0 {
		t.Errorf("%v; want a download after the restart", r)
	}
	e, err := w.api.WaitEvent(url.Values{"host": {hostTetra}, "limit": {"1000"}},
		func(e *inspect.Event) bool {
			_, old := seen[e.ID]
			return !old && connectTo("127.0.0.1", hostTetra, w.download.Port)(e)
		}, eventWait)
	if err != nil {
		t.Fatal(err)
	}
	if e.ID <= maxID {
		t.Errorf("first id after the restart = %d, want above the old ones (max %d)", e.ID, maxID)
	}
}
