// Package probe runs, from the machine it is started on, the checks an
// admin would otherwise run by hand when endpoints fall behind on their TETRA
// definitions: name resolution, TCP to the proxy, proxy authentication, the
// CONNECT, the TLS handshake, the certificate chain, the revocation servers
// the certificate names, and an HTTP request over the tunnel. Each check is
// a Step with its timing; a failed step says what to do and which lasterror
// an endpoint on the same path would most likely record.
//
// Steps run in order and stop where a later one cannot run without the
// earlier (no tunnel, no handshake); such steps are left out of the Report.
// The certificate and revocation checks do not stop the others, so one run
// shows every problem on the path at once.
package probe

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/resolve"
)

// The step names, in the order a Report lists them (DESIGN.md, "Output
// formats").
const (
	StepDNS         = "dns"
	StepProxyTCP    = "proxy_tcp"
	StepProxyAuth   = "proxy_auth"
	StepConnect     = "connect"
	StepTLS         = "tls"
	StepCertificate = "certificate"
	StepRevocation  = "revocation"
	StepHTTP        = "http"
)

// stepOrder ranks the step names for sorting a Report.
var stepOrder = map[string]int{
	StepDNS: 0, StepProxyTCP: 1, StepProxyAuth: 2, StepConnect: 3,
	StepTLS: 4, StepCertificate: 5, StepRevocation: 6, StepHTTP: 7,
}

// DefaultHost is the North American definition server, probed when
// Config.Host is empty.
const DefaultHost = "tetra-defs.amp.cisco.com"

// DefaultProxyPort is the port of a proxy URL that names none, as for
// upstream.url in serve.
const DefaultProxyPort = 3128

// regions maps the --region names to their definition servers (DOMAIN.md).
var regions = map[string]string{
	"nam":  "tetra-defs.amp.cisco.com",
	"eu":   "tetra-defs.eu.amp.cisco.com",
	"apjc": "tetra-defs.apjc.amp.cisco.com",
}

// RegionHost returns the definition server of a cloud region: nam, eu or
// apjc, in any case. ok is false for any other name.
func RegionHost(region string) (host string, ok bool) {
	host, ok = regions[strings.ToLower(strings.TrimSpace(region))]
	return host, ok
}

// Config says what to probe and how. The zero Config probes DefaultHost on
// port 443 directly, with the system resolver and the system roots, and no
// issuer check.
type Config struct {
	// Host is the definition server's name; empty means DefaultHost.
	Host string

	// Port is the definition server's TCP port; zero means 443.
	Port int

	// Path is the path of the http step's request; empty means "/".
	Path string

	// Proxy is the forward proxy endpoints use, as http://host:port (no
	// port means DefaultProxyPort; the scheme is not looked at, the proxy
	// is always spoken to in plain HTTP). Nil means a direct connection: the
	// proxy_tcp and proxy_auth steps are left out. User information in the
	// URL is used when Username is empty.
	Proxy *url.URL

	// Username and Password are sent to the proxy with Basic
	// authentication. An empty Username sends no credentials. The password
	// never appears in a Report.
	Username, Password string

	// Overrides map host names to addresses ahead of any DNS lookup (the
	// resolve key); nil means none.
	Overrides map[string][]netip.Addr

	// DNSServers are asked, in order, instead of the system resolver (the
	// dns.servers key); empty means the system resolver.
	DNSServers []string

	// Roots are the trust anchors for the certificate step; nil means the
	// system roots (on Linux these honour SSL_CERT_FILE and SSL_CERT_DIR).
	Roots *x509.CertPool

	// ExpectedIssuers are matched, case-insensitively, as substrings of the
	// O and CN attributes of the leaf certificate's issuer, as the
	// correlation.expected_issuers key is. Empty means no issuer check.
	ExpectedIssuers []string

	// Timeout bounds each step, and each revocation fetch on its own; zero
	// means 10 seconds.
	Timeout time.Duration

	// UserAgent is sent with the http step's request and the revocation
	// fetches; empty means "tetrascope-probe".
	UserAgent string

	// Now returns the time against which certificates, CRLs and OCSP
	// answers are judged; nil means time.Now.
	Now func() time.Time
}

// Step is the result of one check. LastError and Basis are zero on a step
// that passed.
type Step struct {
	Name   string  `json:"name"`
	OK     bool    `json:"ok"`
	MS     float64 `json:"ms"`
	Detail string  `json:"detail"`

	// Advice says what to check when the step failed, and ends with the
	// lasterror an endpoint would record and whether that rests on Cisco's
	// documents or on inference. On a step that passed it may hold a note.
	Advice string `json:"advice"`

	// LastError is the code an endpoint on the same path would most
	// likely record for this failure, 0 for a step that passed.
	LastError inspect.LastError `json:"lasterror"`

	// Basis says whether LastError follows from Cisco's documented table
	// or is inferred; it is also written into Advice for readers of the
	// JSON form.
	Basis inspect.Basis `json:"-"`
}

