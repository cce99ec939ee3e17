package inspect

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// The diagnoses of DESIGN.md, in their order of priority: the first that
// applies to a client is its main diagnosis.
const (
	DiagnosisProxyAuth           = "proxy_auth"
	DiagnosisUpstreamProxy       = "upstream_proxy"
	DiagnosisDNS                 = "dns"
	DiagnosisRevocationBlocked   = "revocation_blocked"
	DiagnosisRevocationOutside   = "revocation_outside"
	DiagnosisTLSInterception     = "tls_interception"
	DiagnosisConnectBlocked      = "connect_blocked"
	DiagnosisInterruptedDownload = "interrupted_download"
	DiagnosisSilent              = "silent"
)

// DiagnosisNames lists the diagnoses in their order of priority.
var DiagnosisNames = []string{
	DiagnosisProxyAuth, DiagnosisUpstreamProxy, DiagnosisDNS,
	DiagnosisRevocationBlocked, DiagnosisRevocationOutside, DiagnosisTLSInterception,
	DiagnosisConnectBlocked, DiagnosisInterruptedDownload, DiagnosisSilent,
}

// InterruptedThreshold is the number of aborted tetra downloads, since the
// last successful one and within the state window, that makes
// interrupted_download.
const InterruptedThreshold = 3

// maxEvidence bounds the event ids listed per diagnosis; the newest are
// kept.
const maxEvidence = 50

// Diagnosis is one root cause found for a client: its name (one of
// DiagnosisNames), the ids of the events it rests on, oldest first, and
// what the admin should do, in plain words.
type Diagnosis struct {
	Name     string  `json:"name"`
	Evidence []int64 `json:"evidence"`
	Advice   string  `json:"advice"`
}

// advice holds the general advice per diagnosis; a client's Diagnosis puts
// what is particular to it (a byte count, an issuer) in front.
var advice = map[string]string{
	DiagnosisProxyAuth: "The proxy refused this client's credentials, or asked for some and " +
		"got none it accepted. " +
		"Check the account the connector authenticates with: a service often runs as the " +
		"machine account, which has no proxy password. Either give it working credentials " +
		"or let the definition and revocation hosts through without authentication.",
	DiagnosisUpstreamProxy: "This proxy could not reach the next proxy in the chain, or that " +
		"proxy refused the request. Check the upstream proxy's address and health and that it " +
		"allows the definition and revocation hosts. The endpoint only knows that its own " +
		"proxy failed it; the break is one hop further.",
	DiagnosisDNS: "The name of a definition or revocation host did not resolve at the proxy. " +
		"Check the DNS servers the proxy uses and whether they can resolve the Cisco and " +
		"certificate-authority names.",
	DiagnosisRevocationBlocked: "The endpoint's certificate revocation check failed at this " +
		"proxy, and the endpoint then abandoned the definition server. Let plain HTTP on " +
		"port 80 to the certificate authority's CRL and OCSP hosts through, without " +
		"authentication, for this client.",
	DiagnosisRevocationOutside: "The endpoint abandoned the definition server right after " +
		"receiving its certificate, and asked this proxy for no revocation data: it checks " +
		"revocation over another path, which is blocked. Open that path to the CRL and OCSP " +
		"hosts, or make the system's proxy setting (WinHTTP) point to this proxy as well.",
	DiagnosisTLSInterception: "The definition server's certificate was not issued by an " +
		"expected authority: a device between this proxy and Cisco decrypts the traffic and " +
		"signs it again. Exempt the definition hosts from TLS inspection on that device.",
	DiagnosisConnectBlocked: "The proxy could not open a connection to a definition or " +
		"revocation host. Check the firewall and routing from the proxy to those hosts, " +
		"port 443 for definitions and port 80 for revocation.",
	DiagnosisInterruptedDownload: "Definition downloads keep breaking off after data began to " +
		"flow. Look for something that cuts long transfers: an idle or session timeout, a " +
		"size limit, content scanning, or an unstable link.",
	DiagnosisSilent: "The client made no attempt to download definitions through this proxy " +
		"for the whole state window. Check that the connector still runs and still uses this proxy; an endpoint " +
		"that cannot reach its proxy at all leaves no trace here.",
}

