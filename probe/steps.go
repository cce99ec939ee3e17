package probe

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/resolve"
)

// lookup resolves host within the step timeout.
func (s *session) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	if s.resErr != nil {
		return nil, s.resErr
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.res.Lookup(ctx, host)
}

// lookupFailure describes a failed lookup of host.
func (s *session) lookupFailure(host string, err error) (detail string, notFound bool) {
	var re *resolve.Error
	if errors.As(err, &re) {
		return fmt.Sprintf("%s does not resolve (%s): %s", host, s.resolverName(host), re.Reason),
			re.NotFound
	}
	return fmt.Sprintf("%s does not resolve (%s): %v", host, s.resolverName(host), err), false
}

// stepProxyDNS resolves the proxy's name. The target's name is the
// proxy's to resolve, as it is for endpoints that use it.
func (s *session) stepProxyDNS(ctx context.Context) ([]netip.Addr, bool) {
	start := time.Now()
	host := s.proxy.Hostname()
	theirs := fmt.Sprintf("%s is resolved by the proxy, not here: the connect step shows "+
		"whether the proxy can", s.host)
	if a, err := netip.ParseAddr(host); err == nil {
		s.pass(StepDNS, since(start), fmt.Sprintf("proxy %s is an address, nothing to resolve; %s",
			host, theirs), "")
		return []netip.Addr{a.Unmap()}, true
	}

	addrs, err := s.lookup(ctx, host)
	if err != nil {
		detail, notFound := s.lookupFailure(host, err)
		advice := "Endpoints that name their proxy this way cannot reach it: check the proxy " +
			"name in their settings (or PAC file) and that their DNS servers know it."
		if !notFound {
			advice = "The DNS server did not answer for the proxy's name: check that this " +
				"network's DNS servers are reachable (UDP and TCP port 53)."
		}
		s.fail(StepDNS, since(start), "proxy name "+detail, advice, beforeProxy())
		return nil, false
	}
	s.pass(StepDNS, since(start), fmt.Sprintf("proxy %s resolves to %s (%s); %s",
		host, addrList(addrs), s.resolverName(host), theirs), "")
	return addrs, true
}

// stepTargetDNS resolves the definition server's name, as an endpoint
// without a proxy must.
func (s *session) stepTargetDNS(ctx context.Context) ([]netip.Addr, bool) {
	start := time.Now()
	if a, err := netip.ParseAddr(s.host); err == nil {
		s.pass(StepDNS, since(start), fmt.Sprintf("%s is an address, nothing to resolve", s.host), "")
		return []netip.Addr{a.Unmap()}, true
	}

	addrs, err := s.lookup(ctx, s.host)
	if err != nil {
		detail, notFound := s.lookupFailure(s.host, err)
		advice := fmt.Sprintf("The DNS servers endpoints use do not know %s: check that they "+
			"resolve public names and that the name is not blocked or sinkholed (WinHTTP "+
			"reports 12007).", s.host)
		if !notFound {
			advice = "The DNS server did not answer: check that endpoints reach their DNS " +
				"servers (UDP and TCP port 53)."
		}
		s.fail(StepDNS, since(start), detail, advice, s.afterConnect())
		return nil, false
	}
	s.pass(StepDNS, since(start), fmt.Sprintf("%s resolves to %s (%s)",
		s.host, addrList(addrs), s.resolverName(s.host)), "")
	return addrs, true
}

func addrList(addrs []netip.Addr) string {
	parts := make([]string, len(addrs))
	for i, a := range addrs {
		parts[i] = a.String()
	}
	return strings.Join(parts, ", ")
}

// dialKind sorts TCP connect failures by what the admin should look at.
type dialKind int

const (
	dialOther dialKind = iota
	dialRefused
	dialTimeout
	dialUnreachable
)

