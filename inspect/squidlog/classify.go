package squidlog

import (
	"bytes"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// shortTunnel is the size under which a tunnel that Squid logged as a
// success carried too little to have been a download: a TLS handshake is a
// few kilobytes. Squid's %<st counts its own "200 Connection established"
// line too.
const shortTunnel = 8 << 10

// event fills ev from a decoded line.
func (p *Parser) event(r *record, ev *inspect.Event) error {
	ev.Source = inspect.SourceSquidLog

	// Time: Squid logs a transaction when it ends; the event's time is its
	// start.
	elapsed := time.Duration(r.elapsed) * time.Millisecond
	var start time.Time
	switch {
	case r.haveStart:
		start = r.start
	case r.haveSec:
		sub := r.sub
		for d := r.subDigits; d < 9; d++ {
			sub *= 10
		}
		start = time.Unix(r.sec, sub).Add(-elapsed)
	default:
		start = r.wall.Add(-elapsed)
	}
	ev.Time = start.UTC()
	ev.DurationMS = float64(r.elapsed)

	// Who, what and where.
	ev.ClientIP = string(r.client)
	ev.ClientUser = clientUser(&r.users, &r.unescaped)
	ev.Method = method(r.method)
	if ev.Method == "" && r.url == nil && r.domain == nil && r.tag == nil {
		return ErrNoRequest
	}
	connect := ev.Method == http.MethodConnect
	t := splitTarget(r.url, connect)
	if t.noRequest {
		return ErrNoRequest
	}
	ev.Host, ev.Port, ev.URL = string(t.host), t.port, t.url
	if ev.Host == "" && r.domain != nil {
		ev.Host = string(r.domain)
	}
	if r.port != 0 {
		ev.Port = r.port
	}
	ev.SNI = string(r.sni)
	ev.Status = r.status
	if p.has[cUpstreamStatus] {
		ev.UpstreamStatus = r.up
	}
	ev.BytesDown, ev.BytesUp = r.bytesDown, r.bytesUp
	ev.Endpoint = p.endpoint(ev.Method, ev.Host, t.path, r)

	// Outcome and detail.
	f := facts{
		connect:   connect,
		status:    r.status,
		up:        r.up,
		haveUp:    p.has[cUpstreamStatus],
		haveErr:   p.has[cErrCode],
		user:      ev.ClientUser != "",
		bytesDown: r.bytesDown,
		errCode:   r.errCode,
		errDetail: r.errDetail,
		badURL:    t.errorURL,
	}
	f.readTag(r.tag, p.has[cTag])
	f.readHier(r.hier)

	var buf [192]byte
	d := append(buf[:0], "squid: "...)
	d = p.appendTags(d, r)
	var outcome inspect.Outcome
	outcome, d = classify(&f, d)
	ev.Outcome = outcome
	ev.Detail = string(d)
	code, _ := inspect.EventLastError(ev.Endpoint, ev.Outcome)
	ev.LastError = uint32(code)
	return nil
}

// appendTags writes the tags as Squid logs them: "TCP_TUNNEL/503
// HIER_NONE/- err=ERR_DNS_FAIL (detail)".
func (p *Parser) appendTags(d []byte, r *record) []byte {
	if p.has[cTag] {
		d = appendOrDash(d, r.tag)
		d = append(d, '/')
	}
	d = appendStatus(d, r.status)
	if p.has[cHier] {
		d = append(d, ' ')
		d = appendOrDash(d, r.hier)
		if p.has[cServer] {
			d = append(d, '/')
			d = appendOrDash(d, r.server)
		}
	}
	if len(r.errCode) > 0 {
		d = append(d, " err="...)
		d = append(d, r.errCode...)
		if len(r.errDetail) > 0 {
			d = append(d, " ("...)
			d = append(d, r.errDetail...)
			d = append(d, ')')
		}
	}
	return d
}

func appendOrDash(d, v []byte) []byte {
	if len(v) == 0 {
		return append(d, '-')
	}
	return append(d, v...)
}

func appendStatus(d []byte, s int) []byte {
	if s < 100 {
		d = append(d, '0')
	}
	if s < 10 {
		d = append(d, '0')
	}
	return strconv.AppendInt(d, int64(s), 10)
}

// facts are what the classification looks at.
type facts struct {
	connect   bool
	status    int
	up        int
	haveUp    bool // the format has %<Hs
	haveErr   bool // the format has %err_code
	user      bool // a user name is logged
	bytesDown int64
	errCode   []byte
	errDetail []byte
	badURL    bool // an error:... URL other than a closed connection

	aborted, timedOut bool // _ABORTED, _TIMEDOUT suffixes
	denied            bool // TCP_DENIED, TCP_DENIED_REPLY
	noTag             bool // NONE, TAG_NONE, NONE_NONE: Squid never got far
	hierNone          bool // no server or peer was selected
	parent            bool // the next hop was a parent proxy
	hit               bool // served from Squid's cache
}

func (f *facts) readTag(tag []byte, logged bool) {
	for {
		switch {
		case bytes.HasSuffix(tag, []byte("_ABORTED")):
			f.aborted = true
			tag = tag[:len(tag)-len("_ABORTED")]
			continue
		case bytes.HasSuffix(tag, []byte("_TIMEDOUT")):
			f.timedOut = true
			tag = tag[:len(tag)-len("_TIMEDOUT")]
			continue
		case bytes.HasSuffix(tag, []byte("_TIMEOUT")):
			f.timedOut = true
			tag = tag[:len(tag)-len("_TIMEOUT")]
			continue
		}
		break
	}
	f.hit = bytes.Contains(tag, []byte("HIT"))
	f.denied = bytes.HasPrefix(tag, []byte("TCP_DENIED")) || bytes.HasPrefix(tag, []byte("UDP_DENIED"))
	switch string(tag) {
	case "NONE", "TAG_NONE", "NONE_NONE", "TAG_NONE_NONE":
		f.noTag = true
	case "":
		f.noTag = logged
	}
}

func (f *facts) readHier(h []byte) {
	// Squid 2 and the native format prefix TIMEOUT_ when peer selection
	// waited for ICP answers in vain: no failure of the transaction.
	h = bytes.TrimPrefix(h, []byte("TIMEOUT_"))
	h = bytes.TrimPrefix(h, []byte("HIER_"))
	f.hierNone = len(h) == 0 || string(h) == "NONE"
	f.parent = bytes.Contains(h, []byte("PARENT")) || string(h) == "CARP"
}

// dataBegan reports whether a reply started reaching the client.
func (f *facts) dataBegan() bool {
	return f.status >= 200 && f.status < 300 && f.bytesDown > 0
}

// Reasons appended to the detail after the tags.
const (
	whyNoErrCode = "Squid could not reach the target; without %err_code the log " +
		"cannot tell a DNS failure from a connect failure"
	whyCannotForward = "Squid could not forward; Squid 5 also says this for names " +
		"it cannot resolve"
	whyClientGone = "the client went away before Squid answered"
	whyShort      = "short tunnel: the log cannot tell a completed TLS handshake " +
		"from one the client aborted"
)

// classify decides the outcome of a line and appends the reason to d.
func classify(f *facts, d []byte) (inspect.Outcome, []byte) {
	why := func(o inspect.Outcome, s string) (inspect.Outcome, []byte) {
		if s == "" {
			return o, d
		}
		return o, append(append(d, "; "...), s...)
	}

	if f.badURL {
		if f.denied {
			return why(inspect.Denied, "refused by Squid's access rules before a request was read")
		}
		return why(inspect.BadRequest, "Squid could not parse the request")
	}
	if f.status == http.StatusProxyAuthRequired {
		return authOutcome(f, d)
	}
	if o, s, ok := errOutcome(f); ok {
		return why(o, s)
	}
	if f.denied {
		return why(inspect.Denied, "refused by Squid's access rules")
	}
	if f.noTag && f.status == http.StatusBadRequest {
		return why(inspect.BadRequest, "Squid could not parse the request")
	}
	if f.status == 0 {
		if f.bytesDown > 0 {
			return why(inspect.DownloadAborted, "the transfer ended before a status was logged")
		}
		return why(inspect.DownloadAborted, whyClientGone)
	}
	if f.connect {
		return classifyTunnel(f, d, why)
	}
	return classifyHTTP(f, d, why)
}

type whyFunc func(inspect.Outcome, string) (inspect.Outcome, []byte)

func classifyTunnel(f *facts, d []byte, why whyFunc) (inspect.Outcome, []byte) {
	switch {
	case f.status >= 200 && f.status < 300:
		switch {
		case f.aborted:
			return why(inspect.DownloadAborted, "Squid marked the tunnel aborted")
		case f.timedOut:
			return why(inspect.DownloadAborted, "Squid closed the tunnel on a timeout")
		case f.bytesDown < shortTunnel:
			return why(inspect.OK, whyShort)
		}
		return why(inspect.OK, "")
	case f.parent:
		return parentOutcome(f, d)
	case f.status == http.StatusGatewayTimeout:
		return why(inspect.ConnectTimeout, "Squid timed out reaching the target")
	case f.status >= 500:
		return why(inspect.Unreachable, whyNoErrCode)
	case f.status == http.StatusBadRequest:
		return why(inspect.BadRequest, "Squid rejected the request")
	case f.status >= 400:
		return why(inspect.Denied, "Squid refused the tunnel")
	}
	return why(inspect.Unreachable, "Squid did not open the tunnel")
}

func classifyHTTP(f *facts, d []byte, why whyFunc) (inspect.Outcome, []byte) {
	squidMade := f.hierNone || f.noTag || (f.haveUp && f.up == 0)
	switch {
	case f.aborted && f.status < 400:
		return why(inspect.DownloadAborted,
			"Squid marked the transfer aborted: the client or the server went away")
	case f.timedOut && squidMade:
		return why(inspect.ConnectTimeout, "Squid timed out before reaching the server")
	case f.timedOut:
		return why(inspect.DownloadAborted, "Squid ended the transfer on a timeout")
	case f.status >= 500 && squidMade && f.status == http.StatusGatewayTimeout:
		return why(inspect.ConnectTimeout, "Squid timed out reaching the server")
	case f.status >= 500 && squidMade:
		return why(inspect.Unreachable, whyNoErrCode)
	case f.status >= 502 && f.status <= 504 && !f.haveUp && !f.parent:
		return why(inspect.Unreachable, "Squid could not reach the server, or the server "+
			"answered "+strconv.Itoa(f.status)+": the log has neither %err_code nor %<Hs")
	case f.status >= 400:
		d = append(d, "; "...)
		if f.parent {
			d = append(d, "the origin or the parent proxy answered "...)
		} else {
			d = append(d, "the origin answered "...)
		}
		d = strconv.AppendInt(d, int64(f.status), 10)
		if t := http.StatusText(f.status); t != "" {
			d = append(append(d, ' '), t...)
		}
		if f.hit {
			d = append(d, " (an answer Squid had cached)"...)
		}
		return inspect.HTTPError, d
	}
	return why(inspect.OK, "")
}

// authOutcome classifies a 407: a challenge to a client that sent no
// credentials is the normal first step; one to a named user is a rejection.
func authOutcome(f *facts, d []byte) (inspect.Outcome, []byte) {
	who := "Squid"
	if f.parent && !f.denied {
		who = "the parent proxy"
	}
	if f.user {
		d = append(append(d, "; "...), who...)
		return inspect.AuthFailed, append(d, " rejected the credentials"...)
	}
	d = append(append(d, "; "...), who...)
	return inspect.AuthRequired, append(d, " asked for credentials (a first 407 is a normal challenge)"...)
}

// parentOutcome classifies a failed tunnel whose next hop was a parent
// proxy.
func parentOutcome(f *facts, d []byte) (inspect.Outcome, []byte) {
	d = append(d, "; "...)
	if f.haveUp && f.up == 0 {
		return inspect.UpstreamUnreachable, append(d, "Squid could not reach the parent proxy"...)
	}
	d = append(d, "the parent proxy answered "...)
	d = strconv.AppendInt(d, int64(f.status), 10)
	if !f.haveUp && f.status >= 500 {
		d = append(d, ", or could not be reached: the log has no %<Hs"...)
	}
	return inspect.UpstreamRefused, d
}

// errOutcome classifies by Squid's %err_code where it decides the outcome.
func errOutcome(f *facts) (inspect.Outcome, string, bool) {
	switch string(f.errCode) {
	case "ERR_DNS_FAIL":
		return inspect.DNSFailure, "Squid could not resolve the name", true
	case "ERR_CONNECT_FAIL":
		switch {
		case f.parent:
			return inspect.UpstreamUnreachable, "Squid could not connect to the parent proxy", true
		case f.timeoutDetail():
			return inspect.ConnectTimeout, "Squid's connect to the server timed out", true
		}
		return inspect.ConnectRefused, "Squid could not connect to the server", true
	case "ERR_CANNOT_FORWARD":
		if f.parent {
			return inspect.UpstreamUnreachable, "Squid could not forward to the parent proxy", true
		}
		return inspect.Unreachable, whyCannotForward, true
	case "ERR_GATEWAY_FAILURE":
		if f.parent {
			return inspect.UpstreamUnreachable, "the gateway to the parent proxy failed", true
		}
		return inspect.Unreachable, "Squid's gateway to the server failed", true
	case "ERR_READ_TIMEOUT", "ERR_LIFETIME_EXP":
		if f.dataBegan() {
			return inspect.DownloadAborted, "Squid timed out after the transfer began", true
		}
		return inspect.ConnectTimeout, "the server sent no reply in time", true
	case "ERR_ACCESS_DENIED", "ERR_FORWARDING_DENIED", "ERR_CACHE_MISS_DENIED", "ERR_TOO_BIG":
		return inspect.Denied, "refused by Squid's access rules", true
	case "ERR_CACHE_ACCESS_DENIED":
		if f.user {
			return inspect.AuthFailed, "Squid rejected the credentials", true
		}
		return inspect.AuthRequired, "Squid asked for credentials", true
	case "ERR_INVALID_REQ", "ERR_INVALID_URL", "ERR_UNSUP_REQ", "ERR_UNSUP_HTTPVERSION",
		"ERR_PROTOCOL_UNKNOWN", "ERR_CONFLICT_HOST", "ERR_REQUEST_START_TIMEOUT",
		"ERR_REQUEST_PARSE_TIMEOUT":
		return inspect.BadRequest, "Squid could not accept the request", true
	case "ERR_SECURE_CONNECT_FAIL":
		return inspect.TLSAborted, "Squid's own TLS connection to the server failed", true
	case "ERR_ZERO_SIZE_OBJECT", "ERR_READ_ERROR", "ERR_WRITE_ERROR":
		switch {
		case f.hierNone:
			// Squid 5 answers some names it cannot resolve with a
			// read error and no server selected.
			return inspect.Unreachable, "no server was reached (Squid 5 also logs " +
				"names it cannot resolve this way)", true
		case f.dataBegan():
			return inspect.DownloadAborted, "the server connection failed mid-transfer", true
		}
		return inspect.DownloadAborted, "the server closed or failed before a complete reply", true
	case "ERR_CLIENT_GONE":
		if f.bytesDown > 0 && f.status != 0 {
			return inspect.DownloadAborted, "the client went away mid-transfer", true
		}
		return inspect.DownloadAborted, whyClientGone, true
	}
	return "", "", false
}

// timeoutDetail reports whether %err_detail says a connect timed out
// (errno 110 is ETIMEDOUT on Linux, where Squid mostly runs) or the status
// is 504.
func (f *facts) timeoutDetail() bool {
	if f.status == http.StatusGatewayTimeout {
		return true
	}
	e := f.errDetail
	return bytes.Contains(e, []byte("errno=110")) || containsFold(e, "timed") ||
		containsFold(e, "timeout")
}

// target is where a request went, from its logged URL.
type target struct {
	host      []byte
	port      int
	url       string
	path      []byte // for the revocation form check
	noRequest bool   // error:transaction-end-before-headers
	errorURL  bool   // another error:... URL: the request was not understood
}

// splitTarget reads the host and port of a CONNECT authority or of an
// absolute URL. The URL is kept for plain requests only, without any
// user:password.
func splitTarget(u []byte, connect bool) target {
	var t target
	if rest, ok := bytes.CutPrefix(u, []byte("error:")); ok {
		if string(rest) == "transaction-end-before-headers" {
			t.noRequest = true
		} else {
			t.errorURL = true
		}
		return t
	}
	if connect {
		t.host, t.port = hostPort(u, 0)
		return t
	}
	scheme, rest, ok := bytes.Cut(u, []byte("://"))
	if !ok || !isScheme(scheme) {
		return t
	}
	authority := rest
	if end := bytes.IndexAny(rest, "/?#"); end >= 0 {
		authority, t.path = rest[:end], rest[end:]
	}
	cleaned := u
	if at := bytes.LastIndexByte(authority, '@'); at >= 0 {
		authority = authority[at+1:]
		cleaned = append(append(append([]byte{}, scheme...), "://"...), rest[at+1:]...)
	}
	t.host, t.port = hostPort(authority, defaultPort(scheme))
	t.url = string(cleaned)
	return t
}

func isScheme(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func defaultPort(scheme []byte) int {
	switch string(scheme) {
	case "http", "ws":
		return 80
	case "https", "wss":
		return 443
	case "ftp":
		return 21
	}
	return 0
}

// hostPort splits "host:port" or "[v6]:port"; a missing or bad port gives
// def.
func hostPort(a []byte, def int) ([]byte, int) {
	if len(a) > 0 && a[0] == '[' {
		end := bytes.IndexByte(a, ']')
		if end < 0 {
			return a, def
		}
		host, rest := a[1:end], a[end+1:]
		if p, ok := port(bytes.TrimPrefix(rest, []byte(":"))); ok && len(rest) > 0 {
			return host, p
		}
		return host, def
	}
	i := bytes.LastIndexByte(a, ':')
	if i < 0 || bytes.IndexByte(a[:i], ':') >= 0 {
		return a, def // no port, or a bare IPv6 address
	}
	if p, ok := port(a[i+1:]); ok {
		return a[:i], p
	}
	return a[:i], def
}

func port(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 5 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n > 0 && n < 65536
}

// endpoint classifies the target: by name through the catalog, then, for
// plain requests to hosts it does not know, by the form of revocation
// traffic (a .crl path, an OCSP request or answer).
func (p *Parser) endpoint(method, host string, path []byte, r *record) inspect.Endpoint {
	e := p.catalog.Classify(host)
	if e == inspect.EndpointOther && len(r.sni) > 0 {
		// A tunnel to an address, peeked by ssl_bump: the name is in the SNI.
		e = p.catalog.Classify(string(r.sni))
	}
	if e != inspect.EndpointOther || method == http.MethodConnect {
		return e
	}
	if len(r.mime) > 0 && (containsFold(r.mime, "ocsp") || containsFold(r.mime, "crl")) {
		mt := r.mime
		if i := bytes.IndexAny(mt, " ;"); i >= 0 {
			mt = mt[:i]
		}
		if inspect.IsRevocationResponse(string(mt)) {
			return inspect.EndpointRevocation
		}
	}
	if containsFold(path, "ocsp") || containsFold(path, ".crl") || containsFold(r.reqType, "ocsp") {
		u := &url.URL{Path: string(path)}
		if i := bytes.IndexByte(path, '?'); i >= 0 {
			u.Path = string(path[:i])
		}
		if inspect.IsRevocationRequest(method, u, string(r.reqType)) {
			return inspect.EndpointRevocation
		}
	}
	return inspect.EndpointOther
}

// containsFold reports whether b contains the lower-case ASCII string s,
// ignoring case, without allocating.
func containsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		j := 0
		for ; j < len(s); j++ {
			c := b[i+j]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != s[j] {
				break
			}
		}
		if j == len(s) {
			return true
		}
	}
	return false
}

