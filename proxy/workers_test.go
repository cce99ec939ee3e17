package proxy

import (
	"sync"
	"testing"
	"time"
)

// TestWorkers: jobs run at once, each on a goroutine of its own when the
// others are busy; afterwards at most maxIdleWorkers wait for more, a new
// job is run by one of them, and closing ends them.
func TestWorkers(t *testing.T) {
	w := newWorkers()
	const n = 2 * maxIdleWorkers
	release := make(chan struct{})
	var started, finished sync.WaitGroup
	started.Add(n)
	finished.Add(n)
	for range n {
		w.run(func() {
			started.Done()
			<-release
			finished.Done()
		})
	}
	started.Wait() // all n at once: none waited for another
	close(release)
	finished.Wait()
	waitWorkers(t, "the idle workers to settle", func() bool {
		return w.idle.Load() == maxIdleWorkers
	})

	ran := make(chan struct{})
	w.run(func() { close(ran) })
	<-ran

	w.close()
	waitWorkers(t, "the idle workers to end", func() bool { return w.idle.Load() == 0 })
}

// waitWorkers polls cond until it holds, failing the test after a long while.
func waitWorkers(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