// Report is the outcome of a probe: OK when every step that ran passed.
// Steps are in the order of the step names above; steps that did not apply
// or could not run are absent.
type Report struct {
	OK    bool   `json:"ok"`
	Steps []Step `json:"steps"`

	// Target is the probed host:port; Proxy is the proxy's URL without
	// user information, empty when direct; User is the proxy user name,
	// empty when no credentials were sent.
	Target string `json:"-"`
	Proxy  string `json:"-"`
	User   string `json:"-"`
}

// Failed returns the first failed step: the one an endpoint would stop at.
// ok is false when every step passed.
func (r Report) Failed() (step Step, ok bool) {
	for _, s := range r.Steps {
		if !s.OK {
			return s, true
		}
	}
	return Step{}, false
}

// Run probes the path from this machine to the definition server as
// configured. It never returns an error: every failure is a step of the
// Report. It sends only what a connector would: DNS queries, the CONNECT,
// one TLS handshake and request, and the revocation fetches the certificate
// asks for.
func Run(ctx context.Context, cfg Config) Report {
	s := newSession(cfg)
	s.run(ctx)
	return s.report()
}

// session holds one probe's settings and the steps found so far.
type session struct {
	cfg      Config
	host     string // definition server
	port     int
	target   string // host:port
	proxy    *url.URL
	proxyHP  string // proxy host:port
	user     string
	password string
	timeout  time.Duration
	res      *resolve.Resolver
	resErr   error
	steps    []Step
}

func newSession(cfg Config) *session {
	s := &session{cfg: cfg, host: cfg.Host, port: cfg.Port, timeout: cfg.Timeout}
	if s.host == "" {
		s.host = DefaultHost
	}
	s.host = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s.host)), ".")
	if s.port == 0 {
		s.port = 443
	}
	s.target = net.JoinHostPort(s.host, strconv.Itoa(s.port))
	if s.timeout <= 0 {
		s.timeout = 10 * time.Second
	}
	if s.cfg.Path == "" {
		s.cfg.Path = "/"
	}
	if s.cfg.UserAgent == "" {
		s.cfg.UserAgent = "tetrascope-probe"
	}
	if s.cfg.Now == nil {
		s.cfg.Now = time.Now
	}

	if cfg.Proxy != nil {
		p := *cfg.Proxy
		s.user, s.password = cfg.Username, cfg.Password
		if s.user == "" && p.User != nil {
			s.user = p.User.Username()
			s.password, _ = p.User.Password()
		}
		p.User = nil
		port := p.Port()
		if port == "" {
			port = strconv.Itoa(DefaultProxyPort)
		}
		p.Host = net.JoinHostPort(p.Hostname(), port)
		p.Path, p.RawPath, p.RawQuery, p.Fragment = "", "", "", ""
		s.proxy = &p
		s.proxyHP = p.Host
	}

	s.res, s.resErr = resolve.New(cfg.Overrides, cfg.DNSServers, s.timeout)
	return s
}

// run performs the steps in order, stopping where the next one has
// nothing to stand on.
func (s *session) run(ctx context.Context) {
	var conn net.Conn
	if s.proxy != nil {
		addrs, ok := s.stepProxyDNS(ctx)
		if !ok {
			return
		}
		c, ok := s.stepProxyTCP(ctx, addrs)
		if !ok {
			return
		}
		defer c.Close()
		if conn, ok = s.stepProxyConnect(ctx, c); !ok {
			return
		}
	} else {
		addrs, ok := s.stepTargetDNS(ctx)
		if !ok {
			return
		}
		c, ok := s.stepDirectConnect(ctx, addrs)
		if !ok {
			return
		}
		defer c.Close()
		conn = c
	}

	tc, ok := s.stepTLS(ctx, conn)
	if !ok {
		return
	}
	defer tc.Close()
	chain := s.stepCertificate(tc.ConnectionState())

	// The request goes first, while the tunnel is fresh: a slow revocation
	// server must not let the proxy close it as idle. The Report still
	// lists revocation before http.
	s.stepHTTP(ctx, tc)
	s.stepRevocation(ctx, chain)
}

// report returns the steps in their fixed order.
func (s *session) report() Report {
	r := Report{OK: true, Target: s.target}
	if s.proxy != nil {
		r.Proxy = s.proxy.String()
		r.User = s.user
	}
	r.Steps = make([]Step, len(s.steps))
	copy(r.Steps, s.steps)
	sortSteps(r.Steps)
	for i := range r.Steps {
		st := &r.Steps[i]
		st.Detail, st.Advice = s.redact(st.Detail), s.redact(st.Advice)
		if !st.OK {
			r.OK = false
		}
	}
	return r
}

