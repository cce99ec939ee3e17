// Package pipeline carries events from the proxy (or the log tailer) to the
// store and the live stream. The proxy hands each event over without ever
// waiting: the queue is bounded, and what does not fit is counted as dropped
// and shown, never allowed to slow the data path.
package pipeline

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// Kind tells a connection that opened from one that ended.
type Kind uint8

// The kinds of message on the queue; their names are the stream's "type".
const (
	KindOpen Kind = iota
	KindEvent
)

// String returns the stream message type of k.
func (k Kind) String() string {
	if k == KindOpen {
		return "open"
	}
	return "event"
}

// Store is what the pipeline needs of the event store.
type Store interface {
	Append(ctx context.Context, events []inspect.Event) error
}

// DefaultBatchWait is the BatchWait of a zero Config.
const DefaultBatchWait = 20 * time.Millisecond

// Publisher receives every message for the live stream. It must not block.
type Publisher func(kind string, ev inspect.Event)

// Config tunes the pipeline. Zero values take the defaults noted.
type Config struct {
	Queue       int  // bound of each queue; 0 means 65536
	RecordOther bool // store events of endpoint "other" too
	Batch       int  // most events in one store transaction; 0 means 4096
	// BatchWait is how long a store transaction waits, after its first
	// event, for more to share it: a commit costs as much as a hundred
	// inserts, so storing a busy proxy's events one or two at a time would
	// cost more than the proxy itself. The stream does not wait for it.
	// 0 means DefaultBatchWait; negative: no wait.
	BatchWait time.Duration
	// Check says why the store cannot take an event (nil: it can). Such
	// events are dropped before anything else sees them, logged and
	// counted as invalid, so one bad event cannot fail a whole batch nor
	// break an answer that shows it. Nil accepts every event.
	Check func(*inspect.Event) error
	// Correlation, when set, keeps per-client health from the events
	// (inspect.Clients) and sets each event's diagnosis; nil keeps none.
	Correlation *inspect.Correlation
	// PublishClient receives a client whose health changed. It must not
	// block. Nil: client changes are not published.
	PublishClient func(inspect.Client)
	// Watched reports whether the stream has viewers. Open messages go
	// only to them (the store and the metrics take ended events), so
	// while it reports false, Open drops them at once: each would cost a
	// hand-over and a wake-up of the pipeline. Nil: always watched.
	Watched func() bool
	// OnAppend is told of every store transaction: how long it took, how
	// many events it held and how it ended (a failed one is retried and
	// told again). It runs on the store writer and should return quickly.
	// Nil: not told.
	OnAppend func(d time.Duration, n int, err error)
}

// Stats are the pipeline's counters since start.
type Stats struct {
	Queued       uint64 `json:"events_total"`
	Dropped      uint64 `json:"dropped"`      // lost before the store: queue full
	Stored       uint64 `json:"stored"`       // committed to the store
	NotStored    uint64 `json:"not_stored"`   // other traffic, counted only
	StoreErrors  uint64 `json:"store_errors"` // failed store transactions
	StoreLost    uint64 `json:"store_lost"`   // given up at shutdown with the store failing
	Invalid      uint64 `json:"invalid"`      // refused by Config.Check
	LastStoreErr string `json:"last_store_error,omitempty"`
}

type msg struct {
	kind Kind
	ev   inspect.Event
}

// Pipeline is the bounded path from the sensors to the store and stream.
// Use New; the zero Pipeline is not usable.
type Pipeline struct {
	cfg     Config
	store   Store
	publish Publisher
	log     *slog.Logger

	in       chan msg
	toStore  chan inspect.Event
	clients  *clientState // nil: no per-client state
	throttle *throttle    // client messages held back; the dispatcher's own

	queued, dropped, stored, notStored, storeErrors, storeLost, invalid atomic.Uint64
	closing                                                             atomic.Bool

	mu          sync.Mutex
	lastErr     string
	failing     bool
	lastDropLog atomic.Int64 // unix seconds
	lastErrLog  time.Time
}

// New returns a pipeline writing to store (nil: nothing is stored) and
// publishing to publish (nil: no stream).
func New(cfg Config, store Store, publish Publisher, log *slog.Logger) *Pipeline {
	if cfg.Queue <= 0 {
		cfg.Queue = 65536
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 4096
	}
	if cfg.BatchWait == 0 {
		cfg.BatchWait = DefaultBatchWait
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Pipeline{
		cfg:     cfg,
		store:   store,
		publish: publish,
		log:     log,
		in:      make(chan msg, cfg.Queue),
		toStore: make(chan inspect.Event, cfg.Queue),
	}
	if cfg.Correlation != nil {
		p.clients = &clientState{c: inspect.NewClients(*cfg.Correlation)}
		p.throttle = newThrottle()
	}
	return p
}

// Open announces a connection that started. It never blocks.
func (p *Pipeline) Open(ev *inspect.Event) {
	if p.cfg.Watched != nil && !p.cfg.Watched() {
		return
	}
	p.put(KindOpen, ev)
}

// Done hands over a finished event. It never blocks.
func (p *Pipeline) Done(ev *inspect.Event) { p.put(KindEvent, ev) }

func (p *Pipeline) put(k Kind, ev *inspect.Event) {
	select {
	case p.in <- msg{k, *ev}:
		if k == KindEvent {
			p.queued.Add(1)
		}
	default:
		if k == KindEvent {
			p.drop(1, "event queue full")
		}
	}
}

func (p *Pipeline) drop(n uint64, why string) {
	total := p.dropped.Add(n)
	// Dropping happens under overload: no lock, one log line a minute.
	now := time.Now().Unix()
	if last := p.lastDropLog.Load(); now-last >= 60 && p.lastDropLog.CompareAndSwap(last, now) {
		p.log.Error("events dropped", "reason", why, "dropped_total", total)
	}
}

// Stats returns the counters.
func (p *Pipeline) Stats() Stats {
	p.mu.Lock()
	last := p.lastErr
	p.mu.Unlock()
	return Stats{
		Queued:       p.queued.Load(),
		Dropped:      p.dropped.Load(),
		Stored:       p.stored.Load(),
		NotStored:    p.notStored.Load(),
		StoreErrors:  p.storeErrors.Load(),
		StoreLost:    p.storeLost.Load(),
		Invalid:      p.invalid.Load(),
		LastStoreErr: last,
	}
}

// Degraded returns why the pipeline is not healthy, or nothing.
func (p *Pipeline) Degraded() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failing {
		return []string{"store failing: " + p.lastErr}
	}
	return nil
}

