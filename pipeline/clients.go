package pipeline

import (
	"sync"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// tickEvery is how often time passing is looked at for client states that
// change without traffic (a client falling silent, a challenge left
// unanswered).
const tickEvery = 5 * time.Second

// clientEvery is the least time between two messages about one client. A
// busy client changes with nearly every event it makes; its viewers need
// its state a few times a second, not thousands of times, and each message
// costs an encoding and a write to every viewer.
const clientEvery = 250 * time.Millisecond

// clientKey names a client: the sensor that saw it and its address.
type clientKey struct{ sensor, ip string }

// throttle holds back the messages of busy clients. The first change of a
// client goes out at once; the changes that follow within clientEvery go
// out as one when it has passed, the latest state winning. It belongs to
// the dispatcher's goroutine.
type throttle struct {
	last    map[clientKey]time.Time // when each client was last sent, for clientEvery
	pending map[clientKey]inspect.Client
	timer   *time.Timer // runs while pending holds a client
	armed   bool
}

func newThrottle() *throttle {
	t := &throttle{
		last:    make(map[clientKey]time.Time),
		pending: make(map[clientKey]inspect.Client),
		timer:   time.NewTimer(time.Hour),
	}
	t.timer.Stop()
	return t
}

// due returns the channel that tells when held messages are to go out; nil
// when none is held or t is nil.
func (t *throttle) due() <-chan time.Time {
	if t == nil || !t.armed {
		return nil
	}
	return t.timer.C
}

// publishClient sends a client whose health changed, or holds it back
// when the same client was sent less than clientEvery ago.
func (p *Pipeline) publishClient(cl inspect.Client, now time.Time) {
	if p.cfg.PublishClient == nil {
		return
	}
	t := p.throttle
	k := clientKey{cl.Sensor, cl.ClientIP}
	_, held := t.pending[k]
	if last, ok := t.last[k]; !held && (!ok || now.Sub(last) >= clientEvery) {
		t.last[k] = now
		p.cfg.PublishClient(cl)
		return
	}
	t.pending[k] = cl
	if !t.armed {
		t.timer.Reset(clientEvery)
		t.armed = true
	}
}

// flushClients sends the messages held back, and forgets the clients that
// were last sent long enough ago.
func (p *Pipeline) flushClients(now time.Time) {
	t := p.throttle
	if t.armed {
		t.timer.Stop()
		t.armed = false
	}
	for k, cl := range t.pending {
		p.cfg.PublishClient(cl)
		t.last[k] = now
		delete(t.pending, k)
	}
	for k, last := range t.last {
		if now.Sub(last) >= clientEvery {
			delete(t.last, k)
		}
	}
}

// clientState guards the per-client correlation: the dispatcher writes it,
// the page and the API read it.
type clientState struct {
	mu sync.Mutex
	c  *inspect.Clients
}

// add correlates one finished event and sets its diagnosis.
func (cs *clientState) add(ev *inspect.Event) (inspect.Client, bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cl, changed := cs.c.Add(*ev)
	if d := cl.DiagnosisFor(ev.ID); d != "" {
		ev.Diagnosis = d
	}
	return cl, changed
}

// Clients returns every client's health as of now, failing first; nil when
// the pipeline keeps no client state.
func (p *Pipeline) Clients() []inspect.Client {
	if p.clients == nil {
		return nil
	}
	p.clients.mu.Lock()
	defer p.clients.mu.Unlock()
	return p.clients.c.List(time.Now())
}

// NotSeen returns the endpoints whose own lasterror values were imported
// but that this sensor never saw.
func (p *Pipeline) NotSeen() []inspect.Client {
	if p.clients == nil {
		return nil
	}
	p.clients.mu.Lock()
	defer p.clients.mu.Unlock()
	return p.clients.c.NotSeen()
}

// SetReported replaces the lasterror values endpoints reported themselves,
// by client address.
func (p *Pipeline) SetReported(byIP map[string]inspect.LastError) {
	if p.clients == nil {
		return
	}
	p.clients.mu.Lock()
	p.clients.c.SetReported(byIP)
	p.clients.mu.Unlock()
}

// Warm feeds events stored before a restart (oldest first) into the client
// state, so health survives restarts. Call it before Run.
func (p *Pipeline) Warm(events []inspect.Event) {
	if p.clients == nil {
		return
	}
	p.clients.mu.Lock()
	defer p.clients.mu.Unlock()
	for _, ev := range events {
		p.clients.c.Add(ev)
	}
}

// tick lets time pass for the client state and publishes what changed.
func (p *Pipeline) tick(now time.Time) {
	p.clients.mu.Lock()
	changed := p.clients.c.Tick(now)
	p.clients.mu.Unlock()
	for _, cl := range changed {
		p.publishClient(cl, now)
	}
}
