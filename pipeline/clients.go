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
	if p.cfg.PublishClient == nil {
		return
	}
	for _, cl := range changed {
		p.cfg.PublishClient(cl)
	}
}
