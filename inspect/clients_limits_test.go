package inspect

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

func TestRecentEventsBounded(t *testing.T) {
	t.Run("a storm of events keeps at most MaxEvents", func(t *testing.T) {
		cs := NewClients(Correlation{MaxEvents: 64})
		for i := range 10_000 {
			e := ev(int64(i+1), time.Duration(i)*time.Second, EndpointTetra, DownloadAborted,
				down(int64(i)))
			if i%3 == 0 {
				e = revFail(int64(i+1), time.Duration(i)*time.Second, HTTPError)
			}
			cs.Add(e)
		}
		cl := cs.byKey[clientKey{sensorA, ipA}]
		if n := cl.recent.len(); n != 64 || len(cl.recent.buf) != 64 {
			t.Fatalf("kept %d records in a buffer of %d, want 64", n, len(cl.recent.buf))
		}
		c, _ := cs.Get(sensorA, ipA, t0.Add(10_000*time.Second))
		if c.Counts[DownloadAborted]+c.Counts[HTTPError] != 10_000 {
			t.Fatalf("counts lost: %v", c.Counts)
		}
		if c.Diagnosis != DiagnosisInterruptedDownload {
			t.Fatalf("diagnosis %q", c.Diagnosis)
		}
		for _, d := range c.Diagnoses {
			if len(d.Evidence) > maxEvidence {
				t.Fatalf("%s: %d evidence ids", d.Name, len(d.Evidence))
			}
		}
	})
	t.Run("old events are dropped once the windows no longer need them", func(t *testing.T) {
		cs := NewClients(Correlation{})
		for i := range 1000 {
			cs.Add(okTetra(int64(i+1), time.Duration(i)*10*time.Minute))
		}
		cl := cs.byKey[clientKey{sensorA, ipA}]
		// The state window (2 h) plus the longer of the auth and
		// revocation windows holds 13 events ten minutes apart.
		if n := cl.recent.len(); n > 13 {
			t.Fatalf("kept %d records", n)
		}
	})
	t.Run("the buffer is released when everything is pruned", func(t *testing.T) {
		cs := NewClients(Correlation{})
		cs.Add(okTetra(1, 0))
		cs.Add(ev(2, 10*time.Hour, EndpointAMP, OK))
		if cl := cs.byKey[clientKey{sensorA, ipA}]; cl.recent.buf != nil {
			t.Fatalf("buffer of %d kept", len(cl.recent.buf))
		}
	})
	t.Run("users are bounded", func(t *testing.T) {
		cs := NewClients(Correlation{})
		var c Client
		for i := range 100 {
			c, _ = cs.Add(ev(int64(i+1), time.Duration(i)*time.Second, EndpointAMP, OK,
				user(fmt.Sprintf("user%03d", i))))
		}
		if len(c.Users) != maxUsers || c.ClientUser != "user099" ||
			!slices.Contains(c.Users, "user099") || slices.Contains(c.Users, "user000") {
			t.Fatalf("users %v, latest %q", c.Users, c.ClientUser)
		}
	})
}

func TestClientCap(t *testing.T) {
	cs := NewClients(Correlation{MaxClients: 100})
	ip := func(i int) string { return fmt.Sprintf("10.2.%d.%d", i/256, i%256) }
	for i := range 150 {
		cs.Add(okTetra(int64(i+1), time.Duration(i)*time.Second, from(ip(i))))
		if i == 120 {
			// Client 25, next in line to be forgotten, is heard from
			// again: it is no longer the oldest.
			cs.Add(ev(1000, 121*time.Second, EndpointAMP, OK, from(ip(25))))
		}
	}
	if cs.Len() != 100 || cs.due.Len() > 100 || cs.age.Len() != 100 {
		t.Fatalf("%d clients, heaps %d and %d", cs.Len(), cs.due.Len(), cs.age.Len())
	}
	now := t0.Add(200 * time.Second)
	for i := range 150 {
		_, ok := cs.Get(sensorA, ip(i), now)
		want := i >= 51 || i == 25
		if ok != want {
			t.Errorf("client %d kept: %v, want %v", i, ok, want)
		}
	}
	if got := len(cs.List(now)); got != 100 {
		t.Fatalf("List returned %d clients", got)
	}
	// Forgotten clients are not ticked.
	if out := cs.Tick(now.Add(3 * time.Hour)); len(out) != 100 {
		t.Fatalf("Tick reported %d clients", len(out))
	}
}

