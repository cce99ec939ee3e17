package inspect

import (
	"sync"
	"testing"
	"time"
)

func TestIDs(t *testing.T) {
	var ids IDs
	ids.Seed(time.Now().Add(time.Hour).UnixMicro()) // a store ahead of the clock
	seen := make(map[int64]bool)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prev := int64(0)
			for i := 0; i < 1000; i++ {
				id := ids.Next()
				if id <= prev {
					t.Errorf("id %d after %d", id, prev)
				}
				prev = id
				mu.Lock()
				if seen[id] {
					t.Errorf("id %d twice", id)
				}
				seen[id] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()

	var fresh IDs
	if id := fresh.Next(); id < time.Now().Add(-time.Minute).UnixMicro() {
		t.Fatalf("a fresh id %d is not time-based", id)
	}
}
