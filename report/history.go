package report

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// A client's state, diagnoses and expected lasterror at the end of the
// window rest on its events of the last state window (and of the auth and
// revocation windows before it), plus a few facts about everything before:
// when it was first seen, its latest event, latest tetra event and latest
// successful download, the latest unexpected certificate issuer and the
// users it authenticated as. So the builder replays through
// inspect.Clients only the events that end within that recent stretch,
// and, for the older ones, only those that carry one of these facts. A
// day's report then correlates about a tenth of its events.
// TestCondensedReplay holds this to a full replay.

// maxUsers is how many users inspect.Clients remembers per client.
const maxUsers = 16

// past is what a client's older events leave for the correlation.
type past struct {
	first, last, lastTetra, lastOK, badIssuer *inspect.Event
	// users holds the latest event of each user, least recent first.
	users []*inspect.Event
}

// history condenses the events that end before judgeFrom.
type history struct {
	judgeFrom time.Time
	corr      inspect.Correlation
	full      bool // replay every event (for tests)
	flushed   bool

	byClient map[clientKey]*past
	// straddling are events that start before judgeFrom and end after it:
	// they belong to the recent stretch but come, in start order, before
	// its first event.
	straddling []inspect.Event
}

// feed passes ev to cs now, keeps it for later, or condenses it.
func (h *history) feed(cs *inspect.Clients, ev inspect.Event) {
	switch {
	case h.full || h.flushed:
		cs.Add(ev)
	case !eventEnd(&ev).Before(h.judgeFrom) && ev.Time.Before(h.judgeFrom):
		h.straddling = append(h.straddling, trim(ev))
	case !ev.Time.Before(h.judgeFrom):
		h.flush(cs)
		cs.Add(ev)
	default:
		h.condense(ev)
	}
}

// condense keeps ev where it carries one of the long-lived facts.
func (h *history) condense(ev inspect.Event) {
	key := clientKey{ev.Sensor, ev.ClientIP}
	p := h.byClient[key]
	if p == nil {
		p = &past{}
		h.byClient[key] = p
	}
	var e *inspect.Event // shared by the facts it carries
	keep := func() *inspect.Event {
		if e == nil {
			t := trim(ev)
			e = &t
		}
		return e
	}

	if p.first == nil || ev.Time.Before(p.first.Time) ||
		ev.Time.Equal(p.first.Time) && ev.ID < p.first.ID {
		p.first = keep()
	}
	if endsLater(&ev, p.last) {
		p.last = keep()
	}
	if ev.Endpoint == inspect.EndpointTetra {
		if endsLater(&ev, p.lastTetra) {
			p.lastTetra = keep()
		}
		if ev.Outcome == inspect.OK && endsLater(&ev, p.lastOK) {
			p.lastOK = keep()
		}
		if ev.TLSIssuer != "" && ev.TLSVersion != "TLS 1.3" &&
			!h.corr.IssuerExpected(ev.TLSIssuer) {
			p.badIssuer = keep() // the latest added, as inspect.Clients keeps it
		}
	}
	if ev.ClientUser != "" {
		p.users = slices.DeleteFunc(p.users, func(u *inspect.Event) bool {
			return u.ClientUser == ev.ClientUser
		})
		if len(p.users) >= maxUsers {
			p.users = p.users[1:]
		}
		p.users = append(p.users, keep())
	}
}

// flush replays the condensed history and the straddling events, oldest
// first, and from then on passes every event straight through.
func (h *history) flush(cs *inspect.Clients) {
	if h.flushed || h.full {
		return
	}
	h.flushed = true
	var evs []*inspect.Event
	for _, p := range h.byClient {
		for _, e := range append([]*inspect.Event{p.first, p.last, p.lastTetra, p.lastOK,
			p.badIssuer}, p.users...) {
			if e != nil && !slices.Contains(evs[max(0, len(evs)-maxUsers-5):], e) {
				evs = append(evs, e)
			}
		}
	}
	for i := range h.straddling {
		evs = append(evs, &h.straddling[i])
	}
	slices.SortFunc(evs, func(a, b *inspect.Event) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Sensor, b.Sensor),
			cmp.Compare(a.ID, b.ID))
	})
	for _, e := range evs {
		cs.Add(*e)
	}
	h.byClient, h.straddling = nil, nil
}

// trim keeps the fields inspect.Clients reads, so that condensed events
// hold no more memory than needed.
func trim(ev inspect.Event) inspect.Event {
	return inspect.Event{
		ID: ev.ID, Time: ev.Time, DurationMS: ev.DurationMS, Sensor: ev.Sensor,
		ClientIP: ev.ClientIP, ClientUser: ev.ClientUser, Endpoint: ev.Endpoint,
		Outcome: ev.Outcome, BytesDown: ev.BytesDown, Close: ev.Close,
		TLSVersion: ev.TLSVersion, TLSAlert: ev.TLSAlert, TLSIssuer: ev.TLSIssuer,
	}
}

// maxDuration caps durations as inspect.Clients does, far beyond any real
// connection.
const maxDuration = time.Duration(1 << 56)

// eventEnd is when ev ended, reading its duration as inspect.Clients does:
// negative or non-finite durations count as zero.
func eventEnd(ev *inspect.Event) time.Time {
	ms := ev.DurationMS
	if !(ms > 0) || math.IsInf(ms, 0) {
		return ev.Time
	}
	return ev.Time.Add(time.Duration(min(ms, float64(maxDuration/time.Millisecond)) *
		float64(time.Millisecond)))
}

// endsLater reports whether ev ends after e, by end time then id; true when
// e is nil.
func endsLater(ev, e *inspect.Event) bool {
	if e == nil {
		return true
	}
	a, b := eventEnd(ev), eventEnd(e)
	return a.After(b) || a.Equal(b) && ev.ID > e.ID
}