// Advice returns the general advice for the diagnosis called name, or ""
// for an unknown name. A client's own Diagnosis.Advice adds what is
// particular to it.
func Advice(name string) string { return advice[name] }

// noDeadline marks a health that time alone will not change.
const noDeadline = math.MaxInt64

// health is the judgement of a client at one moment.
type health struct {
	state              ClientState
	attempts, failures int
	diagnoses          []Diagnosis
	expected           LastError
	basis              Basis
	reason             string

	// deadline is the earliest time at which the judgement may change
	// with no new event; noDeadline when it never will.
	deadline int64
}

// scratch holds buffers reused from one evaluation to the next.
type scratch struct {
	passed, passedRev []int64
	failEnds          []int64
	rejects           []*record
	// ids back the evidence a diagnosis gathers (see diagnose), bytes
	// the byte counts of aborted downloads.
	ids   [numFound][]int64
	bytes []int64
}

// judge is one evaluation of one client at one moment.
type judge struct {
	cs       *Clients
	cl       *client
	at       int64 // the moment, Unix nanoseconds
	from     int64 // the state window is (from, ∞)
	deadline int64
	h        health

	lastFailure Outcome // the latest tetra failure counted, by end
	lastFailEnd int64
	lastFailID  int64
}

// evaluate judges cl at time at: its state, attempts, diagnoses and
// expected lasterror.
func (cs *Clients) evaluate(cl *client, at int64) health {
	j := judge{cs: cs, cl: cl, at: at, from: at - cs.sw, deadline: noDeadline}
	j.collectPassed()
	j.countTetra()
	j.judgeState()
	j.diagnose()
	j.expect()
	j.h.deadline = j.deadline
	return j.h
}

// due notes a future moment at which the judgement may change.
func (j *judge) due(t int64) {
	if t > j.at && t < j.deadline {
		j.deadline = t
	}
}

// inWindow reports whether r ended within the state window.
func (j *judge) inWindow(r *record) bool { return r.end > j.from }

// current reports whether r ended within the state window and after the
// client's latest successful tetra download: a failure that a later
// success followed explains nothing any more.
func (j *judge) current(r *record) bool {
	return j.inWindow(r) && (!j.cl.hasOK || later(r.end, r.id, j.cl.okEnd, j.cl.okID))
}

// passesAuth reports whether an event of outcome o got past the proxy's
// authentication.
func passesAuth(o Outcome) bool {
	return o != AuthRequired && o != AuthFailed && o != Denied && o != BadRequest
}

// collectPassed gathers, sorted, the start times of the update events that
// got past authentication, and of the revocation ones among them.
func (j *judge) collectPassed() {
	s := &j.cs.scratch
	s.passed, s.passedRev = s.passed[:0], s.passedRev[:0]
	for i := range j.cl.recent.len() {
		r := j.cl.recent.at(i)
		if !passesAuth(r.outcome) {
			continue
		}
		s.passed = append(s.passed, r.start)
		if r.flags&fRevocation != 0 {
			s.passedRev = append(s.passedRev, r.start)
		}
	}
	slices.Sort(s.passed)
	slices.Sort(s.passedRev)
}

// anyIn reports whether sorted holds a value in [lo, hi].
func anyIn(sorted []int64, lo, hi int64) bool {
	i, _ := slices.BinarySearch(sorted, lo)
	return i < len(sorted) && sorted[i] <= hi
}

// answered reports whether an authentication failure or challenge r was
// followed, within the auth window, by a request of the client that got
// past authentication.
func (j *judge) answered(r *record) bool {
	return anyIn(j.cs.scratch.passed, r.start, r.end+j.cs.aw)
}