// dialAny connects to the first of addrs that answers on port. On failure
// it returns why each address failed, and the kind of the last failure.
func (s *session) dialAny(ctx context.Context, addrs []netip.Addr, port int) (
	net.Conn, []string, dialKind) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	var d net.Dialer
	var failures []string
	kind := dialOther
	for _, a := range addrs {
		ap := netip.AddrPortFrom(a, uint16(port)).String()
		c, err := d.DialContext(ctx, "tcp", ap)
		if err == nil {
			return c, failures, kind
		}
		var why string
		why, kind = s.dialReason(err)
		failures = append(failures, ap+": "+why)
	}
	return nil, failures, kind
}

func (s *session) dialReason(err error) (string, dialKind) {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused", dialRefused
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("no answer within %v", s.timeout), dialTimeout
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "no route to the address", dialUnreachable
	}
	return err.Error(), dialOther
}

// stepProxyTCP connects to the proxy.
func (s *session) stepProxyTCP(ctx context.Context, addrs []netip.Addr) (net.Conn, bool) {
	start := time.Now()
	port, _ := strconv.Atoi(s.proxy.Port())
	c, failures, kind := s.dialAny(ctx, addrs, port)
	if c == nil {
		var advice string
		switch kind {
		case dialRefused:
			advice = fmt.Sprintf("Nothing accepts connections at %s: check that the proxy runs "+
				"and listens on port %d, and that no firewall rejects the connection.",
				s.proxyHP, port)
		case dialTimeout:
			advice = fmt.Sprintf("Connections to %s go unanswered: a firewall between this "+
				"network and the proxy drops them, or the address is wrong.", s.proxyHP)
		default:
			advice = "This network has no path to the proxy: check routing and firewalls " +
				"between the endpoints and the proxy."
		}
		s.fail(StepProxyTCP, since(start), "cannot connect to the proxy: "+
			strings.Join(failures, "; "), advice, beforeProxy())
		return nil, false
	}
	s.pass(StepProxyTCP, since(start), "connected to the proxy at "+
		withEarlier(c.RemoteAddr().String(), failures), "")
	return c, true
}

// stepDirectConnect connects to the definition server without a proxy.
func (s *session) stepDirectConnect(ctx context.Context, addrs []netip.Addr) (net.Conn, bool) {
	start := time.Now()
	c, failures, kind := s.dialAny(ctx, addrs, s.port)
	if c == nil {
		var advice string
		switch kind {
		case dialRefused:
			advice = fmt.Sprintf("The connection to port %d is refused: a firewall rejects it, "+
				"or the name resolves to a wrong address (check --resolve and DNS).", s.port)
		case dialTimeout:
			advice = fmt.Sprintf("A firewall drops connections to port %d of %s: allow the "+
				"tetra-defs hosts by name (their addresses change), or give endpoints a proxy.",
				s.port, s.host)
		default:
			advice = fmt.Sprintf("This network has no route to %s: endpoints here need a "+
				"proxy or a route to the internet.", s.host)
		}
		s.fail(StepConnect, since(start), "cannot connect to "+s.target+": "+
			strings.Join(failures, "; "), advice, s.afterConnect())
		return nil, false
	}
	s.pass(StepConnect, since(start), "connected directly to "+
		withEarlier(c.RemoteAddr().String(), failures), "")
	return c, true
}

func withEarlier(addr string, failures []string) string {
	if len(failures) == 0 {
		return addr
	}
	return addr + " (after " + strings.Join(failures, "; ") + ")"
}

