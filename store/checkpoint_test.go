package store

import (
	"os"
	"testing"
	"time"
)

// Events committed past checkpointEvents reach the database file through
// the checkpointer, long before the writer's own checkpoint at
// wal_autocheckpoint pages would copy them.
func TestCheckpointerCopiesWAL(t *testing.T) {
	s, path := openTest(t)
	size := func() int64 {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	mustAppend(t, s, genEvents("a", 1, checkpointEvents/2))
	if got := size(); got != before {
		t.Fatalf("file grew from %d to %d bytes before any checkpoint", before, got)
	}
	mustAppend(t, s, genEvents("a", 1+checkpointEvents/2, checkpointEvents))
	deadline := time.Now().Add(10 * time.Second)
	for size() == before {
		if time.Now().After(deadline) {
			t.Fatalf("file still %d bytes 10s after %d events were committed", before,
				checkpointEvents*3/2)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
