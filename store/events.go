package store

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// Limits of Events.
const (
	// DefaultLimit is the number of events Events returns when the
	// filter's Limit is zero or negative.
	DefaultLimit = 100
	// MaxLimit is the most events one call to Events returns.
	MaxLimit = 10000
)

// pruneBatch is how many events one Prune transaction deletes: small
// enough that a pending Append waits a few milliseconds at most.
const pruneBatch = 1000

// eventColumns are the columns of the events table in the order Append
// binds them and Events scans them.
var eventColumns = []string{
	"id", "time", "duration_ms", "source", "sensor", "client_ip", "client_user",
	"method", "host", "port", "url", "sni", "endpoint", "outcome", "status",
	"upstream_status", "bytes_up", "bytes_down", "close", "tls_version",
	"tls_alert", "tls_issuer", "detail", "diagnosis", "lasterror",
}

// insertColumns are the columns Append writes: the event's, then the
// store's own seq (see seqBlockBits), which no query returns.
var insertColumns = append(slices.Clip(eventColumns), "seq")

// insertEventSQL stores one event. An event already stored under the same
// sensor and id is replaced: a sensor may send an event again (a retried
// batch, an open connection completed later), and the last word is the
// most complete one.
var insertEventSQL = func() string {
	var b strings.Builder
	b.WriteString("INSERT INTO events (")
	b.WriteString(strings.Join(insertColumns, ", "))
	b.WriteString(") VALUES (?")
	b.WriteString(strings.Repeat(", ?", len(insertColumns)-1))
	b.WriteString(") ON CONFLICT (id, sensor) DO UPDATE SET ")
	sep := ""
	for _, c := range insertColumns {
		if c == "sensor" || c == "id" {
			continue
		}
		b.WriteString(sep + c + " = excluded." + c)
		sep = ", "
	}
	return b.String()
}()

// selectEventSQL reads eventColumns; Events adds the conditions and order.
var selectEventSQL = "SELECT " + strings.Join(eventColumns, ", ") + " FROM events"

// timeLayout is RFC 3339 with a fixed nine-digit fraction. A fixed width
// makes the text sort in time order (RFC3339Nano drops trailing zeros, and
// "05Z" would sort after "05.5Z").
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// The range of times that timeLayout keeps in order: four-digit years.
var (
	minTime = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)
)

// formatTime renders t for the time column; t must lie within
// [minTime, maxTime].
func formatTime(t time.Time) string {
	var buf [len(timeLayout)]byte
	return string(t.UTC().AppendFormat(buf[:0], timeLayout))
}

// parseTime reads a time column. It accepts any RFC 3339 time, so rows
// written by hand or by another tool are read too, and returns it in UTC.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}

// Check reports why e cannot be stored, or nil if it can: its time must
// have a four-digit year and its duration must be a finite number. Append
// rejects a whole batch that holds such an event, so a caller that wants
// to drop only the bad ones checks each event first.
func Check(e *inspect.Event) error {
	switch {
	case e.Time.Before(minTime) || e.Time.After(maxTime):
		return fmt.Errorf("event %s/%d: time %v outside years 0 to 9999",
			e.Sensor, e.ID, e.Time)
	case math.IsNaN(e.DurationMS) || math.IsInf(e.DurationMS, 0):
		return fmt.Errorf("event %s/%d: duration_ms is %v", e.Sensor, e.ID, e.DurationMS)
	}
	return nil
}

// Append stores events in one transaction: all of them or, on error, none.
// An event whose sensor and id are already stored replaces the stored one.
// Events that fail Check make the whole call fail before anything is
// written, and so does a database file removed or replaced since Open
// (see Ping). A nil or empty slice is a no-op.
func (s *Store) Append(ctx context.Context, events []inspect.Event) error {
	if len(events) == 0 {
		return nil
	}
	if err := s.append(ctx, events); err != nil {
		return fmt.Errorf("appending events: %w", err)
	}
	return nil
}