// stepProxyConnect asks the proxy for a tunnel. One exchange decides two
// steps: the proxy checks credentials before it opens the tunnel, so
// proxy_auth and connect both show the time of that exchange. When the
// proxy gives no answer at all, proxy_auth cannot be judged and is left
// out.
func (s *session) stepProxyConnect(ctx context.Context, c net.Conn) (net.Conn, bool) {
	start := time.Now()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	c.SetDeadline(time.Now().Add(s.timeout))

	req := &http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Host: s.target},
		Host:   s.target,
		Header: make(http.Header),
	}
	req.Header.Set("User-Agent", s.cfg.UserAgent)
	if s.user != "" {
		req.Header.Set("Proxy-Authorization", "Basic "+
			base64.StdEncoding.EncodeToString([]byte(s.user+":"+s.password)))
	}
	br := bufio.NewReader(c)
	err := req.Write(c)
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(br, req)
	}
	ms := since(start)
	if err != nil {
		s.fail(StepConnect, ms, s.noAnswer(err), fmt.Sprintf("Check that %s is an HTTP "+
			"proxy port (not a TLS or SOCKS one) and what the proxy's log says about this "+
			"connection.", s.proxyHP), s.afterConnect())
		return nil, false
	}
	status := fmt.Sprintf("%d %s", resp.StatusCode, statusText(resp))

	if resp.StatusCode == http.StatusProxyAuthRequired {
		resp.Body.Close()
		s.authFailed(ms, status, resp.Header.Values("Proxy-Authenticate"))
		return nil, false
	}
	switch {
	case s.user == "":
		s.pass(StepProxyAuth, ms, "the proxy did not ask for credentials", "")
	case resp.StatusCode/100 == 2:
		s.pass(StepProxyAuth, ms, fmt.Sprintf("the proxy accepted the Basic credentials of "+
			"user %q", s.user), "")
	default:
		s.pass(StepProxyAuth, ms, fmt.Sprintf("the proxy did not reject the Basic credentials "+
			"of user %q (it answered %s)", s.user, status), "")
	}

	if resp.StatusCode/100 != 2 {
		s.connectRefused(ms, status, resp)
		return nil, false
	}
	c.SetDeadline(time.Time{})
	s.pass(StepConnect, ms, fmt.Sprintf("tunnel to %s open (the proxy answered %s)",
		s.target, status), "")
	return &bufConn{Conn: c, r: br}, true
}

func (s *session) noAnswer(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "the proxy closed the connection without answering the CONNECT"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("the proxy did not answer the CONNECT within %v", s.timeout)
	case errors.Is(err, syscall.ECONNRESET):
		return "the proxy reset the connection instead of answering the CONNECT"
	}
	return "the proxy's answer to the CONNECT is not HTTP: " + printable(err.Error(), 120)
}

func statusText(resp *http.Response) string {
	if _, text, ok := strings.Cut(resp.Status, " "); ok && text != "" {
		return printable(text, 60)
	}
	return http.StatusText(resp.StatusCode)
}

// authFailed records a 407 answer.
func (s *session) authFailed(ms float64, status string, challenges []string) {
	offers := "no scheme named"
	basic := len(challenges) == 0
	if len(challenges) > 0 {
		parts := make([]string, len(challenges))
		for i, ch := range challenges {
			parts[i] = printable(ch, 60)
			scheme, _, _ := strings.Cut(strings.TrimSpace(ch), " ")
			if strings.EqualFold(scheme, "Basic") {
				basic = true
			}
		}
		offers = strings.Join(parts, ", ")
	}
	auth := expectation{code: inspect.LastErrorProxyAuth, basis: inspect.Documented}

	switch {
	case s.user == "":
		s.fail(StepProxyAuth, ms, fmt.Sprintf("the proxy answered %s: it asks for "+
			"credentials (it offers %s) and none were given", status, offers),
			"Endpoints must authenticate to this proxy: check the credentials they use (the "+
				"connector's service often runs as the machine account). To test an account "+
				"here, name it in the proxy URL (http://USER@host:port) and give the password "+
				"in TETRASCOPE_UPSTREAM_PASSWORD or upstream.password_file.", auth)
	case basic:
		s.fail(StepProxyAuth, ms, fmt.Sprintf("the proxy answered %s: it rejected the Basic "+
			"credentials of user %q (it offers %s)", status, s.user, offers),
			"Check the user name and password, and that the account may use the proxy and is "+
				"not locked.", auth)
	default:
		auth.basis, auth.why = inspect.Inferred, whyScheme
		s.fail(StepProxyAuth, ms, fmt.Sprintf("the proxy answered %s: it asks for %s, not "+
			"for the Basic credentials sent for user %q", status, offers, s.user),
			"The probe cannot test this scheme: look in the proxy's log for the endpoints' "+
				"own 407 answers, and check the account the connector authenticates as.", auth)
	}
}

