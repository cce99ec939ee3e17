package inspect

import (
	"cmp"
	"container/heap"
	"math"
	"net/netip"
	"slices"
	"time"
)

// ClientState is the health of a client over the state window. The zero
// value is not a state; Clients always reports one of the four below.
type ClientState string

// The client states of DESIGN.md.
const (
	// StateHealthy: a tetra download succeeded within the state window.
	StateHealthy ClientState = "healthy"
	// StateFailing: tetra attempts within the state window, none of them
	// successful.
	StateFailing ClientState = "failing"
	// StateSilent: seen for at least the state window, and no tetra
	// attempt within it.
	StateSilent ClientState = "silent"
	// StateUnknown: not enough seen yet to judge.
	StateUnknown ClientState = "unknown"
)

// The agreement between the lasterror a client is expected to show and the
// value its endpoint reported itself.
const (
	AgreementAgree    = "agree"
	AgreementDisagree = "disagree"
	// AgreementNotSeen marks an endpoint whose value was imported but that
	// this proxy has never seen.
	AgreementNotSeen = "not_seen"
)

// Client is the health of one client: one row of /api/v1/clients, of a
// "client" stream message and of a report. Its JSON names are the client
// fields of DESIGN.md. A Client is a snapshot: Clients never changes one it
// has returned.
type Client struct {
	ClientIP string `json:"client_ip"`
	// ClientUser is the latest user seen from the client; Users holds
	// every user seen (the most recent 16), sorted. Both are empty when
	// the client never authenticated.
	ClientUser string   `json:"client_user"`
	Users      []string `json:"users"`
	Sensor     string   `json:"sensor"`

	// FirstSeen is the start of the earliest event of the client, LastSeen
	// the end of the latest, both in UTC.
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`

	// LastTetraOK is the end of the latest successful tetra download; nil
	// (JSON null) when there was none.
	LastTetraOK *time.Time `json:"last_tetra_ok"`

	// TetraAttempts and TetraFailures count the tetra attempts ending
	// within the state window, and those that failed. A 407 challenge the
	// client answered is part of the next attempt, not one of its own.
	TetraAttempts int `json:"tetra_attempts"`
	TetraFailures int `json:"tetra_failures"`

	// Counts holds, for every outcome, the number of events seen from the
	// client since it was first seen (zero included).
	Counts map[Outcome]int `json:"counts"`

	State ClientState `json:"state"`

	// Diagnosis is the name of the main diagnosis (the first of
	// Diagnoses), empty when there is none. Diagnoses lists every current
	// one in priority order, empty when there is none.
	Diagnosis string      `json:"diagnosis"`
	Diagnoses []Diagnosis `json:"diagnoses"`

	// ExpectedLastError is the code the client's endpoint most likely
	// shows, LastErrorBasis whether that follows from Cisco's documents,
	// LastErrorReason why it is expected.
	ExpectedLastError LastError `json:"expected_lasterror"`
	LastErrorBasis    Basis     `json:"lasterror_basis"`
	LastErrorReason   string    `json:"lasterror_reason"`

	// ReportedLastError is the value the endpoint reported itself, nil
	// when none was imported; Agreement compares it with the expected one
	// (AgreementAgree, AgreementDisagree, AgreementNotSeen), empty when
	// nothing was imported.
	ReportedLastError *LastError `json:"reported_lasterror,omitempty"`
	Agreement         string     `json:"agreement,omitempty"`
}

// DiagnosisFor returns the name of the highest-priority diagnosis of c
// whose evidence includes event id, or "" when none does. It suits the
// diagnosis field of an event.
func (c *Client) DiagnosisFor(id int64) string {
	for _, d := range c.Diagnoses {
		if slices.Contains(d.Evidence, id) {
			return d.Name
		}
	}
	return ""
}

// Clients correlates finished events into per-client health, driven only by
// the events and the times it is given: it starts no goroutine and reads no
// clock. The zero Clients is not usable; call NewClients.
//
// Clients is not safe for concurrent use; the caller serialises calls.
// Memory is bounded: at most Correlation.MaxClients clients (the one heard
// from least recently is forgotten first), each keeping at most
// Correlation.MaxEvents recent tetra and revocation events and only as long
// as the windows need them.
type Clients struct {
	cfg Correlation
	sw  int64 // state window, nanoseconds
	aw  int64 // auth window
	rw  int64 // revocation window

	byKey map[clientKey]*client
	due   clientHeap // clients by the time their health may change next
	age   clientHeap // clients by last seen, oldest first

	// clock is the latest time given to Tick; Add judges a client at this
	// time or at the client's last event, whichever is later.
	clock int64

	reported map[string]LastError

	scratch scratch
}

type clientKey struct{ sensor, ip string }

// maxUsers bounds the users remembered per client.
const maxUsers = 16

// maxOutcomes bounds the outcome counters of a client; TestOutcomeCounters
// keeps it above len(Outcomes).
const maxOutcomes = 24

type client struct {
	key clientKey

	seen                  bool // an event was noted
	firstSeen, lastSeen   time.Time
	firstSeenN, lastSeenN int64

	user     string
	users    []string // least recently seen first
	usersGen int      // changes whenever users does
	// sorted is users sorted, when sortedGen is usersGen.
	sorted    []string
	sortedGen int

	counts [maxOutcomes]int

	// The latest successful tetra download, by end time then id.
	hasOK    bool
	okEnd    int64
	okID     int64
	okTime   time.Time
	lastTID  int64 // id of the latest tetra event, any outcome
	lastTEnd int64
	hasTetra bool
	lastID   int64 // id of the latest event of any kind
	lastEnd  int64

	// badIssuer is the latest unexpected certificate issuer seen.
	badIssuer string

	recent ring

	// What Add or Tick last computed, at evalAt, and what a viewer saw
	// then. stale is set when Record took an event since.
	health health
	evalAt int64
	viewed view
	stale  bool

	// The keys of the client in the heaps, which may lag behind:
	// dueKey is at most health.deadline and ageKey at most lastSeenN (see
	// Tick and oldest).
	dueKey, ageKey int64
	dueIdx, ageIdx int // positions in the heaps, -1 when absent
}

// NewClients returns an empty Clients using the settings of c, defaults
// filled in.
func NewClients(c Correlation) *Clients {
	c = c.withDefaults()
	cs := &Clients{
		cfg:   c,
		sw:    int64(2 * c.UpdateInterval),
		aw:    int64(c.AuthWindow),
		rw:    int64(c.RevocationWindow),
		byKey: make(map[clientKey]*client),
		clock: math.MinInt64,
	}
	cs.age.byAge = true
	return cs
}

// Correlation returns the settings in use, defaults filled in.
func (cs *Clients) Correlation() Correlation { return cs.cfg }

// Len returns the number of clients kept.
func (cs *Clients) Len() int { return len(cs.byKey) }

// Add takes one finished event (Outcome set) and returns its client's new
// health, and whether something a viewer follows changed: the client is
// new, or its state, attempts, diagnoses, expected lasterror, users or last
// successful download changed. A new last_seen or new counts alone are not
// a change.
//
// Add keeps the events that concern the connector, as the store does
// without events.record_other: tetra, revocation and amp traffic, and
// denied or malformed requests to any target. It ignores other events,
// events still open or with an unknown outcome, and events without a
// client address, returning false. Each event must be added once.
func (cs *Clients) Add(ev Event) (Client, bool) {
	cl, at, isNew := cs.take(&ev)
	if cl == nil {
		return Client{}, false
	}
	changed := cs.refresh(cl, at) || isNew
	return cs.snapshot(cl, &cl.health), changed
}

// Record takes one finished event as Add does, but leaves the client's
// judgement to the next List, Get or Tick that needs it. Replaying many
// events and then listing the clients, as a report does, costs a fraction
// of what Add costs then: each client is judged once, not once per event.
func (cs *Clients) Record(ev Event) {
	cl, at, _ := cs.take(&ev)
	if cl == nil {
		return
	}
	cl.stale = true
	cl.health.deadline = at // for Tick: Add would have judged it then
	cs.schedule(cl)
}

// take notes ev for its client, and returns the client and the time at
// which Add judges it, or nil when ev is ignored.
func (cs *Clients) take(ev *Event) (cl *client, at int64, isNew bool) {
	if !ev.Outcome.Valid() || ev.ClientIP == "" {
		return nil, 0, false
	}
	if !ev.Endpoint.Valid() {
		ev.Endpoint = EndpointOther
	}
	if ev.Endpoint == EndpointOther && ev.Outcome != Denied && ev.Outcome != BadRequest {
		return nil, 0, false
	}

	key := clientKey{ev.Sensor, ev.ClientIP}
	cl = cs.byKey[key]
	isNew = cl == nil
	if isNew {
		for len(cs.byKey) >= cs.cfg.MaxClients {
			cs.forget(cs.oldest())
		}
		cl = &client{key: key, dueIdx: -1, ageIdx: -1}
		cs.byKey[key] = cl
	}

	rec := cs.record(ev)
	cl.note(ev, rec)
	if isNew {
		cl.ageKey = cl.lastSeenN
		heap.Push(&cs.age, cl)
	}
	if ev.Endpoint.Updates() {
		cl.recent.push(rec, cs.cfg.MaxEvents)
	}

	at = max(cs.clock, cl.lastSeenN)
	cl.recent.prune(at - cs.sw - max(cs.aw, cs.rw))
	return cl, at, isNew
}

// oldest returns the client heard from least recently. The age heap is
// keyed by each client's last seen when it was last put in place, which
// only lags behind: a client on top whose key is current is the oldest.
func (cs *Clients) oldest() *client {
	for {
		cl := cs.age.items[0]
		if cl.ageKey == cl.lastSeenN {
			return cl
		}
		cl.ageKey = cl.lastSeenN
		heap.Fix(&cs.age, 0)
	}
}

// Tick tells Clients that time has passed up to now, and returns the
// clients whose state, attempts, diagnoses or expected lasterror changed
// because of it alone (a client falling silent, a challenge left
// unanswered, failures leaving the window), sorted by sensor and address.
// Only clients due for a change are examined. A now earlier than a previous
// Tick's is taken as that earlier Tick's time.
func (cs *Clients) Tick(now time.Time) []Client {
	n := nanos(now)
	cs.clock = max(cs.clock, n)

	var changed []*client
	for cs.due.Len() > 0 && cs.due.items[0].dueKey <= cs.clock {
		cl := cs.due.items[0]
		if cl.health.deadline <= cs.clock && cs.refresh(cl, cs.clock) {
			changed = append(changed, cl)
		}
		// Put in place by its deadline, now past the clock.
		if cl.health.deadline == noDeadline {
			cs.due.remove(cl)
		} else {
			cl.dueKey = cl.health.deadline
			heap.Fix(&cs.due, cl.dueIdx)
		}
	}
	slices.SortFunc(changed, func(a, b *client) int { return compareKeys(a.key, b.key) })

	out := make([]Client, len(changed))
	for i, cl := range changed {
		out[i] = cs.snapshot(cl, &cl.health)
	}
	return out
}

// List returns every client as of now, failing first, then silent,
// unknown and healthy, each group sorted by sensor and address. It changes
// nothing: a change it shows is still reported by the next Tick.
func (cs *Clients) List(now time.Time) []Client {
	at := nanos(now)
	out := make([]Client, 0, len(cs.byKey))
	for _, cl := range cs.byKey {
		h := cs.healthAt(cl, at)
		out = append(out, cs.snapshot(cl, &h))
	}
	slices.SortFunc(out, func(a, b Client) int {
		if c := cmp.Compare(stateRank(a.State), stateRank(b.State)); c != 0 {
			return c
		}
		return compareKeys(clientKey{a.Sensor, a.ClientIP}, clientKey{b.Sensor, b.ClientIP})
	})
	return out
}

// Get returns the client of sensor and address ip as of now, and false when
// it is not known. Like List, it changes nothing.
func (cs *Clients) Get(sensor, ip string, now time.Time) (Client, bool) {
	cl := cs.byKey[clientKey{sensor, ip}]
	if cl == nil {
		return Client{}, false
	}
	h := cs.healthAt(cl, nanos(now))
	return cs.snapshot(cl, &h), true
}

// SetReported replaces the lasterror values the endpoints reported
// themselves (an imported CSV), keyed by client address; nil or empty
// forgets them. Clients compare them with their expected value from then
// on. The map is copied.
func (cs *Clients) SetReported(byIP map[string]LastError) {
	if len(byIP) == 0 {
		cs.reported = nil
		return
	}
	cs.reported = make(map[string]LastError, len(byIP))
	for ip, code := range byIP {
		cs.reported[ip] = code
	}
}

// NotSeen returns a row for every reported address that no client of any
// sensor has, sorted by address: state unknown, no times, the expected
// lasterror of an endpoint that does not reach this proxy, and agreement
// AgreementNotSeen. Reports list these next to the clients.
func (cs *Clients) NotSeen() []Client {
	if len(cs.reported) == 0 {
		return nil
	}
	seen := make(map[string]bool, len(cs.byKey))
	for k := range cs.byKey {
		seen[k.ip] = true
	}
	var out []Client
	for ip, code := range cs.reported {
		if seen[ip] {
			continue
		}
		reported := code
		out = append(out, Client{
			ClientIP:          ip,
			Users:             []string{},
			Counts:            zeroCounts(),
			State:             StateUnknown,
			Diagnoses:         []Diagnosis{},
			ExpectedLastError: LastErrorProxyConnect,
			LastErrorBasis:    Inferred,
			LastErrorReason: "never seen at this proxy: if the endpoint is meant to use it, " +
				"it cannot connect to it",
			ReportedLastError: &reported,
			Agreement:         AgreementNotSeen,
		})
	}
	slices.SortFunc(out, func(a, b Client) int {
		return compareKeys(clientKey{"", a.ClientIP}, clientKey{"", b.ClientIP})
	})
	return out
}

// refresh judges cl at time at, keeps the result, requeues cl for its next
// possible change and reports whether what a viewer sees changed.
func (cs *Clients) refresh(cl *client, at int64) bool {
	cl.health = cs.evaluate(cl, at)
	cl.evalAt, cl.stale = at, false
	cs.schedule(cl)

	v := viewOf(cl, &cl.health)
	changed := !v.equal(&cl.viewed)
	cl.viewed = v
	return changed
}

// schedule makes sure the due heap brings cl up by its deadline. A later
// deadline than the entry's key is left for Tick to notice, which spares
// moving the entry on every event.
func (cs *Clients) schedule(cl *client) {
	d := cl.health.deadline
	switch {
	case cl.dueIdx < 0 && d != noDeadline:
		cl.dueKey = d
		heap.Push(&cs.due, cl)
	case cl.dueIdx >= 0 && d < cl.dueKey:
		cl.dueKey = d
		heap.Fix(&cs.due, cl.dueIdx)
	}
}

// healthAt returns the health of cl at time at, from the kept result when
// it is still valid then.
func (cs *Clients) healthAt(cl *client, at int64) health {
	h := cl.health
	if !cl.stale && at >= cl.evalAt && (h.deadline == noDeadline || at < h.deadline) {
		return h
	}
	return cs.evaluate(cl, at)
}

// forget drops a client entirely.
func (cs *Clients) forget(cl *client) {
	cs.age.remove(cl)
	cs.due.remove(cl)
	delete(cs.byKey, cl.key)
}

// record reduces an event to what the correlation needs.
func (cs *Clients) record(ev *Event) record {
	start := nanos(ev.Time)
	r := record{id: ev.ID, start: start, end: start + durationNanos(ev.DurationMS),
		bytesDown: ev.BytesDown, outcome: ev.Outcome}
	switch ev.Endpoint {
	case EndpointTetra:
		r.flags |= fTetra
		if rejectsServerHandshake(ev) {
			r.flags |= fRejected
		}
		if ev.TLSIssuer != "" && ev.TLSVersion != "TLS 1.3" {
			r.flags |= fIssuerSeen
			if !issuerMatches(ev.TLSIssuer, cs.cfg.ExpectedIssuers) {
				r.flags |= fIssuerUnexpected
			}
		}
	case EndpointRevocation:
		r.flags |= fRevocation
	}
	return r
}

// note updates the client's long-lived facts with one event.
func (cl *client) note(ev *Event, r record) {
	start := ev.Time.UTC()
	end := start.Add(time.Duration(r.end - r.start))
	first := !cl.seen
	cl.seen = true
	if first || r.start < cl.firstSeenN {
		cl.firstSeen, cl.firstSeenN = start, r.start
	}
	if first || r.end > cl.lastSeenN {
		cl.lastSeen, cl.lastSeenN = end, r.end
	}
	if first || later(r.end, r.id, cl.lastEnd, cl.lastID) {
		cl.lastID, cl.lastEnd = r.id, r.end
	}
	if i := slices.Index(Outcomes, ev.Outcome); i >= 0 && i < maxOutcomes {
		cl.counts[i]++
	}
	if ev.ClientUser != "" {
		cl.noteUser(ev.ClientUser)
	}

	if ev.Endpoint != EndpointTetra {
		return
	}
	if r.flags&fIssuerUnexpected != 0 {
		cl.badIssuer = ev.TLSIssuer
	}
	if !cl.hasTetra || later(r.end, r.id, cl.lastTEnd, cl.lastTID) {
		cl.hasTetra, cl.lastTID, cl.lastTEnd = true, r.id, r.end
	}
	if ev.Outcome == OK && (!cl.hasOK || later(r.end, r.id, cl.okEnd, cl.okID)) {
		cl.hasOK, cl.okEnd, cl.okID, cl.okTime = true, r.end, r.id, end
	}
}

func (cl *client) noteUser(u string) {
	cl.user = u
	if n := len(cl.users); n > 0 && cl.users[n-1] == u {
		return // the latest already
	}
	cl.usersGen++
	if i := slices.Index(cl.users, u); i >= 0 {
		cl.users = append(cl.users[:i], cl.users[i+1:]...)
	} else if len(cl.users) >= maxUsers {
		cl.users = cl.users[1:]
	}
	cl.users = append(cl.users, u)
}

// sortedUsers returns the client's users sorted; the caller must not
// change the slice.
func (cl *client) sortedUsers() []string {
	if cl.sortedGen != cl.usersGen {
		cl.sorted = append(cl.sorted[:0], cl.users...)
		slices.Sort(cl.sorted)
		cl.sortedGen = cl.usersGen
	}
	return cl.sorted
}

// snapshot builds the Client a caller sees from cl and its health h.
func (cs *Clients) snapshot(cl *client, h *health) Client {
	c := Client{
		ClientIP:          cl.key.ip,
		ClientUser:        cl.user,
		Users:             slices.Clone(cl.sortedUsers()),
		Sensor:            cl.key.sensor,
		FirstSeen:         cl.firstSeen,
		LastSeen:          cl.lastSeen,
		TetraAttempts:     h.attempts,
		TetraFailures:     h.failures,
		Counts:            make(map[Outcome]int, len(Outcomes)),
		State:             h.state,
		Diagnoses:         make([]Diagnosis, len(h.diagnoses)),
		ExpectedLastError: h.expected,
		LastErrorBasis:    h.basis,
		LastErrorReason:   h.reason,
	}
	if c.Users == nil {
		c.Users = []string{}
	}
	n := 0
	for _, d := range h.diagnoses {
		n += len(d.Evidence)
	}
	ids := make([]int64, 0, n) // one allocation for every diagnosis's evidence
	for i, d := range h.diagnoses {
		ids = append(ids, d.Evidence...)
		d.Evidence = ids[len(ids)-len(d.Evidence) : len(ids) : len(ids)]
		c.Diagnoses[i] = d
	}
	if len(c.Diagnoses) > 0 {
		c.Diagnosis = c.Diagnoses[0].Name
	}
	for i, o := range Outcomes {
		if i < maxOutcomes {
			c.Counts[o] = cl.counts[i]
		}
	}
	if cl.hasOK {
		t := cl.okTime
		c.LastTetraOK = &t
	}
	if code, ok := cs.reported[cl.key.ip]; ok {
		c.ReportedLastError = &code
		c.Agreement = AgreementDisagree
		if code == h.expected {
			c.Agreement = AgreementAgree
		}
	}
	return c
}

func zeroCounts() map[Outcome]int {
	m := make(map[Outcome]int, len(Outcomes))
	for _, o := range Outcomes {
		m[o] = 0
	}
	return m
}

// view is what a viewer follows of a client: its health but for the
// deadline, its users and its latest successful download.
type view struct {
	state              ClientState
	attempts, failures int
	diagnoses          []Diagnosis // shared with the health: never changed
	expected           LastError
	basis              Basis
	reason             string
	user               string
	usersGen           int
	hasOK              bool
	okEnd              int64
}

// viewOf returns what a viewer sees of client cl with health h.
func viewOf(cl *client, h *health) view {
	return view{state: h.state, attempts: h.attempts, failures: h.failures,
		diagnoses: h.diagnoses, expected: h.expected, basis: h.basis, reason: h.reason,
		user: cl.user, usersGen: cl.usersGen, hasOK: cl.hasOK, okEnd: cl.okEnd}
}

// equal reports whether a viewer sees no difference between v and w.
func (v *view) equal(w *view) bool {
	if v.state != w.state || v.attempts != w.attempts || v.failures != w.failures ||
		v.expected != w.expected || v.basis != w.basis || v.reason != w.reason ||
		v.user != w.user || v.usersGen != w.usersGen || v.hasOK != w.hasOK ||
		v.hasOK && v.okEnd != w.okEnd || len(v.diagnoses) != len(w.diagnoses) {
		return false
	}
	for i := range v.diagnoses {
		a, b := &v.diagnoses[i], &w.diagnoses[i]
		if a.Name != b.Name || a.Advice != b.Advice || !slices.Equal(a.Evidence, b.Evidence) {
			return false
		}
	}
	return true
}

func stateRank(s ClientState) int {
	switch s {
	case StateFailing:
		return 0
	case StateSilent:
		return 1
	case StateUnknown:
		return 2
	}
	return 3
}

// compareKeys orders clients by sensor, then by address (numerically when
// both parse, as text otherwise).
func compareKeys(a, b clientKey) int {
	if c := cmp.Compare(a.sensor, b.sensor); c != 0 {
		return c
	}
	pa, errA := netip.ParseAddr(a.ip)
	pb, errB := netip.ParseAddr(b.ip)
	if errA == nil && errB == nil {
		if c := pa.Compare(pb); c != 0 {
			return c
		}
	}
	return cmp.Compare(a.ip, b.ip)
}

// later reports whether an event ending at end with id comes after one
// ending at end0 with id0.
func later(end, id, end0, id0 int64) bool {
	return end > end0 || end == end0 && id > id0
}

// Time bounds for nanosecond arithmetic: far outside any real event, and
// far enough from the int64 limits that adding windows cannot overflow.
const (
	minNanos = -1 << 61
	maxNanos = 1 << 61
)

// nanos returns t as Unix nanoseconds, clamped to [minNanos, maxNanos].
func nanos(t time.Time) int64 {
	switch {
	case t.Before(time.Unix(0, minNanos)):
		return minNanos
	case t.After(time.Unix(0, maxNanos)):
		return maxNanos
	}
	return t.UnixNano()
}

// durationNanos converts an event's duration in milliseconds, treating
// negative or non-finite values as zero and capping absurd ones.
func durationNanos(ms float64) int64 {
	if !(ms > 0) || math.IsInf(ms, 0) {
		return 0
	}
	return int64(min(ms, float64(maxWindow/time.Millisecond)) * float64(time.Millisecond))
}

// clientHeap is a heap of clients, by dueKey or, when byAge, by ageKey,
// that keeps each client's position in it, so that a client can be moved
// or removed.
type clientHeap struct {
	items []*client
	byAge bool
}

func (h *clientHeap) key(c *client) int64 {
	if h.byAge {
		return c.ageKey
	}
	return c.dueKey
}

func (h *clientHeap) idx(c *client) *int {
	if h.byAge {
		return &c.ageIdx
	}
	return &c.dueIdx
}

func (h *clientHeap) Len() int           { return len(h.items) }
func (h *clientHeap) Less(i, j int) bool { return h.key(h.items[i]) < h.key(h.items[j]) }
func (h *clientHeap) Swap(i, j int) {
	h.items[i], h.items[j] = h.items[j], h.items[i]
	*h.idx(h.items[i]) = i
	*h.idx(h.items[j]) = j
}
func (h *clientHeap) Push(x any) {
	c := x.(*client)
	*h.idx(c) = len(h.items)
	h.items = append(h.items, c)
}
func (h *clientHeap) Pop() any {
	n := len(h.items) - 1
	c := h.items[n]
	h.items[n] = nil
	h.items = h.items[:n]
	*h.idx(c) = -1
	return c
}

func (h *clientHeap) remove(c *client) {
	if i := *h.idx(c); i >= 0 {
		heap.Remove(h, i)
	}
}

// record is what a client keeps of one recent tetra or revocation event.
type record struct {
	id         int64
	start, end int64 // Unix nanoseconds
	bytesDown  int64
	outcome    Outcome
	flags      recordFlags
}

type recordFlags uint8

const (
	fTetra      recordFlags = 1 << iota
	fRevocation             // revocation traffic
	// fRejected: the client closed a tetra tunnel during or right after
	// the server's part of the handshake (see rejectsServerHandshake).
	fRejected
	// fIssuerSeen: the certificate's issuer crossed in clear (TLS 1.2 or
	// older); fIssuerUnexpected: and it is not an expected issuer.
	fIssuerSeen
	fIssuerUnexpected
)

// ring keeps the most recent records of a client, oldest first, growing as
// needed up to a limit and then overwriting its oldest record.
type ring struct {
	buf   []record
	start int // index of the oldest record
	n     int
}

func (r *ring) len() int { return r.n }

// at returns the i-th record, oldest first; i must be below r.len().
func (r *ring) at(i int) *record {
	i += r.start
	if i >= len(r.buf) {
		i -= len(r.buf)
	}
	return &r.buf[i]
}

func (r *ring) push(rec record, limit int) {
	if r.n == len(r.buf) && r.n < limit {
		grown := make([]record, min(max(4, 2*r.n), limit))
		for i := range r.n {
			grown[i] = *r.at(i)
		}
		r.buf, r.start = grown, 0
	}
	if r.n == len(r.buf) {
		r.buf[r.start] = rec
		r.start = (r.start + 1) % len(r.buf)
		return
	}
	r.buf[(r.start+r.n)%len(r.buf)] = rec
	r.n++
}

// prune drops the oldest records while they ended before cutoff, and
// releases the buffer when nothing is left.
func (r *ring) prune(cutoff int64) {
	for r.n > 0 && r.at(0).end < cutoff {
		r.start = (r.start + 1) % len(r.buf)
		r.n--
	}
	if r.n == 0 {
		r.buf, r.start = nil, 0
	}
}