// fuzzOutcomes and the tables below give the fuzzer's bytes a meaning.
var (
	fuzzEndpoints = []Endpoint{EndpointTetra, EndpointTetra, EndpointRevocation, EndpointAMP,
		EndpointOther, ""}
	fuzzCloses   = []Close{ClientFIN, ClientRST, ServerFIN, ServerRST, IdleTimeout, ""}
	fuzzVersions = []string{"TLS 1.2", "TLS 1.3", ""}
	fuzzIssuers  = []string{"", issuerCisco, issuerCorp}
	fuzzAlerts   = []string{"", "unknown_ca", "handshake_failure"}
	fuzzIPs      = []string{ipA, ipB, "10.0.0.7", "10.0.0.8", "", "fe80::1"}
)

// runSequence feeds Clients the events and ticks that data encodes, eight
// bytes a step, and checks the invariants after every step.
func runSequence(t *testing.T, data []byte) {
	cfg := Correlation{UpdateInterval: 10 * time.Minute, RevocationWindow: 20 * time.Second,
		AuthWindow: 30 * time.Second, MaxClients: 3, MaxEvents: 8}
	cs := NewClients(cfg)
	fed := map[clientKey]map[int64]bool{}
	clock := t0
	var id int64

	for len(data) >= 8 {
		b := data[:8]
		data = data[8:]
		clock = clock.Add(time.Duration(b[0]) * 7 * time.Second)

		if b[1]%5 == 0 {
			for _, c := range cs.Tick(clock) {
				checkClient(t, c, fed)
			}
		} else {
			id++
			e := fuzzEvent(b, clock, id)
			c, ok := cs.Add(e)
			if ok || c.ClientIP != "" {
				k := clientKey{e.Sensor, e.ClientIP}
				if fed[k] == nil {
					fed[k] = map[int64]bool{}
				}
				fed[k][e.ID] = true
				checkClient(t, c, fed)
				if _, err := json.Marshal(c); err != nil {
					t.Fatalf("%s: %v", c.ClientIP, err)
				}
			}
		}

		if cs.Len() > cfg.MaxClients {
			t.Fatalf("%d clients, cap %d", cs.Len(), cfg.MaxClients)
		}
		for _, cl := range cs.byKey {
			if cl.recent.len() > cfg.MaxEvents {
				t.Fatalf("%d records kept, cap %d", cl.recent.len(), cfg.MaxEvents)
			}
		}
		for _, c := range cs.List(clock) {
			checkClient(t, c, fed)
		}
		checkTicked(t, cs)
	}
}

// fuzzEvent is the event that the eight bytes b of a sequence encode.
func fuzzEvent(b []byte, clock time.Time, id int64) Event {
	e := Event{
		ID:         id,
		Time:       clock.Add(-time.Duration(b[2]%64) * time.Second),
		DurationMS: float64(binary.LittleEndian.Uint16(b[6:])) * 10,
		Sensor:     []string{sensorA, "edge2"}[b[1]%2],
		ClientIP:   fuzzIPs[int(b[3]>>4)%len(fuzzIPs)],
		Endpoint:   fuzzEndpoints[int(b[3]&15)%len(fuzzEndpoints)],
		Outcome:    Outcomes[int(b[4])%len(Outcomes)],
		Close:      fuzzCloses[int(b[5]&7)%len(fuzzCloses)],
		TLSVersion: fuzzVersions[int(b[5]>>3&3)%len(fuzzVersions)],
		TLSIssuer:  fuzzIssuers[int(b[5]>>5&3)%len(fuzzIssuers)],
		TLSAlert:   fuzzAlerts[int(b[4]>>5)%len(fuzzAlerts)],
		BytesDown:  int64(b[6]) << 12,
		ClientUser: []string{"", "", "alice", "bob"}[b[2]>>6],
	}
	if b[4]>>4 == 15 {
		e.Outcome = ""
	}
	if b[2] == 255 {
		e.Time = time.Time{}
	}
	return e
}