// connectRefused records a non-2xx answer other than 407 to the CONNECT.
func (s *session) connectRefused(ms float64, status string, resp *http.Response) {
	defer resp.Body.Close()
	detail := fmt.Sprintf("the proxy answered %s to CONNECT %s", status, s.target)
	squid := strings.TrimSpace(resp.Header.Get("X-Squid-Error"))
	if squid != "" {
		detail += " (X-Squid-Error: " + printable(squid, 80) + ")"
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == "text/plain" {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if text := printable(string(body), 160); text != "" {
			detail += ": " + text
		}
	}

	name, errno, _ := strings.Cut(squid, " ")
	outcome, _ := inspect.SquidErrorOutcome(name, errno)
	var advice string
	switch {
	case outcome == inspect.DNSFailure:
		advice = fmt.Sprintf("The proxy cannot resolve %s: check its DNS servers and that "+
			"they resolve public names under amp.cisco.com.", s.host)
	case outcome == inspect.ConnectRefused || outcome == inspect.ConnectTimeout ||
		outcome == inspect.Unreachable:
		advice = fmt.Sprintf("The proxy cannot reach %s: check the route and firewall from "+
			"the proxy (or its own upstream proxy) to Cisco's servers on port %d.",
			s.target, s.port)
	case outcome == inspect.UpstreamRefused || resp.StatusCode == http.StatusForbidden:
		advice = fmt.Sprintf("The proxy's policy refuses this tunnel: allow CONNECT to the "+
			"tetra-defs hosts on port %d, without TLS inspection (Cisco says this traffic "+
			"must not be decrypted).", s.port)
	case resp.StatusCode >= 500:
		advice = "The proxy could not open the tunnel: its log says why (name resolution, " +
			"route, or its own upstream proxy)."
	default:
		advice = "The proxy refused the tunnel: its log for this CONNECT says why."
	}
	s.fail(StepConnect, ms, detail, advice, s.afterConnect())
}

// bufConn reads first what the proxy's answer left in the buffer.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// stepTLS runs the handshake. The certificate is judged in its own step,
// so the handshake itself accepts any certificate.
func (s *session) stepTLS(ctx context.Context, c net.Conn) (*tls.Conn, bool) {
	start := time.Now()
	tc := tls.Client(c, &tls.Config{
		ServerName:         s.host,
		InsecureSkipVerify: true, // verified in stepCertificate, against Config.Roots
		NextProtos:         []string{"http/1.1"},
	})
	hctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	err := tc.HandshakeContext(hctx)
	ms := since(start)
	if err != nil {
		detail, advice := s.handshakeFailure(err)
		s.fail(StepTLS, ms, detail, advice, s.afterConnect())
		return nil, false
	}

	cs := tc.ConnectionState()
	s.pass(StepTLS, ms, fmt.Sprintf("%s, %s, server name %s, %d certificate(s) sent",
		tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), s.host,
		len(cs.PeerCertificates)), "")
	return tc, true
}

func (s *session) handshakeFailure(err error) (detail, advice string) {
	var alert tls.AlertError
	var rh tls.RecordHeaderError
	var ne net.Error
	switch {
	case errors.As(err, &alert):
		return "the other side refused the handshake with the alert " + printable(err.Error(), 80),
			fmt.Sprintf("Something on the path does not serve %s as expected: a TLS-inspecting "+
				"device, or a server that is not Cisco's (check name overrides and DNS).", s.host)
	case errors.As(err, &rh):
		start := printable(string(rh.RecordHeader[:]), 5)
		return fmt.Sprintf("the answer is not TLS (it starts with %q)", start),
			"Something on the path answers in plain text, for instance a block page or a " +
				"captive portal: check the proxy's and firewall's rules for this host."
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET):
		return "the connection was closed during the handshake, before the server's certificate",
			fmt.Sprintf("A proxy or firewall that filters by server name (SNI) closes it, or "+
				"the server is not a TLS server: check their rules for %s.", s.host)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return fmt.Sprintf("no handshake answer within %v", s.timeout),
			"The tunnel opened but nothing answered the TLS hello: check the proxy's log and " +
				"any device between the proxy and the server."
	}
	return "handshake failed: " + printable(err.Error(), 160),
		"Check the proxy's log for this tunnel and any TLS-inspecting device on the path."
}