// pending reports whether r is a challenge still waiting for its answer.
func (j *judge) pending(r *record) bool {
	return r.outcome == AuthRequired && j.at < r.end+j.cs.aw && !j.answered(r)
}

// unanswered reports whether r is an authentication failure or a challenge
// whose auth window passed, in both cases with no answer.
func (j *judge) unanswered(r *record) bool {
	switch r.outcome {
	case AuthFailed:
		return !j.answered(r)
	case AuthRequired:
		return j.at >= r.end+j.cs.aw && !j.answered(r)
	}
	return false
}

// countTetra counts the tetra attempts and failures in the state window
// and notes when records leave it.
func (j *judge) countTetra() {
	for i := range j.cl.recent.len() {
		r := j.cl.recent.at(i)
		if !j.inWindow(r) {
			continue
		}
		j.due(r.end + j.cs.sw)
		if r.outcome == AuthRequired && j.pending(r) {
			j.due(r.end + j.cs.aw)
		}
		if r.flags&fTetra == 0 {
			continue
		}

		failed := r.outcome.Failure()
		switch r.outcome {
		case AuthRequired, AuthFailed:
			if !j.unanswered(r) {
				continue // part of the attempt that follows, or still pending
			}
			failed = true
		}
		j.h.attempts++
		if failed {
			j.h.failures++
			if j.lastFailure == "" || later(r.end, r.id, j.lastFailEnd, j.lastFailID) {
				j.lastFailure, j.lastFailEnd, j.lastFailID = r.outcome, r.end, r.id
			}
		}
	}
}

// activeTetra reports whether any tetra event, pending challenges
// included, ended within the state window.
func (j *judge) activeTetra() bool {
	for i := range j.cl.recent.len() {
		if r := j.cl.recent.at(i); r.flags&fTetra != 0 && j.inWindow(r) {
			return true
		}
	}
	return false
}

func (j *judge) judgeState() {
	okInWindow := j.cl.hasOK && j.cl.okEnd > j.from
	if okInWindow {
		j.due(j.cl.okEnd + j.cs.sw)
	}
	switch {
	case okInWindow:
		j.h.state = StateHealthy
	case j.h.attempts > 0:
		j.h.state = StateFailing
	case j.activeTetra():
		j.h.state = StateUnknown // only a challenge still waiting for its answer
	case j.cl.firstSeenN <= j.from:
		j.h.state = StateSilent
	default:
		j.h.state = StateUnknown
		j.due(j.cl.firstSeenN + j.cs.sw)
	}
}

// found accumulates the evidence of one diagnosis.
// numFound is how many diagnoses gather their evidence in a found.
const numFound = 8

type found struct {
	ids   []int64
	tetra bool // some evidence is tetra traffic
}

func (f *found) add(r *record) {
	f.ids = append(f.ids, r.id)
	f.tetra = f.tetra || r.flags&fTetra != 0
}