func (s *Store) append(ctx context.Context, events []inspect.Event) error {
	if err := s.checkFile(); err != nil {
		return err
	}
	for i := range events {
		if err := Check(&events[i]); err != nil {
			return err
		}
	}

	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()

	// The rows go in chunks of at most bulkRows rows or a little over
	// bulkBytes, each packed into one blob for tetrascope_insert_rows (see
	// bulk.go), with seq numbers of their own (see seqBlockBits).
	seq := s.nextSeq.Add(int64(len(events))) - int64(len(events))
	var buf []byte
	for from := 0; from < len(events); {
		buf = buf[:0]
		to := from
		for to < len(events) && to-from < bulkRows && len(buf) < bulkBytes {
			buf = packInt(packEvent(buf, &events[to]), seq+int64(to))
			to++
		}
		var n int
		err := tx.QueryRowContext(ctx, insertRowsSQL, insertEventSQL, len(insertColumns), buf).Scan(&n)
		if err != nil {
			return fmt.Errorf("storing from event %s/%d: %w", events[from].Sensor, events[from].ID, err)
		}
		if n != to-from {
			return fmt.Errorf("stored %d of %d events", n, to-from)
		}
		from = to
	}

	// The highest id of each block the rows went to, for olderBelow.
	const upsertBlock = `INSERT INTO event_blocks (block, max_id) VALUES (?, ?)
		ON CONFLICT (block) DO UPDATE SET max_id = MAX(max_id, excluded.max_id)`
	for from := 0; from < len(events); {
		block := (seq + int64(from)) >> seqBlockBits
		top := events[from].ID
		to := from + 1
		for ; to < len(events) && (seq+int64(to))>>seqBlockBits == block; to++ {
			top = max(top, events[to].ID)
		}
		if _, err := tx.ExecContext(ctx, upsertBlock, block, top); err != nil {
			return fmt.Errorf("recording block %d: %w", block, err)
		}
		from = to
	}
	return tx.Commit()
}

// Events returns the events that match f, newest (highest id) first, at
// most f.Limit of them: DefaultLimit when f.Limit is zero or negative,
// MaxLimit when it is higher. Events of different sensors with the same id
// come in descending sensor order. Every condition of f is applied in SQL
// with the meaning of inspect.Filter.Match, except that case is folded by
// strings.ToLower where Match uses strings.EqualFold, which also pairs a
// few special letters such as the Kelvin sign with k. The zero Filter
// returns the newest DefaultLimit events. No match gives an empty, non-nil
// slice.
func (s *Store) Events(ctx context.Context, f inspect.Filter) ([]inspect.Event, error) {
	byTime, err := s.smallWindow(ctx, &f)
	if err != nil {
		return nil, fmt.Errorf("querying events: %w", err)
	}
	var out []inspect.Event
	if f.ClientIP != "" && !byTime {
		out, err = s.clientEvents(ctx, &f)
	} else {
		q, args := eventsQuery(&f, byTime, nil)
		out, err = s.queryEvents(ctx, q, args...)
	}
	if err != nil {
		return nil, fmt.Errorf("querying events: %w", err)
	}
	return out, nil
}

// clientEvents answers a filter with a client through events_client: it
// reads the blocks of the index (see seqBlockBits) from the newest down,
// one at first and up to maxWalk at a time, and keeps the newest matches.
// Rows are stored when their connection ends, not in id order, so a block
// may hold an id higher than a newer block's; the walk stops when the
// highest id stored before the blocks read (event_blocks) cannot be among
// the newest limit matches, or when there is no block left. The walk runs
// in one read transaction: an event stored again meanwhile moves to the
// newest block, and would otherwise be missed in both.
func (s *Store) clientEvents(ctx context.Context, f *inspect.Filter) ([]inspect.Event, error) {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()

	const maxWalk = 64
	n := limit(f)
	out := []inspect.Event{}
	below := int64(math.MaxInt64)
	for walk := 1; ; walk = min(2*walk, maxWalk) {
		blocks, err := blocksBelow(ctx, tx, below, walk)
		if err != nil || len(blocks) == 0 {
			return out, err
		}
		if len(blocks) > 1 && blocks[len(blocks)-1] == 0 {
			// Block 0 holds every row stored before the blocks began;
			// alone, its rows come off the index in order, and only
			// the newest are read.
			blocks = blocks[:len(blocks)-1]
		}
		below = blocks[len(blocks)-1]
		q, args := eventsQuery(f, false, blocks)
		got, err := queryEvents(ctx, tx, q, args...)
		if err != nil {
			return nil, err
		}
		out = append(out, got...)
		slices.SortFunc(out, func(a, b inspect.Event) int {
			if a.ID != b.ID {
				return cmp.Compare(b.ID, a.ID)
			}
			return strings.Compare(b.Sensor, a.Sensor)
		})
		out = out[:min(len(out), n)]
		if len(out) < n && f.After == 0 {
			continue
		}
		done, err := olderBelow(ctx, tx, f, below, out)
		if err != nil || done {
			return out, err
		}
	}
}

