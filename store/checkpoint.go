package store

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
)

// A commit appends pages to the WAL; a checkpoint copies them back into
// the database file and waits for the disk twice (fsync of the WAL, then
// of the file). Left to SQLite, the checkpoint runs inside the commit that
// crosses wal_autocheckpoint, so the writer waits for the disk every few
// batches. The checkpointer copies them beside the writer instead, on its
// own connection, once checkpointEvents events have been committed since
// its last run; the writer's own checkpoint at wal_autocheckpoint stays as
// the bound on the WAL when readers or a slow disk hold it back.

// checkpointEvents is how many committed events wake the checkpointer: a
// few hundred to a few thousand pages, well under wal_autocheckpoint.
const checkpointEvents = 2048

type checkpointer struct {
	db      *sql.DB
	pending atomic.Int64 // events committed since the last wake-up
	kick    chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startCheckpointer(db *sql.DB) *checkpointer {
	c := &checkpointer{db: db, kick: make(chan struct{}, 1), stop: make(chan struct{})}
	c.wg.Add(1)
	go c.loop()
	return c
}

// committed counts n events committed and wakes the checkpointer when
// enough have accumulated; it never waits.
func (c *checkpointer) committed(n int) {
	if c.pending.Add(int64(n)) < checkpointEvents {
		return
	}
	c.pending.Store(0)
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *checkpointer) loop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case <-c.kick:
		}
		// PASSIVE copies what no reader still needs and waits for no
		// one. A failure (a full disk, a file made read-only) is left to
		// the next wake-up or to the writer's own checkpoint; the commits
		// it follows have succeeded and are safe in the WAL. The failed
		// connection is closed, so that the next wake-up starts afresh
		// rather than keep a handle that went bad.
		_, err := c.db.ExecContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)")
		if err != nil {
			c.db.SetMaxIdleConns(0)
			c.db.SetMaxIdleConns(1)
		}
	}
}

// close stops the checkpointer and closes its connection.
func (c *checkpointer) close() error {
	close(c.stop)
	c.wg.Wait()
	return c.db.Close()
}