// diagnose finds every current diagnosis, in priority order.
func (j *judge) diagnose() {
	j.collectTetraFailures()
	// The evidence is gathered in reused buffers; Diagnosis gets copies.
	s := &j.cs.scratch
	var f [numFound]found
	for i := range f {
		f[i].ids = s.ids[i][:0]
	}
	auth, upstream, dns, connect := &f[0], &f[1], &f[2], &f[3]
	interrupted, blocked, outside, intercepted := &f[4], &f[5], &f[6], &f[7]
	bytes := s.bytes[:0]
	for i := range j.cl.recent.len() {
		r := j.cl.recent.at(i)
		if !j.current(r) || r.flags&fRevocation != 0 && !j.related(r) {
			continue
		}
		switch r.outcome {
		case AuthFailed, AuthRequired:
			if j.unanswered(r) {
				auth.add(r)
			}
		case UpstreamUnreachable, UpstreamRefused:
			upstream.add(r)
		case DNSFailure:
			dns.add(r)
		case ConnectRefused, ConnectTimeout, Unreachable:
			connect.add(r)
		case DownloadAborted:
			if r.flags&fTetra != 0 {
				interrupted.add(r)
				bytes = append(bytes, r.bytesDown)
			}
		}
	}
	j.revocation(blocked, outside)
	j.interception(intercepted)

	var out []Diagnosis
	add := func(name string, f *found, particular string) {
		if len(f.ids) == 0 {
			return
		}
		text := Advice(name)
		if particular != "" {
			text = particular + " " + text
		}
		out = append(out, Diagnosis{Name: name, Evidence: evidence(f.ids), Advice: text})
	}
	add(DiagnosisProxyAuth, auth, "")
	add(DiagnosisUpstreamProxy, upstream, "")
	add(DiagnosisDNS, dns, "")
	add(DiagnosisRevocationBlocked, blocked, "")
	add(DiagnosisRevocationOutside, outside, "")
	if len(intercepted.ids) > 0 {
		add(DiagnosisTLSInterception, intercepted,
			fmt.Sprintf("The certificate was issued by %q.", j.cl.badIssuer))
	}
	add(DiagnosisConnectBlocked, connect, "")
	if len(interrupted.ids) >= InterruptedThreshold {
		add(DiagnosisInterruptedDownload, interrupted, fmt.Sprintf(
			"%d downloads broke off, typically after %s.", len(interrupted.ids),
			byteCount(median(bytes))))
	}
	if j.h.state == StateSilent {
		id := j.cl.lastID
		if j.cl.hasTetra {
			id = j.cl.lastTID
		}
		add(DiagnosisSilent, &found{ids: []int64{id}}, fmt.Sprintf(
			"No definition download was attempted within the last %s.",
			time.Duration(j.cs.sw)))
	}
	j.h.diagnoses = out

	for i := range f {
		s.ids[i] = f[i].ids
	}
	s.bytes = bytes
}

// collectTetraFailures gathers, sorted, the end times of the current tetra
// attempts that failed.
func (j *judge) collectTetraFailures() {
	s := &j.cs.scratch
	s.failEnds = s.failEnds[:0]
	for i := range j.cl.recent.len() {
		r := j.cl.recent.at(i)
		if r.flags&fTetra == 0 || !j.current(r) {
			continue
		}
		if r.outcome.Failure() && r.outcome != AuthFailed || j.unanswered(r) {
			s.failEnds = append(s.failEnds, r.end)
		}
	}
	slices.Sort(s.failEnds)
}

// related reports whether revocation event r bears on a definition
// download: a failed tetra attempt of the client ended while r ran or within
// the revocation window after it. Revocation traffic for other purposes
// (a browser checking some other site's certificate) is left alone.
func (j *judge) related(r *record) bool {
	return anyIn(j.cs.scratch.failEnds, r.start, r.end+j.cs.rw)
}

// revocation pairs failed revocation fetches with the tetra tunnels the
// client abandoned after them (revocation_blocked), and finds abandoned
// tunnels with no revocation request at all around them
// (revocation_outside). A tunnel whose certificate came from an unexpected
// issuer is left to tls_interception.
func (j *judge) revocation(blocked, outside *found) {
	s := &j.cs.scratch
	s.rejects = s.rejects[:0]
	for i := range j.cl.recent.len() {
		if r := j.cl.recent.at(i); r.flags&fRejected != 0 && j.current(r) {
			s.rejects = append(s.rejects, r)
		}
	}
	if len(s.rejects) == 0 {
		return
	}

	cut := j.from
	var unexplained []*record
	for _, t := range s.rejects {
		paired := false
		for i := range j.cl.recent.len() {
			r := j.cl.recent.at(i)
			if r.flags&fRevocation == 0 || !j.revocationFailed(r, t) {
				continue
			}
			if r.start <= t.end && t.end <= r.end+j.cs.rw && j.afterOK(r) {
				blocked.add(r)
				paired = true
			}
		}
		switch {
		case paired:
			blocked.add(t)
		case t.flags&fIssuerUnexpected == 0:
			unexplained = append(unexplained, t)
			cut = min(cut, t.start-j.cs.rw)
		}
	}
	if len(unexplained) == 0 {
		return
	}

	// Any revocation request from the client, whatever its fate, shows
	// that its checks do come through this proxy.
	for i := range j.cl.recent.len() {
		if r := j.cl.recent.at(i); r.flags&fRevocation != 0 && r.end > cut {
			return
		}
	}
	for _, t := range unexplained {
		outside.add(t)
	}
}

