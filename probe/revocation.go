package probe

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ocsp"
)

// Bounds on what a revocation server may send. Real CRLs of public
// authorities stay well under a few MiB.
const (
	maxCRLBytes  = 32 << 20
	maxOCSPBytes = 1 << 20

	// clockSkew is how far in the future a CRL's or OCSP answer's
	// thisUpdate may lie before it counts as not yet valid.
	clockSkew = 5 * time.Minute
)

// verdict is what one revocation source said about one certificate.
type verdict int

const (
	unanswered verdict = iota // no current, signed answer
	good
	revoked
)

// source is the result of one CRL or OCSP fetch.
type source struct {
	verdict verdict
	text    string // for the detail
	authReq bool   // the proxy answered 407
}

// stepRevocation fetches the CRLs and OCSP answers that the certificates
// of the chain name, as Windows does before it trusts the chain, and checks
// them. A certificate counts as checked when one of its sources gives a
// current answer: Windows tries OCSP, then the CRL. Roots are not checked.
// The step is left out when the leaf's issuer is unknown (a chain that
// does not verify): no answer could be checked against it.
func (s *session) stepRevocation(ctx context.Context, chain []*x509.Certificate) {
	if len(chain) == 0 || issuerIn(chain[0], chain) == nil {
		// Without the issuer no answer can be checked, and the certificate
		// step has already failed: the chain does not verify.
		return
	}
	start := time.Now()
	client := s.fetchClient()
	defer client.CloseIdleConnections()

	var (
		parts                   []string
		failedSources           []string
		unchecked, revokedCerts []string
		authReq, leafBare       bool
	)
	for i, cert := range chain {
		if i > 0 && selfSigned(cert) {
			continue
		}
		name := "leaf"
		if i > 0 {
			name = "intermediate " + printable(cert.Subject.CommonName, 60)
		}
		crls, ocsps, skipped := revocationURLs(cert)
		for _, u := range skipped {
			parts = append(parts, fmt.Sprintf("%s: %s skipped (not HTTP)", name, printable(u, 80)))
		}
		if len(crls)+len(ocsps) == 0 {
			if i == 0 {
				parts = append(parts, "the leaf names no CRL or OCSP server")
				leafBare = true
			}
			continue
		}
		issuer := issuerIn(cert, chain)
		if issuer == nil {
			// Only in a chain that does not verify, which the certificate
			// step reports.
			parts = append(parts, name+": not checked, its issuer is not in the chain")
			continue
		}

		var results []source
		for _, u := range ocsps {
			results = append(results, s.checkOCSP(ctx, client, u, cert, issuer))
		}
		for _, u := range crls {
			results = append(results, s.checkCRL(ctx, client, u, cert, issuer))
		}
		best := unanswered
		for _, r := range results {
			parts = append(parts, name+" "+r.text)
			if r.verdict == unanswered {
				failedSources = append(failedSources, name+" "+r.text)
				authReq = authReq || r.authReq
			}
			best = max(best, r.verdict)
		}
		switch best {
		case revoked:
			revokedCerts = append(revokedCerts, name)
		case unanswered:
			unchecked = append(unchecked, name)
		}
	}
	ms := since(start)

	via := "fetched directly"
	if s.proxy != nil {
		via = "fetched through the proxy " + s.proxyHP
	}
	detail := via + ": " + strings.Join(parts, "; ")
	e := s.inferredDownload(whyRevocation)
	switch {
	case len(revokedCerts) > 0:
		s.fail(StepRevocation, ms, detail, fmt.Sprintf("The %s is revoked: endpoints reject "+
			"it (Windows reports 0x80092010). If it is not Cisco's, something on the path "+
			"re-signs the traffic.", strings.Join(revokedCerts, " and ")), e)
	case leafBare:
		s.fail(StepRevocation, ms, detail, "Cisco's certificates name revocation servers; "+
			"this one does not, so it is likely re-signed by a TLS-inspecting device, and "+
			"Windows may report CRYPT_E_NO_REVOCATION_CHECK (0x80092012).", e)
	case len(unchecked) > 0:
		advice := fmt.Sprintf("No revocation server gave a current answer for the %s: "+
			"Windows endpoints then fail the check (CRYPT_E_REVOCATION_OFFLINE 0x80092013, "+
			"WinHTTP 12057). Allow plain HTTP (port 80 for public authorities) to these "+
			"servers", strings.Join(unchecked, " and "))
		if s.proxy != nil {
			advice += " through the proxy"
		}
		advice += "."
		if authReq {
			advice += " The proxy asks for credentials on these fetches: Windows makes them " +
				"as the machine, so exempt revocation hosts from proxy authentication."
		}
		s.fail(StepRevocation, ms, detail, advice, e)
	default:
		note := ""
		if len(failedSources) > 0 {
			note = fmt.Sprintf("%d of the sources above failed; another answered, so "+
				"Windows can still check. Allow every revocation server the certificate "+
				"names, so that one outage does not stop updates.", len(failedSources))
		}
		s.pass(StepRevocation, ms, detail, note)
	}
}

