package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// scanPage is how many events one query of Scan reads. Each page is its
// own short read, so a long scan never holds one snapshot of the database
// open, and the WAL of a sensor writing meanwhile can still be
// checkpointed.
const scanPage = 5000

// Scan calls fn with every event whose time lies in [f.Since, f.Until) and,
// when f.Sensor is set, of that sensor, oldest first: in the order of
// time, then sensor, then id. A zero Since or Until leaves that end open.
// It reads in pages by keyset, so memory stays bounded whatever the number
// of events, and it works while another process appends: an event stored
// during the scan is seen when it sorts after the page being read.
//
// Scan stops at the first error fn returns and returns it unwrapped. Scan
// supports no other condition of Filter; it fails before reading when one
// is set.
func (s *Store) Scan(ctx context.Context, f inspect.Filter, fn func(inspect.Event) error) error {
	if err := scanOnly(&f); err != nil {
		return err
	}

	since, until := minTime, maxTime
	if !f.Since.IsZero() {
		since = clampTime(f.Since)
	}
	if !f.Until.IsZero() {
		until = clampTime(f.Until)
	}

	// The first page starts at since; each later one after the last event
	// of the page before, by (time, sensor, id).
	var (
		first  = true
		lastT  = formatTime(since)
		lastS  string
		lastID int64
	)
	for {
		args := []any{lastT, formatTime(until)}
		if f.Sensor != "" {
			args = append(args, f.Sensor)
		}
		if !first {
			args = append(args, lastT, lastT, lastS, lastS, lastID)
		}
		args = append(args, scanPage)
		q := scanQuery(f.Sensor != "", !first)

		page, err := s.queryEvents(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("scanning events: %w", err)
		}
		for _, e := range page {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(page) < scanPage {
			return nil
		}
		last := page[len(page)-1]
		t := formatTime(last.Time)
		if !first && t == lastT && last.Sensor == lastS && last.ID == lastID {
			// Only a row whose time text is not in timeLayout (written by
			// another tool) can bring the same key back.
			return fmt.Errorf("scanning events: event %s/%d: time not in the store's format",
				last.Sensor, last.ID)
		}
		lastT, lastS, lastID, first = t, last.Sensor, last.ID, false
	}
}

// scanOnly checks that f sets no condition Scan does not apply.
func scanOnly(f *inspect.Filter) error {
	rest := *f
	rest.Since, rest.Until, rest.Sensor = time.Time{}, time.Time{}, ""
	if rest != (inspect.Filter{}) {
		return errors.New("scanning events: only since, until and sensor are supported")
	}
	return nil
}

// scanQuery is the query of one page of Scan. Its arguments are since,
// until, the sensor when bySensor, the last key (time twice, sensor twice,
// id) when after, then the limit. The key comparison is written out rather
// than as a row value, because SQLite finds the range in events_time only
// from the plain "time >= ?".
func scanQuery(bySensor, after bool) string {
	q := selectEventSQL + " WHERE time >= ? AND time < ?"
	if bySensor {
		q += " AND sensor = ?"
	}
	if after {
		q += " AND (time > ? OR (time = ? AND (sensor > ? OR (sensor = ? AND id > ?))))"
	}
	return q + " ORDER BY time, sensor, id LIMIT ?"
}