// revocationFailed reports whether revocation fetch r failed as far as the
// tetra tunnel t could tell: a failure outcome, or a challenge that no
// accepted revocation request answered before t ended.
func (j *judge) revocationFailed(r, t *record) bool {
	if r.outcome == AuthRequired {
		return !anyIn(j.cs.scratch.passedRev, r.start, t.end)
	}
	return r.outcome.Failure()
}

// afterOK reports whether r ended after the latest successful download.
func (j *judge) afterOK(r *record) bool {
	return !j.cl.hasOK || later(r.end, r.id, j.cl.okEnd, j.cl.okID)
}

// interception finds tetra tunnels in the window whose certificate issuer
// was visible and unexpected, provided the latest visible issuer is one of
// them: a later tunnel with the expected issuer shows the path is clean
// again.
func (j *judge) interception(f *found) {
	var last *record
	for i := range j.cl.recent.len() {
		r := j.cl.recent.at(i)
		if r.flags&fIssuerSeen != 0 && j.inWindow(r) &&
			(last == nil || later(r.end, r.id, last.end, last.id)) {
			last = r
		}
	}
	if last == nil || last.flags&fIssuerUnexpected == 0 {
		return
	}
	var clean *record // the latest tunnel with an expected issuer
	for i := range j.cl.recent.len() {
		r := j.cl.recent.at(i)
		if r.flags&fIssuerSeen != 0 && r.flags&fIssuerUnexpected == 0 && j.inWindow(r) &&
			(clean == nil || later(r.end, r.id, clean.end, clean.id)) {
			clean = r
		}
	}
	for i := range j.cl.recent.len() {
		r := j.cl.recent.at(i)
		if r.flags&fIssuerUnexpected != 0 && j.inWindow(r) &&
			(clean == nil || later(r.end, r.id, clean.end, clean.id)) {
			f.add(r)
		}
	}
}

// expect sets the lasterror the client's endpoint most likely shows, from
// its main diagnosis, or from its state when no diagnosis names a failure.
func (j *judge) expect() {
	h := &j.h
	set := func(code LastError, basis Basis, reason string) {
		h.expected, h.basis, h.reason = code, basis, reason
	}
	onTetra := func(name string) Basis {
		for _, d := range h.diagnoses {
			if d.Name == name && j.anyTetra(d.Evidence) {
				return Documented
			}
		}
		return Inferred
	}

	main := ""
	if len(h.diagnoses) > 0 {
		main = h.diagnoses[0].Name
	}
	switch main {
	case DiagnosisProxyAuth:
		if onTetra(main) == Documented {
			set(LastErrorProxyAuth, Documented, "the proxy rejected the client's credentials "+
				"for the download, or challenged it and saw no success after")
			return
		}
		set(LastErrorDownloadFailed, Inferred, "the download got through the proxy's "+
			"authentication but the revocation fetch before it did not; the endpoint most "+
			"likely records a download failure after reaching the proxy")
		return
	case DiagnosisUpstreamProxy:
		set(LastErrorDownloadFailed, onTetra(main),
			"the client reached this proxy, which could not get through the upstream proxy; "+
				"the root cause is what 4294965193 (-2103) names, one hop further")
		return
	case DiagnosisDNS, DiagnosisConnectBlocked:
		set(LastErrorDownloadFailed, onTetra(main),
			"the client reached this proxy, which could not reach the definition or revocation host")
		return
	case DiagnosisRevocationBlocked, DiagnosisRevocationOutside:
		set(LastErrorDownloadFailed, Inferred,
			"the client reached this proxy and the download failed on the certificate's "+
				"revocation check; which code the endpoint records for that is not documented")
		return
	case DiagnosisInterruptedDownload:
		set(LastErrorDownloadFailed, Documented,
			"the client reached this proxy and its downloads broke off")
		return
	case DiagnosisSilent:
		set(LastErrorProxyConnect, Inferred,
			"the client stopped appearing at this proxy; if it still tries to update, "+
				"it cannot connect to the proxy")
		return
	}

	switch h.state {
	case StateHealthy:
		set(LastErrorNone, Inferred,
			"a definition download succeeded within the state window; "+
				"that a success clears the recorded code is assumed")
	case StateFailing:
		code, basis := EventLastError(EndpointTetra, j.lastFailure)
		if j.lastFailure == AuthRequired || j.lastFailure == AuthFailed {
			code, basis = LastErrorProxyAuth, Documented
		}
		set(code, basis, "the client reached this proxy, then its definition download failed ("+
			string(j.lastFailure)+")")
	default:
		set(LastErrorNone, Inferred, "not enough seen of the client yet")
	}
}