// checkClient checks the invariants of one client snapshot.
func checkClient(t *testing.T, c Client, fed map[clientKey]map[int64]bool) {
	t.Helper()
	if c.TetraFailures < 0 || c.TetraFailures > c.TetraAttempts {
		t.Fatalf("%s: failures %d, attempts %d", c.ClientIP, c.TetraFailures, c.TetraAttempts)
	}
	switch c.State {
	case StateHealthy, StateFailing, StateSilent, StateUnknown:
	default:
		t.Fatalf("%s: state %q", c.ClientIP, c.State)
	}
	if c.State == StateHealthy && c.LastTetraOK == nil {
		t.Fatalf("%s: healthy without a success", c.ClientIP)
	}
	if c.State == StateFailing && c.TetraAttempts == 0 {
		t.Fatalf("%s: failing without attempts", c.ClientIP)
	}
	if c.LastErrorBasis != Documented && c.LastErrorBasis != Inferred {
		t.Fatalf("%s: basis %q", c.ClientIP, c.LastErrorBasis)
	}
	if (len(c.Diagnoses) == 0) != (c.Diagnosis == "") ||
		len(c.Diagnoses) > 0 && c.Diagnoses[0].Name != c.Diagnosis {
		t.Fatalf("%s: main %q of %v", c.ClientIP, c.Diagnosis, names(c.Diagnoses))
	}
	last := -1
	for _, d := range c.Diagnoses {
		p := slices.Index(DiagnosisNames, d.Name)
		if p <= last {
			t.Fatalf("%s: diagnoses out of order or unknown: %v", c.ClientIP, names(c.Diagnoses))
		}
		last = p
		if len(d.Evidence) == 0 || d.Advice == "" {
			t.Fatalf("%s: %s without evidence or advice", c.ClientIP, d.Name)
		}
		for _, id := range d.Evidence {
			if !fed[clientKey{c.Sensor, c.ClientIP}][id] {
				t.Fatalf("%s: %s cites event %d, never fed for this client", c.ClientIP, d.Name, id)
			}
		}
	}
	if (c.State == StateSilent) != (c.Diagnosis == DiagnosisSilent ||
		slices.Contains(names(c.Diagnoses), DiagnosisSilent)) {
		t.Fatalf("%s: state %s with diagnoses %v", c.ClientIP, c.State, names(c.Diagnoses))
	}
}

// checkTicked checks that nothing a viewer follows changed without being
// reported: every client whose events all lie before the last Tick looks,
// judged afresh at that moment, as Add or Tick last reported it.
func checkTicked(t *testing.T, cs *Clients) {
	t.Helper()
	for _, cl := range cs.byKey {
		if cl.lastSeenN > cs.clock || cl.evalAt > cs.clock {
			continue
		}
		h := cs.evaluate(cl, cs.clock)
		if v := viewOf(cl, &h); !v.equal(&cl.viewed) {
			t.Fatalf("%v: changed at the last Tick without being reported: %+v, was %+v",
				cl.key, h, cl.health)
		}
	}
}

func FuzzClients(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 1, 3, 0x00, 8, 0x08, 4, 0, 1, 2, 0, 0x02, 9, 0, 0, 0, 200, 5, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 1, 0, 0x00, 6, 0, 0, 0, 0, 1, 0, 0x00, 0, 0, 0, 0, 10, 5, 0, 0, 0, 0, 0, 0,
		255, 5, 0, 0, 0, 0, 0, 0, 0, 2, 255, 0x10, 15 << 4, 0, 0, 0})
	rng := rand.New(rand.NewPCG(1, 2))
	for range 8 {
		b := make([]byte, 8*64)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Long inputs add nothing but time: the caps are small.
		runSequence(t, data[:min(len(data), 8*2048)])
	})
}

