package proxy

import (
	"sync"
	"sync/atomic"
)

// maxIdleWorkers bounds the worker goroutines kept waiting for work: enough
// for the bursts of a busy site, few enough that after thousands of tunnels
// end at once, their goroutines and stacks go.
const maxIdleWorkers = 64

// workers runs the goroutines of connections: the front of each client
// connection and the second direction of each tunnel. A goroutine that has
// served a connection has grown its stack to what the next one needs
// (reading a request, dialing, relaying); reusing it spares a new goroutine
// growing and copying its stack several times per connection.
type workers struct {
	jobs chan func() // unbuffered: a send succeeds only to an idle worker
	stop chan struct{}
	idle atomic.Int32 // workers waiting for work
	once sync.Once
}

func newWorkers() *workers {
	return &workers{jobs: make(chan func()), stop: make(chan struct{})}
}

// run runs f on an idle worker, or on a new one when none is idle. It never
// waits.
func (w *workers) run(f func()) {
	select {
	case w.jobs <- f:
	default:
		go w.loop(f)
	}
}

// loop runs f, then whatever comes next, until maxIdleWorkers others are
// idle already or the workers are closed.
func (w *workers) loop(f func()) {
	for {
		f()
		if w.idle.Add(1) > maxIdleWorkers {
			w.idle.Add(-1)
			return
		}
		select {
		case f = <-w.jobs:
			w.idle.Add(-1)
		case <-w.stop:
			w.idle.Add(-1)
			return
		}
	}
}

// close ends the idle workers; busy ones end when their work is done.
func (w *workers) close() {
	w.once.Do(func() { close(w.stop) })
}