// blocksBelow lists up to n blocks of events_client below block below,
// highest first, one index seek each.
func blocksBelow(ctx context.Context, db querier, below int64, n int) ([]int64, error) {
	q := fmt.Sprintf(`WITH RECURSIVE b(k) AS (
		SELECT (SELECT MAX(seq >> %[1]d) FROM events WHERE (seq >> %[1]d) < ?)
		UNION ALL
		SELECT (SELECT MAX(seq >> %[1]d) FROM events WHERE (seq >> %[1]d) < b.k)
		FROM b WHERE b.k IS NOT NULL LIMIT ?)
		SELECT k FROM b WHERE k IS NOT NULL`, seqBlockBits)
	rows, err := db.QueryContext(ctx, q, below, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var k int64
		if err := rows.Scan(&k); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// olderBelow reports whether no row of a block below block below can be
// among the newest matches of f: the highest id ever stored in those
// blocks (event_blocks, an upper bound) is not above f.After, or, with
// limit(f) matches in out, sorts after the last of them. Ids at or above
// f.Before do not count.
func olderBelow(ctx context.Context, db querier, f *inspect.Filter, below int64, out []inspect.Event) (bool, error) {
	var top sql.NullInt64
	err := db.QueryRowContext(ctx, "SELECT MAX(max_id) FROM event_blocks WHERE block < ?", below).Scan(&top)
	if err != nil {
		return false, err
	}
	if !top.Valid {
		return true, nil
	}
	id := top.Int64
	if f.Before != 0 && f.Before != math.MinInt64 {
		id = min(id, f.Before-1)
	}
	switch {
	case f.After != 0 && id <= f.After:
		return true, nil
	case len(out) < limit(f):
		return false, nil
	}
	// The bound carries no sensor: an equal id may still sort first.
	return id < out[len(out)-1].ID, nil
}

// querier is what queries run on: the reader pool, or one transaction of
// it when several queries must see the same rows.
type querier interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
	QueryRowContext(context.Context, string, ...any) *sql.Row
}

// queryEvents runs a SELECT of eventColumns on the readers and scans its
// rows.
func (s *Store) queryEvents(ctx context.Context, q string, args ...any) ([]inspect.Event, error) {
	return queryEvents(ctx, s.r, q, args...)
}

func queryEvents(ctx context.Context, db querier, q string, args ...any) ([]inspect.Event, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()

	out := []inspect.Event{}
	for rows.Next() {
		var (
			e                                       inspect.Event
			t, endpoint, outcome, closed            string
			port, status, upstreamStatus, lastError int64
		)
		err := rows.Scan(&e.ID, &t, &e.DurationMS, &e.Source, &e.Sensor, &e.ClientIP,
			&e.ClientUser, &e.Method, &e.Host, &port, &e.URL, &e.SNI, &endpoint,
			&outcome, &status, &upstreamStatus, &e.BytesUp, &e.BytesDown, &closed,
			&e.TLSVersion, &e.TLSAlert, &e.TLSIssuer, &e.Detail, &e.Diagnosis, &lastError)
		if err != nil {
			return nil, err
		}
		if e.Time, err = parseTime(t); err != nil {
			return nil, fmt.Errorf("event %s/%d: %w", e.Sensor, e.ID, err)
		}
		e.Port = int(port)
		e.Endpoint = inspect.Endpoint(endpoint)
		e.Outcome = inspect.Outcome(outcome)
		e.Status = int(status)
		e.UpstreamStatus = int(upstreamStatus)
		e.Close = inspect.Close(closed)
		e.LastError = uint32(lastError)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// smallWindow reports whether f has a since/until window that holds so few
// events that reading the window through events_time and sorting it beats
// walking all events newest first. The walk cannot know that ids grow with
// time, so when the window holds fewer events than the limit (an empty
// window, say) it would read the whole table. Counting the window costs at
// most max(windowProbe, 2*limit) entries of events_time.
func (s *Store) smallWindow(ctx context.Context, f *inspect.Filter) (bool, error) {
	if f.Since.IsZero() && f.Until.IsZero() {
		return false, nil
	}
	since, until := minTime, maxTime
	if !f.Since.IsZero() {
		since = clampTime(f.Since)
	}
	if !f.Until.IsZero() {
		until = clampTime(f.Until)
	}
	probe := max(windowProbe, 2*limit(f))

	var n int
	const q = `SELECT count(*) FROM
		(SELECT 1 FROM events WHERE time >= ? AND time < ? LIMIT ?) AS w`
	err := s.r.QueryRowContext(ctx, q, formatTime(since), formatTime(until), probe).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("counting time window: %w", err)
	}
	return n < probe, nil
}

// windowProbe is the size below which a time window counts as small for
// every limit; see smallWindow.
const windowProbe = 5000

// limit is the number of events Events returns at most for f.
func limit(f *inspect.Filter) int {
	switch {
	case f.Limit <= 0:
		return DefaultLimit
	case f.Limit > MaxLimit:
		return MaxLimit
	}
	return f.Limit
}

// eventsQuery translates f into a SELECT and its arguments; the last
// argument is the limit, an int. byTime keeps the primary key from
// driving the order, so that SQLite reads the time window through
// events_time (or another index the filter allows) and sorts it. blocks,
// if any, restrict the rows to those blocks of events_client.
func eventsQuery(f *inspect.Filter, byTime bool, blocks []int64) (string, []any) {
	var (
		where []string
		args  []any
	)
	cond := func(c string, a ...any) {
		where = append(where, c)
		args = append(args, a...)
	}

	if len(blocks) > 0 {
		in := make([]any, len(blocks))
		for i, b := range blocks {
			in[i] = b
		}
		cond(fmt.Sprintf("(seq >> %d) IN (?%s)", seqBlockBits,
			strings.Repeat(", ?", len(blocks)-1)), in...)
	}
	if !f.Since.IsZero() {
		cond("time >= ?", formatTime(clampTime(f.Since)))
	}
	if !f.Until.IsZero() {
		cond("time < ?", formatTime(clampTime(f.Until)))
	}
	if f.After != 0 {
		cond("id > ?", f.After)
	}
	if f.Before != 0 {
		cond("id < ?", f.Before)
	}
	if f.ClientIP != "" {
		cond("client_ip = ?", f.ClientIP)
	}
	if f.User != "" {
		cond(lowerFunc(f.User)+"(client_user) = ?", strings.ToLower(f.User))
	}
	if f.Host != "" {
		// lower(host) for ASCII names, the usual case, uses events_host.
		cond(lowerFunc(f.Host)+"(host) = ?", strings.ToLower(f.Host))
	}
	if f.Endpoint != "" {
		cond("endpoint = ?", string(f.Endpoint))
	}
	if f.Outcome != "" {
		cond("outcome = ?", string(f.Outcome))
		if f.Outcome != inspect.OK {
			// Implied by the condition above, but SQLite uses the partial
			// index events_outcome only when the query states its WHERE.
			cond("outcome <> 'ok'")
		}
	}
	if f.Sensor != "" {
		cond("sensor = ?", f.Sensor)
	}
	if f.Text != "" {
		lower := lowerFunc(f.Text)
		pattern := "%" + escapeLike(strings.ToLower(f.Text)) + "%"
		cond(fmt.Sprintf(`(%[1]s(host) LIKE ? ESCAPE '\' OR %[1]s(url) LIKE ? ESCAPE '\'`+
			` OR %[1]s(detail) LIKE ? ESCAPE '\')`, lower), pattern, pattern, pattern)
	}

	args = append(args, limit(f))

	var b strings.Builder
	b.WriteString(selectEventSQL)
	if len(blocks) > 0 {
		// Another filter index (events_host, events_outcome) would give
		// id order but read the whole table's matches for every walk of
		// clientEvents. (SQLite's syntax; another database would take
		// the hint from the block condition itself.)
		b.WriteString(" INDEXED BY events_client")
	}
	if len(where) > 0 {
		b.WriteString(" WHERE ")
		b.WriteString(strings.Join(where, " AND "))
	}
	if byTime {
		// An expression, not a column: no index can supply the order.
		b.WriteString(" ORDER BY +id DESC, sensor DESC LIMIT ?")
	} else {
		b.WriteString(" ORDER BY id DESC, sensor DESC LIMIT ?")
	}
	return b.String(), args
}

// lowerFunc names the SQL function that lower-cases a column for comparing
// it with the lower-cased value v: SQLite's lower() is much faster and can
// use an index, but it folds ASCII letters only.
func lowerFunc(v string) string {
	for i := 0; i < len(v); i++ {
		if v[i] >= 0x80 {
			return unicodeLower
		}
	}
	return "lower"
}

// escapeLike makes every character of s literal in a LIKE pattern with
// ESCAPE '\'.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// clampTime brings a filter bound into the range the time column holds, so
// that its text form still compares correctly.
func clampTime(t time.Time) time.Time {
	switch {
	case t.Before(minTime):
		return minTime
	case t.After(maxTime):
		return maxTime
	}
	return t
}

// MaxID returns the highest event id stored for sensor, or of every sensor
// when sensor is empty, so that a restarted sensor continues after it; 0
// when there are no such events.
func (s *Store) MaxID(ctx context.Context, sensor string) (int64, error) {
	// Walks the primary key down from the highest id to the first event of
	// sensor: immediate for a sensor that is writing, a scan of the key for
	// one that has not written for long.
	var id int64
	q, args := "SELECT id FROM events WHERE sensor = ? ORDER BY id DESC LIMIT 1", []any{sensor}
	if sensor == "" {
		q, args = "SELECT id FROM events ORDER BY id DESC LIMIT 1", nil
	}
	err := s.r.QueryRowContext(ctx, q, args...).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading max id of sensor %q: %w", sensor, err)
	}
	return id, nil
}

// Prune deletes the events that started before before and returns how many
// it deleted. It works in transactions of pruneBatch rows so that
// Append never waits long behind it, and stops early, with what it deleted
// so far and ctx's error, when ctx ends. A zero before deletes nothing.
func (s *Store) Prune(ctx context.Context, before time.Time) (int64, error) {
	if before.IsZero() || before.Before(minTime) {
		return 0, nil
	}
	cutoff := formatTime(clampTime(before))

	// The row-value IN drives lookups through the primary key; rowid
	// would be shorter but exists only in SQLite.
	const q = `DELETE FROM events WHERE (id, sensor) IN
		(SELECT id, sensor FROM events WHERE time < ? ORDER BY time LIMIT ?)`
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("pruning events: %w", err)
		}
		res, err := s.w.ExecContext(ctx, q, cutoff, pruneBatch)
		if err != nil {
			return total, fmt.Errorf("pruning events: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("pruning events: %w", err)
		}
		total += n
		if n < pruneBatch {
			break
		}
	}
	// The bounds of blocks that no longer hold a row.
	q2 := fmt.Sprintf(`DELETE FROM event_blocks
		WHERE block < (SELECT MIN(seq >> %d) FROM events)`, seqBlockBits)
	if _, err := s.w.ExecContext(ctx, q2); err != nil {
		return total, fmt.Errorf("pruning events: %w", err)
	}
	return total, nil
}
