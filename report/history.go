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

// past is what a client's older events leave for the correlation: for each
// fact, the event that carries it (a zero brief when none does yet).
type past struct {
	first, last, lastTetra, lastOK, badIssuer brief
	// users holds the latest event of each user, least recent first.
	users []brief
}

// brief is what inspect.Clients reads of an event, less the client's key.
// Facts are kept by value, so that an older event that becomes the latest
// costs a copy and no allocation.
type brief struct {
	seq        int64 // the event's place in the builder's input; 0 for none
	end        time.Time
	id         int64
	time       time.Time
	durationMS float64
	user       string
	endpoint   inspect.Endpoint
	outcome    inspect.Outcome
	bytesDown  int64
	close      inspect.Close
	tlsVersion string
	tlsAlert   string
	tlsIssuer  string
}

func briefOf(ev *inspect.Event, end time.Time, seq int64) brief {
	return brief{seq: seq, end: end, id: ev.ID, time: ev.Time, durationMS: ev.DurationMS,
		user: ev.ClientUser, endpoint: ev.Endpoint, outcome: ev.Outcome,
		bytesDown: ev.BytesDown, close: ev.Close, tlsVersion: ev.TLSVersion,
		tlsAlert: ev.TLSAlert, tlsIssuer: ev.TLSIssuer}
}

// event returns the event b was made of, with the fields inspect.Clients
// reads.
func (b *brief) event(key clientKey) inspect.Event {
	return inspect.Event{ID: b.id, Time: b.time, DurationMS: b.durationMS, Sensor: key.sensor,
		ClientIP: key.ip, ClientUser: b.user, Endpoint: b.endpoint, Outcome: b.outcome,
		BytesDown: b.bytesDown, Close: b.close, TLSVersion: b.tlsVersion,
		TLSAlert: b.tlsAlert, TLSIssuer: b.tlsIssuer}
}

// endsBefore reports whether b ends before an event ending at end with id,
// by end time then id; true when b is none.
func (b *brief) endsBefore(end time.Time, id int64) bool {
	return b.seq == 0 || end.After(b.end) || end.Equal(b.end) && id > b.id
}

// history condenses the events that end before judgeFrom.
type history struct {
	judgeFrom time.Time
	corr      inspect.Correlation
	full      bool // replay every event (for tests)
	flushed   bool

	// straddling are events that start before judgeFrom and end after it:
	// they belong to the recent stretch but come, in start order, before
	// its first event.
	straddling []inspect.Event
}

// feed passes ev, which ends at end, to cs now, keeps it for later, or
// condenses it into p, the past of its client; seq is its place in the
// input. clients are every client's past, for a flush.
func (h *history) feed(cs *inspect.Clients, clients map[clientKey]*client, ev *inspect.Event,
	end time.Time, p *past, seq int64) {
	switch {
	case h.full || h.flushed:
		cs.Record(*ev)
	case !end.Before(h.judgeFrom) && ev.Time.Before(h.judgeFrom):
		h.straddling = append(h.straddling, trim(ev))
	case !ev.Time.Before(h.judgeFrom):
		h.flush(cs, clients)
		cs.Record(*ev)
	default:
		h.condense(p, ev, end, seq)
	}
}

// condense keeps in p what ev carries of the long-lived facts.
func (h *history) condense(p *past, ev *inspect.Event, end time.Time, seq int64) {
	b := briefOf(ev, end, seq)
	if p.first.seq == 0 || ev.Time.Before(p.first.time) ||
		ev.Time.Equal(p.first.time) && ev.ID < p.first.id {
		p.first = b
	}
	if p.last.endsBefore(end, ev.ID) {
		p.last = b
	}
	if ev.Endpoint == inspect.EndpointTetra {
		if p.lastTetra.endsBefore(end, ev.ID) {
			p.lastTetra = b
		}
		if ev.Outcome == inspect.OK && p.lastOK.endsBefore(end, ev.ID) {
			p.lastOK = b
		}
		if ev.TLSIssuer != "" && ev.TLSVersion != "TLS 1.3" &&
			!h.corr.IssuerExpected(ev.TLSIssuer) {
			p.badIssuer = b // the latest added, as inspect.Clients keeps it
		}
	}
	if ev.ClientUser != "" {
		p.users = slices.DeleteFunc(p.users, func(u brief) bool {
			return u.user == ev.ClientUser
		})
		if len(p.users) >= maxUsers {
			p.users = p.users[1:]
		}
		p.users = append(p.users, b)
	}
}

// flush replays the condensed history of clients and the straddling
// events, oldest first, and from then on passes every event straight
// through.
func (h *history) flush(cs *inspect.Clients, clients map[clientKey]*client) {
	if h.flushed || h.full {
		return
	}
	h.flushed = true
	var (
		evs  []inspect.Event
		seqs []int64 // of the events of one client taken so far
	)
	for key, c := range clients {
		seqs = seqs[:0]
		take := func(b *brief) {
			// One event often carries several facts: it is replayed once.
			if b.seq != 0 && !slices.Contains(seqs, b.seq) {
				seqs = append(seqs, b.seq)
				evs = append(evs, b.event(key))
			}
		}
		p := &c.past
		for _, b := range []*brief{&p.first, &p.last, &p.lastTetra, &p.lastOK, &p.badIssuer} {
			take(b)
		}
		for i := range p.users {
			take(&p.users[i])
		}
		c.past = past{}
	}
	evs = append(evs, h.straddling...)
	slices.SortFunc(evs, func(a, b inspect.Event) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Sensor, b.Sensor),
			cmp.Compare(a.ID, b.ID))
	})
	for i := range evs {
		cs.Record(evs[i])
	}
	h.straddling = nil
}

// trim keeps the fields inspect.Clients reads, so that straddling events
// hold no more memory than needed.
func trim(ev *inspect.Event) inspect.Event {
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
