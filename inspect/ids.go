package inspect

import (
	"sync/atomic"
	"time"
)

// IDs hands out event ids: increasing, and never below the current time in
// microseconds, so that the ids of several sensors sharing a store, or of a
// sensor that was renamed, still sort by time. The zero IDs is ready to use.
type IDs struct{ last atomic.Int64 }

// Seed makes the next id greater than id, typically the highest one stored.
func (s *IDs) Seed(id int64) {
	for {
		last := s.last.Load()
		if id <= last || s.last.CompareAndSwap(last, id) {
			return
		}
	}
}

// Next returns a new id.
func (s *IDs) Next() int64 {
	for {
		last := s.last.Load()
		id := max(last+1, time.Now().UnixMicro())
		if s.last.CompareAndSwap(last, id) {
			return id
		}
	}
}