// fetchClient returns an HTTP client that goes through the proxy (with the
// credentials) or direct, resolving names with the session's resolver.
// It never reads proxy settings from the environment.
func (s *session) fetchClient() *http.Client {
	tr := &http.Transport{
		DialContext:           s.dialContext,
		DisableKeepAlives:     true,
		ResponseHeaderTimeout: s.timeout,
		TLSHandshakeTimeout:   s.timeout,
		Proxy:                 nil,
	}
	if s.proxy != nil {
		p := *s.proxy
		if s.user != "" {
			p.User = url.UserPassword(s.user, s.password)
		}
		tr.Proxy = http.ProxyURL(&p)
	}
	return &http.Client{Transport: tr, Timeout: s.timeout}
}

// dialContext connects to the first answering address of a host:port,
// names resolved by the session's resolver.
func (s *session) dialContext(ctx context.Context, _, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, fmt.Errorf("port %q: %w", port, err)
	}
	addrs, err := s.lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	c, failures, _ := s.dialAny(ctx, addrs, p)
	if c == nil {
		return nil, errors.New(strings.Join(failures, "; "))
	}
	return c, nil
}

// revocationURLs splits a certificate's CRL and OCSP addresses into the
// HTTP ones Windows fetches and the others (LDAP).
func revocationURLs(cert *x509.Certificate) (crls, ocsps, skipped []string) {
	for _, u := range cert.CRLDistributionPoints {
		if isHTTP(u) {
			crls = append(crls, u)
		} else {
			skipped = append(skipped, u)
		}
	}
	for _, u := range cert.OCSPServer {
		if isHTTP(u) {
			ocsps = append(ocsps, u)
		} else {
			skipped = append(skipped, u)
		}
	}
	return crls, ocsps, skipped
}

func isHTTP(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawSubject, c.RawIssuer) && c.CheckSignatureFrom(c) == nil
}

// issuerIn returns the certificate of the chain that signed cert, or nil.
func issuerIn(cert *x509.Certificate, chain []*x509.Certificate) *x509.Certificate {
	for _, c := range chain {
		if c != cert && bytes.Equal(c.RawSubject, cert.RawIssuer) && cert.CheckSignatureFrom(c) == nil {
			return c
		}
	}
	return nil
}

// fetch sends req and returns the body of a 200 answer, at most limit
// bytes. A failed fetch returns the text for the detail.
func (s *session) fetch(client *http.Client, req *http.Request, limit int64) (
	body []byte, failure *source) {
	req.Header.Set("User-Agent", s.cfg.UserAgent)
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is in the detail already
		}
		return nil, &source{text: "no answer: " + printable(err.Error(), 160)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		f := &source{text: fmt.Sprintf("answered %d %s", resp.StatusCode, statusText(resp))}
		if resp.StatusCode == http.StatusProxyAuthRequired && s.proxy != nil {
			f.text += " (the proxy asks for credentials)"
			f.authReq = true
		}
		return nil, f
	}
	body, err = io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, &source{text: "answer cut short: " + printable(err.Error(), 120)}
	}
	if int64(len(body)) > limit {
		return nil, &source{text: fmt.Sprintf("answer larger than %d bytes", limit)}
	}
	return body, nil
}