// Run moves messages until ctx is done, then drains what is queued into the
// store before returning. Messages handed over after Run returns are lost.
func (p *Pipeline) Run(ctx context.Context) error {
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		p.writeLoop()
	}()

	var tick <-chan time.Time
	if p.clients != nil {
		t := time.NewTicker(tickEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case m := <-p.in:
			p.dispatch(m)
		case now := <-tick:
			p.tick(now)
		case now := <-p.throttle.due():
			p.flushClients(now)
		case <-ctx.Done():
			for {
				select {
				case m := <-p.in:
					p.dispatch(m)
					continue
				default:
				}
				break
			}
			if p.throttle != nil {
				p.flushClients(time.Now())
			}
			p.closing.Store(true)
			close(p.toStore)
			<-writerDone
			return nil
		}
	}
}

func (p *Pipeline) dispatch(m msg) {
	// An event the store refuses (a time past year 9999, say) can be
	// neither shown nor judged: its JSON would not encode, and one such
	// client would break every answer that lists the clients.
	if p.cfg.Check != nil {
		if err := p.cfg.Check(&m.ev); err != nil {
			p.invalid.Add(1)
			p.log.Warn("event dropped: it cannot be stored or shown", "error", err)
			return
		}
	}
	var cl inspect.Client
	changed := false
	if m.kind == KindEvent && p.clients != nil {
		cl, changed = p.clients.add(&m.ev)
	}
	if p.publish != nil {
		p.publish(m.kind.String(), m.ev)
	}
	if changed {
		p.publishClient(cl, time.Now())
	}
	if m.kind != KindEvent || p.store == nil {
		return
	}
	if !m.ev.Stored(p.cfg.RecordOther) {
		p.notStored.Add(1)
		return
	}
	select {
	case p.toStore <- m.ev:
	default:
		p.drop(1, "store queue full: the store is slower than the traffic")
	}
}

// writeLoop batches events into store transactions: it blocks for the first
// event, then takes what else is queued BatchWait later, so batches grow
// with the load and the store's latency stays bounded when it is light.
func (p *Pipeline) writeLoop() {
	batch := make([]inspect.Event, 0, p.cfg.Batch)
	backoff := 100 * time.Millisecond
	for {
		ev, ok := <-p.toStore
		if !ok {
			return
		}
		batch = append(batch[:0], ev)
		open := p.fill(&batch)

		for {
			start := time.Now()
			err := p.store.Append(context.Background(), batch)
			if p.cfg.OnAppend != nil {
				p.cfg.OnAppend(time.Since(start), len(batch), err)
			}
			if err == nil {
				p.stored.Add(uint64(len(batch)))
				p.recovered()
				backoff = 100 * time.Millisecond
				break
			}
			p.failed(err)
			if !open || p.closing.Load() {
				lost := uint64(len(batch))
				for range p.toStore {
					lost++
				}
				p.storeLost.Add(lost)
				p.log.Error("events lost at shutdown: store failing",
					"events", lost, "error", err)
				return
			}
			// Keep the batch and try again; meanwhile the queue
			// fills and overflows into the dropped count.
			time.Sleep(backoff)
			backoff = min(2*backoff, 5*time.Second)
		}
		if !open {
			return
		}
	}
}

// fill waits BatchWait, if set, then adds the events queued by then to
// batch, up to its capacity. Sleeping once costs the writer one wake-up per
// transaction instead of one per event. It returns false when the queue has
// been closed and emptied.
func (p *Pipeline) fill(batch *[]inspect.Event) bool {
	if p.cfg.BatchWait > 0 {
		time.Sleep(p.cfg.BatchWait)
	}
	return p.take(batch)
}

// take adds queued events to batch without waiting; it returns false when
// the queue has been closed and emptied.
func (p *Pipeline) take(batch *[]inspect.Event) bool {
	for len(*batch) < cap(*batch) {
		select {
		case ev, ok := <-p.toStore:
			if !ok {
				return false
			}
			*batch = append(*batch, ev)
		default:
			return true
		}
	}
	return true
}

func (p *Pipeline) failed(err error) {
	p.storeErrors.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failing = true
	p.lastErr = err.Error()
	if time.Since(p.lastErrLog) >= time.Minute {
		p.lastErrLog = time.Now()
		p.log.Error("store failing; proxy keeps forwarding", "error", err)
	}
}

func (p *Pipeline) recovered() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failing {
		p.failing = false
		p.lastErrLog = time.Time{}
		p.log.Info("store recovered")
	}
}

// Backlog returns how many messages wait in the queues; a log follower
// replaying a file reads more slowly while it is high, instead of losing
// events.
func (p *Pipeline) Backlog() int { return len(p.in) + len(p.toStore) }
