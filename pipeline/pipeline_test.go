package pipeline

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// fakeStore is a hand-written Store: it keeps what it is given, can be made
// to fail, and can be stalled until released.
type fakeStore struct {
	mu      sync.Mutex
	events  []inspect.Event
	batches int
	fail    error
	stall   chan struct{}
}

func (s *fakeStore) Append(_ context.Context, evs []inspect.Event) error {
	if s.stall != nil {
		<-s.stall
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.events = append(s.events, evs...)
	s.batches++
	return nil
}

func (s *fakeStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.events)
}

func (s *fakeStore) setFail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

func tetra(id int64) *inspect.Event {
	return &inspect.Event{ID: id, Endpoint: inspect.EndpointTetra, Outcome: inspect.OK}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStoresAndPublishes(t *testing.T) {
	st := &fakeStore{}
	var mu sync.Mutex
	kinds := map[string]int{}
	p := New(Config{Queue: 1000}, st, func(kind string, _ inspect.Event) {
		mu.Lock()
		kinds[kind]++
		mu.Unlock()
	}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()

	for i := int64(1); i <= 50; i++ {
		p.Open(tetra(i))
		p.Done(tetra(i))
	}
	// Other traffic is published but not stored; denied always is.
	p.Done(&inspect.Event{ID: 51, Endpoint: inspect.EndpointOther, Outcome: inspect.OK})
	p.Done(&inspect.Event{ID: 52, Endpoint: inspect.EndpointOther, Outcome: inspect.Denied})

	waitFor(t, "51 stored events", func() bool { return st.count() == 51 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s := p.Stats()
	if s.Stored != 51 || s.NotStored != 1 || s.Dropped != 0 || s.Queued != 52 {
		t.Fatalf("stats %+v", s)
	}
	mu.Lock()
	defer mu.Unlock()
	if kinds["open"] != 50 || kinds["event"] != 52 {
		t.Fatalf("published %v", kinds)
	}
}

func TestStalledStoreNeverBlocks(t *testing.T) {
	st := &fakeStore{stall: make(chan struct{})}
	p := New(Config{Queue: 10}, st, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()

	// With the store stalled, at most the two queues and one batch fit;
	// the rest must be dropped and counted, and Done must return at once.
	finished := make(chan struct{})
	go func() {
		for i := int64(1); i <= 1000; i++ {
			p.Done(tetra(i))
		}
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("Done blocked on a stalled store")
	}
	waitFor(t, "drops", func() bool { return p.Stats().Dropped > 0 })

	close(st.stall)
	cancel()
	<-done
	s := p.Stats()
	if got := s.Stored + s.Dropped; got != 1000 {
		t.Fatalf("stored %d + dropped %d = %d, want 1000", s.Stored, s.Dropped, got)
	}
}

func TestStoreFailureAndRecovery(t *testing.T) {
	st := &fakeStore{}
	st.setFail(errors.New("disk full"))
	p := New(Config{Queue: 100}, st, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()

	p.Done(tetra(1))
	waitFor(t, "degraded", func() bool { return len(p.Degraded()) > 0 })
	if d := p.Degraded(); d[0] != "store failing: disk full" {
		t.Fatalf("degraded %q", d)
	}
	p.Done(tetra(2))

	st.setFail(nil)
	waitFor(t, "recovery", func() bool { return st.count() == 2 && len(p.Degraded()) == 0 })
	cancel()
	<-done
	if s := p.Stats(); s.StoreErrors == 0 || s.Stored != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestShutdownFlushes(t *testing.T) {
	st := &fakeStore{stall: make(chan struct{})}
	p := New(Config{Queue: 1000}, st, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	for i := int64(1); i <= 500; i++ {
		p.Done(tetra(i))
	}
	cancel()
	close(st.stall)
	<-done
	if n := st.count(); n != 500 {
		t.Fatalf("stored %d of 500 at shutdown", n)
	}
}

func TestShutdownWithFailingStoreCountsLoss(t *testing.T) {
	st := &fakeStore{}
	st.setFail(errors.New("database is locked"))
	p := New(Config{Queue: 100}, st, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	for i := int64(1); i <= 20; i++ {
		p.Done(tetra(i))
	}
	waitFor(t, "a failed append", func() bool { return p.Stats().StoreErrors > 0 })
	cancel()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("shutdown hung on a failing store")
	}
	if s := p.Stats(); s.StoreLost+s.Stored+s.Dropped != 20 || s.StoreLost == 0 {
		t.Fatalf("stats %+v", s)
	}
}

func BenchmarkDone(b *testing.B) {
	p := New(Config{Queue: 1 << 16}, &fakeStore{}, func(string, inspect.Event) {}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	ev := tetra(1)
	b.ReportAllocs()
	for b.Loop() {
		p.Done(ev)
	}
	cancel()
	<-done
}

// An event the store refuses is neither stored nor published nor judged.
func TestInvalidEventsSkipped(t *testing.T) {
	st := &fakeStore{}
	var mu sync.Mutex
	var published []int64
	p := New(Config{Queue: 10, Correlation: &inspect.Correlation{},
		Check: func(ev *inspect.Event) error {
			if ev.ID == 2 {
				return errors.New("bad time")
			}
			return nil
		}}, st, func(_ string, ev inspect.Event) {
		mu.Lock()
		published = append(published, ev.ID)
		mu.Unlock()
	}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	for i := int64(1); i <= 3; i++ {
		ev := tetra(i)
		if i == 2 {
			ev.ClientIP = "10.9.9.9"
		}
		p.Done(ev)
	}
	waitFor(t, "two stored", func() bool { return st.count() == 2 })
	cancel()
	<-done
	if s := p.Stats(); s.Invalid != 1 || s.Stored != 2 {
		t.Fatalf("stats %+v", s)
	}
	mu.Lock()
	defer mu.Unlock()
	if slices.Contains(published, 2) {
		t.Errorf("the refused event was published: %v", published)
	}
	for _, c := range p.Clients() {
		if c.ClientIP == "10.9.9.9" {
			t.Errorf("the refused event's client is judged: %+v", c)
		}
	}
}

func TestClientState(t *testing.T) {
	var mu sync.Mutex
	var published []inspect.Client
	var events []inspect.Event
	p := New(Config{Queue: 100, Correlation: &inspect.Correlation{},
		PublishClient: func(c inspect.Client) {
			mu.Lock()
			published = append(published, c)
			mu.Unlock()
		}}, &fakeStore{}, func(kind string, ev inspect.Event) {
		if kind == "event" {
			mu.Lock()
			events = append(events, ev)
			mu.Unlock()
		}
	}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()

	now := time.Now().UTC()
	p.Done(&inspect.Event{ID: 1, Time: now, Sensor: "s", ClientIP: "10.0.0.5", Method: "CONNECT",
		Host: "tetra-defs.amp.cisco.com", Endpoint: inspect.EndpointTetra, Outcome: inspect.DNSFailure,
		LastError: uint32(inspect.LastErrorDownloadFailed)})
	waitFor(t, "a client message", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(published) > 0 && len(events) > 0
	})
	cancel()
	<-done

	mu.Lock()
	defer mu.Unlock()
	c := published[len(published)-1]
	if c.ClientIP != "10.0.0.5" || c.Diagnosis != "dns" || c.State != inspect.StateFailing {
		t.Fatalf("client %+v", c)
	}
	if events[0].Diagnosis != "dns" {
		t.Fatalf("the event's diagnosis is %q", events[0].Diagnosis)
	}
	if got := p.Clients(); len(got) != 1 || got[0].ClientIP != "10.0.0.5" {
		t.Fatalf("Clients() = %+v", got)
	}
}

// slowStore takes at least delay for each Append, and fails the first
// fails of them.
type slowStore struct {
	fakeStore
	delay time.Duration
	fails int
}

func (s *slowStore) Append(ctx context.Context, evs []inspect.Event) error {
	time.Sleep(s.delay)
	s.mu.Lock()
	if s.fails > 0 {
		s.fails--
		s.mu.Unlock()
		return errors.New("database is locked")
	}
	s.mu.Unlock()
	return s.fakeStore.Append(ctx, evs)
}

// appendCall is what one OnAppend call was told.
type appendCall struct {
	d   time.Duration
	n   int
	err error
}

func TestOnAppend(t *testing.T) {
	const delay = 5 * time.Millisecond
	st := &slowStore{delay: delay, fails: 1}
	var mu sync.Mutex
	var calls []appendCall
	p := New(Config{Queue: 100, OnAppend: func(d time.Duration, n int, err error) {
		mu.Lock()
		calls = append(calls, appendCall{d, n, err})
		mu.Unlock()
	}}, st, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()

	for i := int64(1); i <= 20; i++ {
		p.Done(tetra(i))
	}
	waitFor(t, "20 stored events", func() bool { return st.count() == 20 })
	cancel()
	<-done

	mu.Lock()
	defer mu.Unlock()
	if len(calls) < 2 {
		t.Fatalf("%d calls; want a failed one and at least one that stored", len(calls))
	}
	if calls[0].err == nil || calls[0].n < 1 {
		t.Errorf("first call %+v; want the failed transaction with its events", calls[0])
	}
	stored := 0
	for _, c := range calls {
		if c.d < delay {
			t.Errorf("call %+v took less than the store's %v", c, delay)
		}
		if c.err == nil {
			stored += c.n
		}
	}
	if stored != 20 || p.Stats().Stored != 20 {
		t.Errorf("successful calls held %d events, stats say %d stored; want 20",
			stored, p.Stats().Stored)
	}
}

// TestBusyClientThrottled: a client that changes with every one of many
// events (each tetra attempt counts) is not published once per event, and
// the state its viewers are left with is the last one. A client that
// changes once is published too.
func TestBusyClientThrottled(t *testing.T) {
	var mu sync.Mutex
	var published []inspect.Client
	p := New(Config{Queue: 10000, Correlation: &inspect.Correlation{MaxEvents: 1000},
		PublishClient: func(c inspect.Client) {
			mu.Lock()
			published = append(published, c)
			mu.Unlock()
		}}, &fakeStore{}, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()

	const n = 500
	start := time.Now()
	now := start.UTC()
	attempt := func(id int64, ip string) *inspect.Event {
		return &inspect.Event{ID: id, Time: now, Sensor: "s", ClientIP: ip, Method: "CONNECT",
			Host: "tetra-defs.amp.cisco.com", Endpoint: inspect.EndpointTetra,
			Outcome: inspect.OK, DurationMS: 1}
	}
	for i := int64(1); i <= n; i++ {
		p.Done(attempt(i, "10.0.0.5"))
	}
	p.Done(attempt(n+1, "10.0.0.6"))
	last := func(ip string) (inspect.Client, int) {
		mu.Lock()
		defer mu.Unlock()
		var c inspect.Client
		k := 0
		for _, pc := range published {
			if pc.ClientIP == ip {
				c = pc
				k++
			}
		}
		return c, k
	}
	waitFor(t, "the busy client's last state", func() bool {
		c, _ := last("10.0.0.5")
		return c.TetraAttempts == n
	})
	elapsed := time.Since(start)
	waitFor(t, "the quiet client", func() bool {
		_, k := last("10.0.0.6")
		return k > 0
	})
	cancel()
	<-done

	// One message at once, then at most one per clientEvery (and one more
	// for the period under way).
	_, k := last("10.0.0.5")
	if limit := 2 + int(elapsed/clientEvery); k > limit {
		t.Errorf("the busy client was published %d times for %d events in %v; want at most %d",
			k, n, elapsed, limit)
	}
	if c, k := last("10.0.0.6"); k != 1 || c.TetraAttempts != 1 {
		t.Errorf("the quiet client was published %d times, last as %+v; want once", k, c)
	}
}

// TestOpensOnlyWhenWatched: open messages are published while the stream
// is watched and dropped, uncounted, while it is not; ended events are
// published and stored either way.
func TestOpensOnlyWhenWatched(t *testing.T) {
	st := &fakeStore{}
	var watched atomic.Bool
	var mu sync.Mutex
	var opens []int64
	p := New(Config{Queue: 100, Watched: watched.Load}, st, func(kind string, ev inspect.Event) {
		if kind == "open" {
			mu.Lock()
			opens = append(opens, ev.ID)
			mu.Unlock()
		}
	}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()

	p.Open(tetra(1))
	p.Done(tetra(1))
	watched.Store(true)
	p.Open(tetra(2))
	p.Done(tetra(2))
	waitFor(t, "two stored events", func() bool { return st.count() == 2 })
	cancel()
	<-done

	mu.Lock()
	defer mu.Unlock()
	if len(opens) != 1 || opens[0] != 2 {
		t.Errorf("opens published %v; want only 2's, made while watched", opens)
	}
	if s := p.Stats(); s.Queued != 2 || s.Dropped != 0 {
		t.Errorf("stats %+v; want 2 events queued, none dropped", s)
	}
}