// anyTetra reports whether one of the ids is a kept tetra record.
func (j *judge) anyTetra(ids []int64) bool {
	for i := range j.cl.recent.len() {
		r := j.cl.recent.at(i)
		if r.flags&fTetra != 0 && slices.Contains(ids, r.id) {
			return true
		}
	}
	return false
}

// evidence returns ids sorted, without repeats, keeping the newest
// maxEvidence.
func evidence(ids []int64) []int64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > maxEvidence {
		out = slices.Clone(out[len(out)-maxEvidence:])
	}
	return out
}

func median(v []int64) int64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// byteCount writes n in bytes, with a binary multiple when that is easier to
// read.
func byteCount(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	f, suffix := float64(n)/unit, "KiB"
	for _, s := range []string{"MiB", "GiB", "TiB"} {
		if f < unit {
			break
		}
		f, suffix = f/unit, s
	}
	return fmt.Sprintf("%d bytes (%.1f %s)", n, f, suffix)
}

// clientGaveUp lists the alerts a client sends when it rejects the server's
// certificate or simply stops; any other alert in clear points elsewhere
// (a failed negotiation), so the tunnel is not taken for a rejection.
var clientGaveUp = map[string]bool{
	"":                                true,
	"close_notify":                    true,
	"user_canceled":                   true,
	"bad_certificate":                 true,
	"unsupported_certificate":         true,
	"certificate_revoked":             true,
	"certificate_expired":             true,
	"certificate_unknown":             true,
	"unknown_ca":                      true,
	"bad_certificate_status_response": true,
}

// rejectsServerHandshake reports whether ev is a tetra tunnel the client
// closed during or right after the server's part of the handshake: the
// handshake did not complete, the server's hello was seen (so the server
// had begun its flight) and the client closed first, or sent a certificate
// alert in clear.
//
// TODO: Event does not say whether the server's flight was complete, so a
// client closing in the middle of it counts too; in practice the flight
// arrives in one piece.
func rejectsServerHandshake(ev *Event) bool {
	if ev.Endpoint != EndpointTetra || ev.Outcome != TLSAborted || ev.TLSVersion == "" ||
		!clientGaveUp[ev.TLSAlert] {
		return false
	}
	// A certificate alert in clear is the client's rejection, whichever
	// side's FIN the proxy saw first: a server often closes as soon as the
	// alert arrives.
	certAlert := ev.TLSAlert != "" && ev.TLSAlert != "close_notify" &&
		ev.TLSAlert != "user_canceled"
	return certAlert || ev.Close == ClientFIN || ev.Close == ClientRST
}