// stepCertificate checks the chain the server sent against the trust
// roots, the host name and the expected issuers. It returns the chain
// for the revocation step: the verified one; for a certificate that fails
// only on its name or dates, the chain it would have; otherwise the one
// sent.
func (s *session) stepCertificate(cs tls.ConnectionState) []*x509.Certificate {
	start := time.Now()
	certs := cs.PeerCertificates
	if len(certs) == 0 {
		s.fail(StepCertificate, since(start), "the server sent no certificate",
			"Something on the path answers that is not Cisco's server.", s.afterConnect())
		return nil
	}
	leaf := certs[0]
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	chains, verr := leaf.Verify(x509.VerifyOptions{
		DNSName:       s.host,
		Roots:         s.cfg.Roots,
		Intermediates: inter,
		CurrentTime:   s.cfg.Now(),
	})
	chain := certs
	if verr == nil {
		chain = chains[0]
	} else if relaxed := s.relaxedChain(leaf, inter); relaxed != nil {
		chain = relaxed
	}
	issuerOK := len(s.cfg.ExpectedIssuers) == 0 || issuerMatches(leaf.Issuer, s.cfg.ExpectedIssuers)
	ms := since(start)

	detail := fmt.Sprintf("leaf %s, issued by %s, valid until %s; chain: %s",
		printable(leaf.Subject.String(), 120), printable(leaf.Issuer.String(), 120),
		leaf.NotAfter.UTC().Format(time.DateOnly), chainNames(chain))
	expected := strings.Join(s.cfg.ExpectedIssuers, ", ")
	reSigned := "A TLS-inspecting proxy or firewall re-signs the traffic: Cisco says it " +
		"must not be decrypted, so exempt the tetra-defs hosts from inspection."

	var (
		uae x509.UnknownAuthorityError
		he  x509.HostnameError
		cie x509.CertificateInvalidError
	)
	switch {
	case verr == nil && issuerOK:
		detail += "; trusted"
		if expected != "" {
			detail += ", issuer expected (" + expected + ")"
		}
		s.pass(StepCertificate, ms, detail, "")
	case verr == nil:
		s.fail(StepCertificate, ms, detail+"; trusted here, but the issuer is not one of the "+
			"expected ("+expected+")", reSigned+" If the certificate is Cisco's and its "+
			"authority changed, add the issuer to correlation.expected_issuers.",
			s.inferredDownload(whyIssuer))
	case errors.As(verr, &uae):
		advice := "The chain does not lead to a root this machine trusts: the server may " +
			"not send its intermediate certificate, or the root store lacks the root (add " +
			"it with --ca to test)."
		if !issuerOK {
			advice = reSigned
		}
		s.fail(StepCertificate, ms, detail+"; not trusted: no trusted root issued it",
			advice, s.afterConnect())
	case errors.As(verr, &he):
		s.fail(StepCertificate, ms, fmt.Sprintf("%s; not valid for %s (it names %s)",
			detail, s.host, printable(strings.Join(leaf.DNSNames, ", "), 120)),
			"Something on the path answers for another name: a TLS-inspecting device, a "+
				"captive portal, or a wrong name override or DNS answer.", s.afterConnect())
	case errors.As(verr, &cie) && cie.Reason == x509.Expired:
		s.fail(StepCertificate, ms, fmt.Sprintf("%s; outside its validity (%s to %s) at %s",
			detail, cie.Cert.NotBefore.UTC().Format(time.RFC3339),
			cie.Cert.NotAfter.UTC().Format(time.RFC3339),
			s.cfg.Now().UTC().Format(time.RFC3339)),
			"Check this machine's clock and the endpoints'; if the clocks are right, the "+
				"server presents a stale certificate.", s.afterConnect())
	default:
		s.fail(StepCertificate, ms, detail+"; not valid: "+printable(verr.Error(), 160),
			reSigned, s.afterConnect())
	}
	return chain
}

