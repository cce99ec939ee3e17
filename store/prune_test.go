package store

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// TestPruneLetsAppendsThrough prunes a table of many batches' worth of old
// events while a writer keeps appending, as the hourly retention does while
// serve records: appends must complete between Prune's transactions rather
// than wait for the whole prune, and both must do all their work. The test
// checks the interleaving by order of completion, not by timing.
func TestPruneLetsAppendsThrough(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	const old = 20 * pruneBatch
	for from := 1; from <= old; from += 5000 {
		mustAppend(t, s, genEvents("a", from, 5000))
	}
	cutoff := genEvent("a", old+1).Time // every old event is before it

	var (
		pruning  atomic.Bool
		during   atomic.Int64 // appends completed while Prune ran
		appended atomic.Int64
		wg       sync.WaitGroup
		started  = make(chan struct{})
		stop     = make(chan struct{})
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			// New events, after the cutoff: Prune must leave them alone.
			evs := genEvents("b", 1+i*10, 10)
			for j := range evs {
				evs[j].Time = cutoff.Add(time.Duration(i*10+j) * time.Millisecond)
			}
			if err := s.Append(ctx, evs); err != nil {
				t.Error(err)
				return
			}
			appended.Add(10)
			if pruning.Load() {
				during.Add(1)
			}
			if i == 0 {
				close(started)
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()

	<-started
	pruning.Store(true)
	deleted, err := s.Prune(ctx, cutoff)
	pruning.Store(false)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}

	if deleted != old {
		t.Errorf("Prune deleted %d, want %d", deleted, old)
	}
	if during.Load() == 0 {
		t.Errorf("no append completed during a prune of %d transactions: the writer was "+
			"held for the whole prune", old/pruneBatch)
	}
	var left int
	err = s.Scan(ctx, inspect.Filter{}, func(e inspect.Event) error {
		if e.Sensor != "b" {
			t.Fatalf("event %s/%d at %v survived the prune", e.Sensor, e.ID, e.Time)
		}
		left++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if int64(left) != appended.Load() {
		t.Errorf("%d new events left, %d appended", left, appended.Load())
	}
	t.Logf("%d appends completed during the prune of %d events", during.Load(), old)
}
