package report

import (
	"fmt"
	"strings"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// netBIOSLen is the length Windows cuts a computer name to for its
// NetBIOS name, which is the name of its machine account.
const netBIOSLen = 15

// matcher finds the endpoint row of a client: by a machine account the
// client authenticated with, or by its address.
type matcher struct {
	eps    []Endpoint
	byIP   map[string]int
	byHost map[string]int // host key, and its NetBIOS form, to the row
}

func newMatcher(eps []Endpoint) *matcher {
	m := &matcher{eps: eps, byIP: map[string]int{}, byHost: map[string]int{}}
	for i, ep := range eps {
		if ep.IP != "" {
			if _, dup := m.byIP[canonicalIP(ep.IP)]; !dup {
				m.byIP[canonicalIP(ep.IP)] = i
			}
		}
		k := hostKey(ep.Host)
		if k == "" {
			continue
		}
		if _, dup := m.byHost[k]; !dup {
			m.byHost[k] = i
		}
		if len(k) > netBIOSLen {
			if _, dup := m.byHost[k[:netBIOSLen]]; !dup {
				m.byHost[k[:netBIOSLen]] = i
			}
		}
	}
	return m
}

// match returns the row of the endpoint that client ip with users is, and
// how it matched; -1 when none. A machine account is the stronger sign: an
// address may have passed to another machine since the file was gathered,
// so an address match is refused when the client authenticated as a
// machine other than the row's host.
func (m *matcher) match(ip string, users []string) (int, string) {
	var accounts []string
	for _, u := range users {
		if h := machineAccount(u); h != "" {
			accounts = append(accounts, strings.ToLower(h))
		}
	}
	for _, a := range accounts {
		if i, ok := m.byHost[a]; ok {
			return i, MatchMachineAccount
		}
	}
	i, ok := m.byIP[canonicalIP(ip)]
	if !ok {
		return -1, ""
	}
	if k := hostKey(m.eps[i].Host); k != "" && len(accounts) > 0 {
		return -1, "" // the address now belongs to another machine
	}
	return i, MatchIP
}

// correlate matches the imported endpoints to the rows, judges each
// match, and lists the endpoints no client matched.
func (b *Builder) correlate(rep *Report) {
	if b.opts.Endpoints == nil && b.opts.ImportErrors == nil {
		return
	}
	imp := &Import{Endpoints: len(b.opts.Endpoints), Errors: b.opts.ImportErrors}
	if imp.Errors == nil {
		imp.Errors = []RowError{}
	}
	rep.LastErrors = imp

	m := newMatcher(b.opts.Endpoints)
	matched := make([]bool, len(b.opts.Endpoints))
	window := b.correlation.Correlation().StateWindow()
	for i := range rep.Clients {
		r := &rep.Clients[i]
		k, by := m.match(r.ClientIP, r.Users)
		if k < 0 {
			continue
		}
		ep := b.opts.Endpoints[k]
		matched[k] = true
		code := ep.LastError
		r.Reported, r.MatchedBy, r.ReportedLastError = &ep, by, &code
		if ep.Host != "" {
			r.HostName = ep.Host
		}
		r.Agreement = inspect.AgreementDisagree
		if code == r.ExpectedLastError {
			r.Agreement = inspect.AgreementAgree
		}
		r.AgreementMeaning = agreementMeaning(code, r, b.until, window)
	}

	for k, ep := range b.opts.Endpoints {
		if matched[k] {
			imp.Matched++
			continue
		}
		rep.NotSeen = append(rep.NotSeen, NotSeen{
			Endpoint:          ep,
			ExpectedLastError: inspect.LastErrorProxyConnect,
			LastErrorBasis:    inspect.Inferred,
			Agreement:         inspect.AgreementNotSeen,
			AgreementMeaning:  notSeenMeaning(ep.LastError),
		})
	}
}

// ReportedByIP maps the endpoints' own values to the addresses of the
// clients they match (by machine account or address, as reports match
// them), for inspect.Clients.SetReported. Endpoints that match no client
// are keyed by their own address, when they have one, so that
// Clients.NotSeen lists them.
func ReportedByIP(eps []Endpoint, clients []inspect.Client) map[string]inspect.LastError {
	out := make(map[string]inspect.LastError)
	m := newMatcher(eps)
	matched := make([]bool, len(eps))
	for _, c := range clients {
		if k, _ := m.match(c.ClientIP, c.Users); k >= 0 {
			out[c.ClientIP] = eps[k].LastError
			matched[k] = true
		}
	}
	for k, ep := range eps {
		if _, taken := out[ep.IP]; !matched[k] && ep.IP != "" && !taken {
			out[ep.IP] = ep.LastError
		}
	}
	return out
}

// codeInfo is what the report knows of a value an endpoint may report.
type codeInfo struct {
	Meaning    string
	revocation bool // a Windows revocation-check failure
}

// windowsCodes are the Windows and WinHTTP errors that admins may find
// instead of a connector code when they gather values from endpoints
// (DOMAIN.md).
var windowsCodes = map[inspect.LastError]codeInfo{
	0x80092012: {"Windows could not check the certificate's revocation " +
		"(CRYPT_E_NO_REVOCATION_CHECK)", true},
	0x80092013: {"the revocation server was offline or unreachable " +
		"(CRYPT_E_REVOCATION_OFFLINE)", true},
	0x80092010: {"the certificate was revoked (CRYPT_E_REVOKED)", true},
	12007:      {"WinHTTP: the server name did not resolve", false},
	12002:      {"WinHTTP: the request timed out", false},
	12029:      {"WinHTTP: the connection could not be made", false},
	12057:      {"WinHTTP: the certificate's revocation check failed", true},
}

// lookupCode describes a reported or expected value; ok is false for a
// value nothing is known of.
func lookupCode(c inspect.LastError) (codeInfo, bool) {
	if c == inspect.LastErrorNone {
		return codeInfo{Meaning: "no error"}, true
	}
	if info, ok := inspect.LookupLastError(c); ok {
		return codeInfo{Meaning: info.Meaning}, true
	}
	info, ok := windowsCodes[c]
	return info, ok
}

// describe writes a code with its meaning.
func describe(c inspect.LastError) string {
	if info, ok := lookupCode(c); ok {
		return fmt.Sprintf("%s, %s", codeText(c), info.Meaning)
	}
	return codeText(c) + ", a value not known to tetrascope"
}

// agreementMeaning says in plain words what the endpoint's own value rep
// means next to what this proxy saw of the client, as of until.
func agreementMeaning(rep inspect.LastError, r *Row, until time.Time,
	window time.Duration) string {

	exp := r.ExpectedLastError
	challenged := r.Counts[inspect.AuthRequired] + r.Counts[inspect.AuthFailed]
	recent := !r.LastSeen.IsZero() && until.Sub(r.LastSeen) < window
	seen := r.LastSeen.UTC().Format(time.RFC3339)
	revocationDiag := r.Diagnosis == inspect.DiagnosisRevocationBlocked ||
		r.Diagnosis == inspect.DiagnosisRevocationOutside

	if rep == exp {
		switch rep {
		case inspect.LastErrorNone:
			return "Both sides say the last update worked."
		case inspect.LastErrorProxyAuth:
			return "The endpoint records the proxy authentication failure this proxy saw."
		case inspect.LastErrorDownloadFailed:
			if r.Diagnosis != "" {
				return "The endpoint reached a proxy and its download failed, as this proxy " +
					"saw; the cause found here is " + r.Diagnosis + "."
			}
			return "The endpoint reached a proxy and its download failed, as this proxy saw."
		case inspect.LastErrorProxyConnect:
			return "The endpoint cannot reach its proxy, and it has made no attempt through " +
				"this one within the state window: look at the network path from the " +
				"endpoint to this proxy, and at its proxy setting."
		}
		return "The endpoint reports the value this proxy expected."
	}

	switch rep {
	case inspect.LastErrorProxyAuth:
		if challenged == 0 {
			return "The endpoint records a proxy authentication failure, but this proxy " +
				"sent it no 407 in the report's window: another proxy in its path refuses " +
				"its credentials, or the failure is older than the window."
		}
		return fmt.Sprintf("The endpoint records a proxy authentication failure; this proxy "+
			"sent it 407 answers (%d in the window), but its view points elsewhere "+
			"(expected %s): compare the times of those answers with the endpoint's last "+
			"update, and look for another proxy in its path.", challenged, describe(exp))

	case inspect.LastErrorProxyConnect:
		if r.Diagnosis == inspect.DiagnosisUpstreamProxy {
			return "The endpoint says it cannot connect to its proxy, and this proxy could " +
				"not get through its upstream proxy: the endpoint may record that failure, " +
				"one hop further, as its own (which code it records then is not " +
				"documented). Repair the upstream path first."
		}
		if recent {
			return "The endpoint says it cannot connect to its proxy, yet this proxy saw it " +
				"at " + seen + ": its proxy setting for updates points elsewhere (another " +
				"proxy, an old address, a PAC file), or its value is older than that."
		}
		return "The endpoint says it cannot connect to its proxy; this proxy last saw it at " +
			seen + ", before the state window: the path to this proxy, or the endpoint's " +
			"proxy setting, has most likely changed since."

	case inspect.LastErrorDownloadFailed:
		switch {
		case exp == inspect.LastErrorProxyConnect:
			return "The endpoint reached a proxy and its download failed, but it made no " +
				"attempt through this proxy within the state window: it uses another proxy, " +
				"where the download fails."
		case exp == inspect.LastErrorProxyAuth:
			return "This proxy refused the endpoint's credentials, but the endpoint records " +
				"a download failure after reaching a proxy: it got through on another attempt " +
				"or another proxy and failed later; look at its other failures."
		case r.State == inspect.StateHealthy && r.LastTetraOK != nil:
			return "The endpoint records a failed download, but this proxy saw one succeed " +
				"at " + r.LastTetraOK.UTC().Format(time.RFC3339) + ": the value is older " +
				"than that success (whether a success clears it is not documented), or the " +
				"endpoint also updates over another path that fails."
		}
		return "This proxy saw too little of the endpoint to judge (state " + string(r.State) +
			"): the failed download happened through another proxy or before the report's " +
			"window."

	case inspect.LastErrorNone:
		if exp == inspect.LastErrorProxyConnect {
			return "The endpoint reports no error but has made no attempt through this proxy " +
				"within the state window: it updates over another path (another proxy, or " +
				"direct)."
		}
		return "The endpoint reports no error, but this proxy saw its updates fail (expected " +
			describe(exp) + "): it succeeded over another path, or the failures here are " +
			"newer than its value; compare with its last update time."
	}

	if info, ok := lookupCode(rep); ok && info.revocation {
		if revocationDiag {
			return "The endpoint shows " + describe(rep) + "; this proxy found the same " +
				"cause (" + r.Diagnosis + ") and expects the connector's own code, " +
				describe(exp) + "."
		}
		return "The endpoint shows " + describe(rep) + ", but this proxy saw no failed " +
			"revocation check: the check goes over another path, or fails after this proxy " +
			"(look for a device that blocks plain HTTP to the CRL and OCSP hosts)."
	}
	return "The endpoint shows " + describe(rep) + " where this proxy's view suggests " +
		describe(exp) + ": compare with the client's events."
}

// notSeenMeaning says what an imported endpoint that no sensor saw means,
// by the value it reported.
func notSeenMeaning(rep inspect.LastError) string {
	switch rep {
	case inspect.LastErrorProxyConnect:
		return "Consistent: the endpoint cannot reach its proxy, and this proxy never saw " +
			"it. If this proxy is meant to be its proxy, check the path to it and the " +
			"endpoint's proxy setting."
	case inspect.LastErrorNone:
		return "The endpoint updates without this proxy: it uses another proxy or goes direct."
	case inspect.LastErrorProxyAuth, inspect.LastErrorDownloadFailed:
		return "The endpoint reached a proxy (" + describe(rep) + "), but not this one: its " +
			"proxy setting points elsewhere, and the failure happens there."
	}
	return "This proxy never saw the endpoint, which shows " + describe(rep) + "."
}
