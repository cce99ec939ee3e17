package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// A migration moves the schema from version-1 to version. Migrations are
// never edited once released; a change is a new migration at the end.
type migration struct {
	version int
	name    string
	stmts   []string
}

// migrations lists every schema change in order; the version of a database
// is the highest version recorded in its schema_version table.
//
// The DDL sticks to types and syntax that PostgreSQL accepts as they are
// (TEXT, BIGINT, DOUBLE PRECISION, composite primary keys, expression
// indexes). Column names are the JSON names of inspect.Event.
//
// An event is identified by its sensor and id. The primary key lists id
// first so that its index also serves the newest-first order, paging by id
// and MaxID, which saves a separate id index on every insert.
//
// Every index costs inserts, least when its new entries go at one end:
// events_time and the primary key grow at one end, events_host and
// events_outcome at one end per distinct value, events_client at the end
// of its newest block (see seqBlockBits). Each filter index ends in id, so
// that it yields the newest matches first without sorting.
//
// time is text: RFC 3339 in UTC with exactly nine fractional digits, so
// that text order is time order and the value reads the same in the
// sqlite3 shell, in a CSV dump and in the API. Integer nanoseconds would be
// a little smaller and faster but unreadable by hand, and PostgreSQL's
// timestamp keeps only microseconds, so text is also what round-trips
// there.
var migrations = []migration{
	{
		version: 1,
		name:    "events and tail offsets",
		stmts: []string{
			`CREATE TABLE events (
				id              BIGINT           NOT NULL,
				time            TEXT             NOT NULL,
				duration_ms     DOUBLE PRECISION NOT NULL DEFAULT 0,
				source          TEXT             NOT NULL DEFAULT '',
				sensor          TEXT             NOT NULL,
				client_ip       TEXT             NOT NULL DEFAULT '',
				client_user     TEXT             NOT NULL DEFAULT '',
				method          TEXT             NOT NULL DEFAULT '',
				host            TEXT             NOT NULL DEFAULT '',
				port            INTEGER          NOT NULL DEFAULT 0,
				url             TEXT             NOT NULL DEFAULT '',
				sni             TEXT             NOT NULL DEFAULT '',
				endpoint        TEXT             NOT NULL DEFAULT '',
				outcome         TEXT             NOT NULL DEFAULT '',
				status          INTEGER          NOT NULL DEFAULT 0,
				upstream_status INTEGER          NOT NULL DEFAULT 0,
				bytes_up        BIGINT           NOT NULL DEFAULT 0,
				bytes_down      BIGINT           NOT NULL DEFAULT 0,
				close           TEXT             NOT NULL DEFAULT '',
				tls_version     TEXT             NOT NULL DEFAULT '',
				tls_alert       TEXT             NOT NULL DEFAULT '',
				tls_issuer      TEXT             NOT NULL DEFAULT '',
				detail          TEXT             NOT NULL DEFAULT '',
				diagnosis       TEXT             NOT NULL DEFAULT '',
				lasterror       BIGINT           NOT NULL DEFAULT 0,
				PRIMARY KEY (id, sensor)
			)`,
			// since/until windows and pruning.
			`CREATE INDEX events_time ON events (time)`,
			// The filters the UI offers on one value, each ending in id so
			// that the newest matches come straight off the index.
			`CREATE INDEX events_client_ip ON events (client_ip, id)`,
			`CREATE INDEX events_host ON events (lower(host), id)`,
			// Only the outcomes worth looking for: ok, the bulk of the
			// events, is found soon enough newest first, and leaving it
			// out spares most inserts this index.
			`CREATE INDEX events_outcome ON events (outcome, id) WHERE outcome <> 'ok'`,
			// inode holds the 64 bits of a uint64 in a signed column.
			`CREATE TABLE tail_offsets (
				file        TEXT   NOT NULL PRIMARY KEY,
				inode       BIGINT NOT NULL,
				byte_offset BIGINT NOT NULL,
				updated     TEXT   NOT NULL
			)`,
		},
	},
	{
		version: 2,
		name:    "endpoints' own lasterror values",
		stmts: []string{
			// The last upload of the values admins gathered from the
			// endpoints: one row per line of the file, in file order. A
			// line that could not be used keeps its reason in error and
			// nothing else. uploaded is the same on every row.
			`CREATE TABLE endpoint_lasterrors (
				line        INTEGER NOT NULL PRIMARY KEY,
				host        TEXT    NOT NULL DEFAULT '',
				ip          TEXT    NOT NULL DEFAULT '',
				lasterror   BIGINT  NOT NULL DEFAULT 0,
				defversion  TEXT    NOT NULL DEFAULT '',
				last_update TEXT    NOT NULL DEFAULT '',
				error       TEXT    NOT NULL DEFAULT '',
				uploaded    TEXT    NOT NULL
			)`,
		},
	},
	{
		version: 3,
		name:    "client index by blocks of insertion order",
		stmts: []string{
			// seq numbers rows in the order they were stored (see
			// seqBlockBits); the rows stored before it are block 0.
			`ALTER TABLE events ADD COLUMN seq BIGINT NOT NULL DEFAULT 0`,
			`DROP INDEX events_client_ip`,
			`CREATE INDEX events_client ON events ((seq >> 12), client_ip, id)`,
			// The highest id ever stored in each block: a bound that
			// tells a walk of events_client when older blocks can no
			// longer hold one of the newest matches. Rows moved out of a
			// block by a new version of their event, or pruned, leave it
			// higher than it need be, never lower. Append keeps it; rows
			// that another program writes into events are not counted.
			`CREATE TABLE event_blocks (
				block  BIGINT NOT NULL PRIMARY KEY,
				max_id BIGINT NOT NULL
			)`,
			`INSERT INTO event_blocks (block, max_id)
				SELECT 0, MAX(id) FROM events HAVING COUNT(*) > 0`,
		},
	},
}