// redact removes the proxy password, alone or in a Basic header, from text that came from elsewhere
// (an error message, a server's answer), should it ever be echoed there.
// Passwords shorter than four characters are too likely to be ordinary
// text to replace.
func (s *session) redact(text string) string {
	if len(s.password) < 4 {
		return text
	}
	basic := base64.StdEncoding.EncodeToString([]byte(s.user + ":" + s.password))
	for _, p := range []string{basic, s.password, url.QueryEscape(s.password),
		url.PathEscape(s.password)} {
		text = strings.ReplaceAll(text, p, "[password]")
	}
	return text
}

func sortSteps(steps []Step) {
	// Insertion sort: at most eight steps, and stable.
	for i := 1; i < len(steps); i++ {
		for j := i; j > 0 && stepOrder[steps[j].Name] < stepOrder[steps[j-1].Name]; j-- {
			steps[j], steps[j-1] = steps[j-1], steps[j]
		}
	}
}

// pass records a step that passed after ms milliseconds; note, when not
// empty, goes to Advice.
func (s *session) pass(name string, ms float64, detail, note string) {
	s.steps = append(s.steps, Step{Name: name, OK: true, MS: ms, Detail: detail, Advice: note})
}

// fail records a failed step with the lasterror an endpoint would record.
func (s *session) fail(name string, ms float64, detail, advice string, e expectation) {
	s.steps = append(s.steps, Step{
		Name: name, MS: ms, Detail: detail,
		Advice:    joinSentences(advice, e.sentence()),
		LastError: e.code, Basis: e.basis,
	})
}

// since returns the milliseconds elapsed since start, to the microsecond.
func since(start time.Time) float64 {
	return float64(time.Since(start).Microseconds()) / 1000
}

func joinSentences(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + " " + b
}

// expectation is the lasterror an endpoint would most likely record for a
// failure, its basis, and, when inferred, why.
type expectation struct {
	code  inspect.LastError
	basis inspect.Basis
	why   string
}

func (e expectation) sentence() string {
	if e.code == inspect.LastErrorNone {
		return ""
	}
	meaning := ""
	if info, ok := inspect.LookupLastError(e.code); ok {
		meaning = ", " + info.Meaning
	}
	s := fmt.Sprintf("An endpoint on this path would most likely record lasterror %d (%d%s); %s",
		uint32(e.code), e.code.Signed(), meaning, e.basis)
	if e.why != "" {
		s += ": " + e.why
	}
	return s + "."
}

// Why a code is inferred, for the advice.
const (
	whyDirect = "Cisco documents lasterror codes for downloads through a proxy only, " +
		"and -2109 is the general download failure"
	whyRevocation = "Cisco's documents do not say which code a failed revocation check gives"
	whyIssuer     = "the chain is trusted here; whether an endpoint rejects it depends on " +
		"its own trust store and revocation check"
	whyScheme = "the probe speaks Basic only and could not try the scheme the proxy asks for"
)

// beforeProxy is the expectation when the endpoint cannot reach its proxy.
func beforeProxy() expectation {
	return expectation{code: inspect.LastErrorProxyConnect, basis: inspect.Documented}
}

// afterConnect is the expectation for a failure of the tetra download
// itself: documented through a proxy (the endpoint reached it), inferred
// without one.
func (s *session) afterConnect() expectation {
	if s.proxy != nil {
		return expectation{code: inspect.LastErrorDownloadFailed, basis: inspect.Documented}
	}
	return expectation{code: inspect.LastErrorDownloadFailed, basis: inspect.Inferred,
		why: whyDirect}
}

// inferredDownload is a download failure whose code rests on inference.
func (s *session) inferredDownload(why string) expectation {
	if s.proxy == nil {
		why = whyDirect + "; " + why
	}
	return expectation{code: inspect.LastErrorDownloadFailed, basis: inspect.Inferred, why: why}
}

// resolverName says where names are looked up, for details.
func (s *session) resolverName(host string) string {
	if _, ok := s.cfg.Overrides[strings.ToLower(host)]; ok {
		return "static override"
	}
	for h := range s.cfg.Overrides {
		if strings.EqualFold(strings.TrimSuffix(strings.TrimSpace(h), "."), host) {
			return "static override"
		}
	}
	if len(s.cfg.DNSServers) > 0 {
		return "DNS " + strings.Join(s.cfg.DNSServers, ", ")
	}
	return "system resolver"
}