// TestRandomSequences runs long random sequences through the same checks
// as the fuzzer, so that every test run covers many of them.
func TestRandomSequences(t *testing.T) {
	n := 100
	if testing.Short() {
		n = 20
	}
	for seed := range uint64(n) {
		rng := rand.New(rand.NewPCG(seed, 7))
		b := make([]byte, 8*300)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		// Mostly small time steps, so that windows overlap.
		for i := 0; i < len(b); i += 8 {
			b[i] %= 16
		}
		runSequence(t, b)
	}
}

// TestRecordMatchesAdd feeds the same random sequences, ticks included,
// to one Clients through Add and to another through Record: List, Get and
// NotSeen must show the same clients after every step, and after every
// Tick the clients Record left to judge must be up to date (as
// checkTicked holds for Add).
func TestRecordMatchesAdd(t *testing.T) {
	cfg := Correlation{UpdateInterval: 10 * time.Minute, RevocationWindow: 20 * time.Second,
		AuthWindow: 30 * time.Second, MaxClients: 3, MaxEvents: 8}
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 11))
		added, recorded := NewClients(cfg), NewClients(cfg)
		reported := map[string]LastError{ipA: LastErrorProxyAuth, "10.9.9.9": LastErrorNone}
		added.SetReported(reported)
		recorded.SetReported(reported)
		clock := t0
		var id int64
		for step := range 300 {
			b := make([]byte, 8)
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			clock = clock.Add(time.Duration(b[0]%16) * 7 * time.Second)
			if b[1]%5 == 0 {
				added.Tick(clock)
				recorded.Tick(clock)
				checkTicked(t, recorded)
			} else {
				id++
				e := fuzzEvent(b, clock, id)
				added.Add(e)
				recorded.Record(e)
			}

			want, got := added.List(clock), recorded.List(clock)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d, step %d: List after Record\n%+v\nafter Add\n%+v",
					seed, step, got, want)
			}
			for _, c := range want {
				g, ok := recorded.Get(c.Sensor, c.ClientIP, clock)
				if !ok || !reflect.DeepEqual(g, c) {
					t.Fatalf("seed %d, step %d: Get %s after Record\n%+v\nwant %+v",
						seed, step, c.ClientIP, g, c)
				}
			}
			if got, want := recorded.NotSeen(), added.NotSeen(); !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d, step %d: NotSeen %v, want %v", seed, step, got, want)
			}
		}
	}
}

// BenchmarkAdd measures Add on a mix of cloud traffic, revocation fetches,
// downloads and failures over 10 000 clients, with a Tick per simulated
// second. "typical" spaces each client's events about four minutes apart
// (some thirty in the state window); "storm" about ten seconds apart, so
// that every client keeps a full MaxEvents of records.
func BenchmarkAdd(b *testing.B) {
	const clients = 10_000
	ips := make([]string, clients)
	for i := range ips {
		ips[i] = fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
	}
	mix := []Event{
		ev(0, 0, EndpointAMP, OK),
		ev(0, 0, EndpointAMP, OK),
		ev(0, 0, EndpointRevocation, OK),
		okTetra(0, 0),
		ev(0, 0, EndpointTetra, AuthRequired),
		abandoned(0, 0),
		ev(0, 0, EndpointTetra, DownloadAborted),
		revFail(0, 0, HTTPError),
	}
	for _, load := range []struct {
		name string
		step time.Duration
	}{{"typical", 24 * time.Millisecond}, {"storm", time.Millisecond}} {
		b.Run(load.name, func(b *testing.B) {
			cs := NewClients(Correlation{})
			rng := rand.New(rand.NewPCG(3, 4))
			b.ReportAllocs()
			var i int
			next := time.Second
			for b.Loop() {
				e := mix[rng.IntN(len(mix))]
				e.ID = int64(i + 1)
				e.Time = t0.Add(time.Duration(i) * load.step)
				e.ClientIP = ips[rng.IntN(clients)]
				cs.Add(e)
				if e.Time.Sub(t0) >= next {
					cs.Tick(e.Time)
					next += time.Second
				}
				i++
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