// seqBlockBits sets the blocks of the client index events_client. The
// store numbers the rows it writes (the seq column, which Open starts at a
// new block), and rows whose seq agrees but for its low seqBlockBits bits
// share a block: about 4,096 rows stored one after the other. The index is
// ordered by block, then client, then id, so that new entries land in the
// newest block, a few dozen pages at the end of the index that every batch
// touches anyway. The index it replaced, (client_ip, id), took one page
// per distinct client of a batch, all over the index, which on a table of
// millions of events halved the rate of inserts. The blocks follow the
// order of storing, not ids, because ids are microseconds and would give
// a block to nearly every event of a quiet proxy. clientEvents finds a
// client's events block by block.
const seqBlockBits = 12

// SchemaVersion is the schema version this package writes: the version of
// its last migration. Open refuses a database with a higher version.
const SchemaVersion = 3

// migrate applies the migrations db lacks, all in one transaction, so that
// a failure leaves the previous schema untouched. Two processes opening a
// new file at once are serialized by the transaction's write lock; the
// second finds nothing left to do.
func migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	defer tx.Rollback()

	_, err = tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version INTEGER NOT NULL PRIMARY KEY,
		name    TEXT    NOT NULL,
		applied TEXT    NOT NULL
	)`)
	if err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	var current int
	q := "SELECT COALESCE(MAX(version), 0) FROM schema_version"
	if err := tx.QueryRowContext(ctx, q).Scan(&current); err != nil {
		return fmt.Errorf("migrating: reading schema version: %w", err)
	}
	if current > SchemaVersion {
		return fmt.Errorf("schema version %d is newer than this program's %d",
			current, SchemaVersion)
	}

	for _, m := range migrations {
		if m.version <= current {
			continue
		}
		for _, stmt := range m.stmts {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("migrating to version %d (%s): %w", m.version, m.name, err)
			}
		}
		_, err := tx.ExecContext(ctx,
			"INSERT INTO schema_version (version, name, applied) VALUES (?, ?, ?)",
			m.version, m.name, formatTime(time.Now()))
		if err != nil {
			return fmt.Errorf("migrating to version %d: %w", m.version, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	return nil
}