// relaxedChain builds the chain of a certificate that failed only on its
// name or its dates, so that the revocation step can still check it.
func (s *session) relaxedChain(leaf *x509.Certificate, inter *x509.CertPool) []*x509.Certificate {
	for _, at := range []time.Time{s.cfg.Now(), leaf.NotAfter.Add(-time.Second),
		leaf.NotBefore.Add(time.Second)} {
		chains, err := leaf.Verify(x509.VerifyOptions{
			Roots: s.cfg.Roots, Intermediates: inter, CurrentTime: at,
		})
		if err == nil {
			return chains[0]
		}
	}
	return nil
}

// issuerMatches applies the rule of correlation.expected_issuers: a
// case-insensitive substring of the issuer's O or CN attributes.
func issuerMatches(issuer pkix.Name, expected []string) bool {
	values := append([]string{issuer.CommonName}, issuer.Organization...)
	for _, v := range values {
		v = strings.ToLower(v)
		for _, want := range expected {
			want = strings.ToLower(strings.TrimSpace(want))
			if want != "" && v != "" && strings.Contains(v, want) {
				return true
			}
		}
	}
	return false
}

// chainNames lists the common names of a chain, leaf first.
func chainNames(chain []*x509.Certificate) string {
	names := make([]string, len(chain))
	for i, c := range chain {
		n := c.Subject.CommonName
		if n == "" {
			n = c.Subject.String()
		}
		names[i] = printable(n, 80)
	}
	return strings.Join(names, " <- ")
}

// stepHTTP sends one request over the tunnel and waits for the answer's
// header. Any status proves that requests reach the server on this path.
func (s *session) stepHTTP(ctx context.Context, tc *tls.Conn) {
	start := time.Now()
	stop := context.AfterFunc(ctx, func() { tc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	tc.SetDeadline(time.Now().Add(s.timeout))

	host := s.host
	if s.port != 443 {
		host = s.target
	}
	req := &http.Request{
		Method: http.MethodGet,
		URL:    &url.URL{Scheme: "https", Host: s.target, Opaque: s.cfg.Path},
		Host:   host,
		Header: http.Header{"User-Agent": {s.cfg.UserAgent}},
		Close:  true,
	}
	err := req.Write(tc)
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(bufio.NewReader(tc), req)
	}
	ms := since(start)
	if err != nil {
		var ne net.Error
		detail := "no HTTP answer: " + printable(err.Error(), 120)
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			detail = "the connection closed before an HTTP answer"
		case errors.As(err, &ne) && ne.Timeout():
			detail = fmt.Sprintf("no HTTP answer within %v", s.timeout)
		}
		s.fail(StepHTTP, ms, fmt.Sprintf("GET %s: %s", s.cfg.Path, detail),
			"The handshake completed but the request got no answer: a device on the path "+
				"that inspects or limits the tunnel, or the server; check the proxy's log for "+
				"this tunnel.", s.afterConnect())
		return
	}
	resp.Body.Close()

	server := ""
	if v := resp.Header.Get("Server"); v != "" {
		server = ", server " + strconv.Quote(printable(v, 40))
	}
	s.pass(StepHTTP, ms, fmt.Sprintf("GET %s answered %d %s (%s%s): an HTTP answer came "+
		"back over the tunnel, so requests reach the definition server on this path; the "+
		"status concerns %s only, not the definitions", s.cfg.Path, resp.StatusCode,
		statusText(resp), resp.Proto, server, s.cfg.Path), "")
}

// printable keeps text from the network safe to print on one line: control
// characters become spaces, runs of space shrink, and it is cut at max
// runes.
func printable(s string, max int) string {
	var b strings.Builder
	n := 0
	space := false
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '\uFFFD' || (r >= 0x80 && r < 0xa0) {
			r = ' '
		}
		if r == ' ' {
			if space || b.Len() == 0 {
				continue
			}
			space = true
		} else {
			space = false
		}
		if n == max {
			return strings.TrimSpace(b.String()) + "..."
		}
		b.WriteRune(r)
		n++
	}
	return strings.TrimSpace(b.String())
}