// method returns the request method, sharing the strings of common ones.
func method(b []byte) string {
	switch string(b) {
	case "CONNECT":
		return http.MethodConnect
	case "GET":
		return http.MethodGet
	case "POST":
		return http.MethodPost
	case "HEAD":
		return http.MethodHead
	case "PUT":
		return http.MethodPut
	case "OPTIONS":
		return http.MethodOptions
	case "DELETE":
		return http.MethodDelete
	case "NONE":
		return "NONE"
	}
	return string(b)
}

// clientUser returns the first user name logged, decoded from Squid's
// escaping (backslash escapes, or %XX with the [ encoding); "-" is none.
func clientUser(users *[5][]byte, unescaped *[5]bool) string {
	for k, u := range users {
		if len(u) == 0 {
			continue
		}
		if unescaped[k] || bytes.IndexByte(u, '\\') < 0 && bytes.IndexByte(u, '%') < 0 {
			if s := string(u); s != "-" {
				return s
			}
			continue
		}
		out := make([]byte, 0, len(u))
		for i := 0; i < len(u); i++ {
			c := u[i]
			switch {
			case c == '\\' && i+1 < len(u):
				i++
				c = u[i]
			case c == '%' && i+2 < len(u) && isHex(u[i+1]) && isHex(u[i+2]):
				c = unhex(u[i+1])<<4 | unhex(u[i+2])
				i += 2
			}
			out = append(out, c)
		}
		if s := string(out); s != "-" && s != "" {
			return s
		}
	}
	return ""
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}