// checkOCSP asks an OCSP responder about cert with a POST, as Windows does.
func (s *session) checkOCSP(ctx context.Context, client *http.Client, u string,
	cert, issuer *x509.Certificate) source {
	start := time.Now()
	out := s.ocspVerdict(ctx, client, u, cert, issuer)
	out.text = fmt.Sprintf("OCSP %s: %s (%.1f ms)", printable(u, 100), out.text, since(start))
	return out
}

func (s *session) ocspVerdict(ctx context.Context, client *http.Client, u string,
	cert, issuer *x509.Certificate) source {
	// A SHA-1 CertID is what responders expect; the hash only names the
	// certificate, it signs nothing.
	der, err := ocsp.CreateRequest(cert, issuer, nil)
	if err != nil {
		return source{text: "building the request: " + err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(der))
	if err != nil {
		return source{text: "bad URL: " + printable(err.Error(), 80)}
	}
	req.Header.Set("Content-Type", "application/ocsp-request")
	req.Header.Set("Accept", "application/ocsp-response")
	body, f := s.fetch(client, req, maxOCSPBytes)
	if f != nil {
		return *f
	}

	resp, err := ocsp.ParseResponseForCert(body, cert, issuer)
	if err != nil {
		var re ocsp.ResponseError
		if errors.As(err, &re) {
			return source{text: "the responder answered " + re.Error()}
		}
		return source{text: "answer does not parse or is not signed by the issuer: " +
			printable(err.Error(), 120)}
	}
	now := s.cfg.Now()
	switch {
	case resp.ThisUpdate.After(now.Add(clockSkew)):
		return source{text: "answer not valid before " + resp.ThisUpdate.UTC().Format(time.RFC3339) +
			" (check this machine's clock)"}
	case !resp.NextUpdate.IsZero() && now.After(resp.NextUpdate):
		return source{text: "answer is stale: its next update was due " +
			resp.NextUpdate.UTC().Format(time.RFC3339)}
	}
	switch resp.Status {
	case ocsp.Good:
		return source{verdict: good, text: "good"}
	case ocsp.Revoked:
		return source{verdict: revoked, text: "revoked at " + resp.RevokedAt.UTC().Format(time.RFC3339)}
	}
	return source{text: "unknown: the responder does not know the certificate"}
}

// checkCRL fetches a CRL and looks for cert's serial number in it.
func (s *session) checkCRL(ctx context.Context, client *http.Client, u string,
	cert, issuer *x509.Certificate) source {
	start := time.Now()
	out := s.crlVerdict(ctx, client, u, cert, issuer)
	out.text = fmt.Sprintf("CRL %s: %s (%.1f ms)", printable(u, 100), out.text, since(start))
	return out
}

func (s *session) crlVerdict(ctx context.Context, client *http.Client, u string,
	cert, issuer *x509.Certificate) source {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return source{text: "bad URL: " + printable(err.Error(), 80)}
	}
	body, f := s.fetch(client, req, maxCRLBytes)
	if f != nil {
		return *f
	}

	der := body
	if b, _ := pem.Decode(body); b != nil {
		der = b.Bytes
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		return source{text: fmt.Sprintf("%d bytes that are not a CRL: %s", len(body),
			printable(err.Error(), 100))}
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return source{text: "not signed by the certificate's issuer: " + printable(err.Error(), 100)}
	}
	now := s.cfg.Now()
	switch {
	case crl.ThisUpdate.After(now.Add(clockSkew)):
		return source{text: "CRL not valid before " + crl.ThisUpdate.UTC().Format(time.RFC3339) +
			" (check this machine's clock)"}
	case !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate):
		return source{text: "CRL expired: its next update was due " +
			crl.NextUpdate.UTC().Format(time.RFC3339)}
	}
	for _, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber != nil && e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			return source{verdict: revoked, text: "lists the certificate as revoked at " +
				e.RevocationTime.UTC().Format(time.RFC3339)}
		}
	}
	until := "no next update named"
	if !crl.NextUpdate.IsZero() {
		until = "current until " + crl.NextUpdate.UTC().Format(time.RFC3339)
	}
	return source{verdict: good, text: fmt.Sprintf("signed by the issuer, %s, %d entries, "+
		"certificate not listed", until, len(crl.RevokedCertificateEntries))}
}
