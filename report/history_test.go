package report

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// randomDay is a day of n events from a few dozen clients, drawn from
// seed: every endpoint class and outcome, challenges answered and not,
// revocation failures followed by abandoned tunnels, certificates from
// unexpected issuers, clients with many users, and connections long enough
// to straddle any boundary.
func randomDay(seed uint64, n int) []inspect.Event {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	outcomes := inspect.Outcomes
	var evs []inspect.Event
	for i := range n {
		c := r.IntN(40)
		t := at(time.Duration(r.Int64N(int64(26 * time.Hour))))
		p := inspect.EndpointTetra
		switch r.IntN(10) {
		case 0, 1:
			p = inspect.EndpointRevocation
		case 2:
			p = inspect.EndpointAMP
		case 3:
			p = inspect.EndpointOther
		}
		o := outcomes[r.IntN(len(outcomes))]
		if r.IntN(3) > 0 {
			o = inspect.OK
		}
		e := fixtureEvent(int64(i+1), t, fmt.Sprintf("10.9.0.%d", c), p, o)
		e.Sensor = []string{"s1", "s2"}[c%2]
		switch {
		case c%5 == 0:
			e.ClientUser = fmt.Sprintf("user%d", r.IntN(25)) // more users than are kept
		case c%5 == 1:
			e.ClientUser = fmt.Sprintf(`CORP\PC%d$`, c)
		}
		if r.IntN(8) == 0 {
			e.DurationMS = float64(r.Int64N(int64(40 * time.Minute / time.Millisecond)))
		}
		if p == inspect.EndpointTetra && r.IntN(6) == 0 {
			e.TLSVersion = "TLS 1.2"
			e.TLSIssuer = []string{"CN=HydrantID Server CA O1,O=IdenTrust,C=US",
				"CN=Corp Inspection CA,O=Corp,C=DE"}[r.IntN(2)]
		}
		evs = append(evs, e)
		if p == inspect.EndpointRevocation && o.Failure() && r.IntN(2) == 0 {
			// The tunnel the failed check makes the client abandon.
			a := fixtureEvent(int64(n+i+1), t.Add(2*time.Second), e.ClientIP,
				inspect.EndpointTetra, inspect.TLSAborted)
			a.Sensor, a.ClientUser = e.Sensor, e.ClientUser
			evs = append(evs, a)
		}
	}
	// Two long downloads that begin before any boundary the replay may
	// draw and end within the state window: both are attempts. An earlier
	// download comes first, so neither is the client's first event.
	for k, d := range []struct {
		start, length time.Duration
		o             inspect.Outcome
	}{
		{5 * time.Hour, time.Second, inspect.OK},
		{2*time.Hour + 10*time.Minute, 20 * time.Minute, inspect.DownloadAborted},
		{2*time.Hour + 5*time.Minute, time.Hour, inspect.OK},
	} {
		e := fixtureEvent(int64(3*n+k), at(d.start), "10.9.1.1", inspect.EndpointTetra, d.o)
		e.DurationMS = float64(d.length / time.Millisecond)
		evs = append(evs, e)
	}
	slices.SortStableFunc(evs, func(a, b inspect.Event) int { return a.Time.Compare(b.Time) })
	return evs
}

// TestCondensedReplay holds the condensed replay of older events to a
// replay of every event: the same rows, states, diagnoses, expected codes
// and summary, for windows shorter and longer than the stretch states
// need.
func TestCondensedReplay(t *testing.T) {
	for seed := range uint64(12) {
		evs := randomDay(seed, 3000)
		for _, since := range []time.Duration{24 * time.Hour, 3 * time.Hour, time.Hour,
			10 * time.Minute} {
			opts := Options{Since: at(since), Until: reportEnd, Now: reportEnd,
				Correlation: inspect.Correlation{UpdateInterval: time.Duration(1+seed%3) * 30 *
					time.Minute}}
			condensed, full := reportJSON(t, evs, opts, false), reportJSON(t, evs, opts, true)
			if !bytes.Equal(condensed, full) {
				t.Fatalf("seed %d, since %v: the condensed replay differs from the full one:\n%s",
					seed, since, firstDiff(condensed, full))
			}
		}
	}
}

func reportJSON(t *testing.T, evs []inspect.Event, opts Options, full bool) []byte {
	t.Helper()
	b, err := NewBuilder(opts)
	if err != nil {
		t.Fatal(err)
	}
	b.hist.full = full
	for _, ev := range evs {
		b.Add(ev)
	}
	var buf bytes.Buffer
	if err := WriteJSON(&buf, b.Report()); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func firstDiff(a, b []byte) string {
	al, bl := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
	for i := range min(len(al), len(bl)) {
		if !bytes.Equal(al[i], bl[i]) {
			lo := max(0, i-8)
			return fmt.Sprintf("line %d\ncondensed: %s\n     full: %s\ncontext:\n%s", i+1, al[i],
				bl[i], bytes.Join(bl[lo:i+1], []byte("\n")))
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(al), len(bl))
}
