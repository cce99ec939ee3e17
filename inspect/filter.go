package inspect

import (
	"strings"
	"time"
)

// Filter selects events; it is the query of /api/v1/events and of the
// stream, applied in SQL by the store and in memory by the stream. The zero
// Filter matches every event.
type Filter struct {
	Since, Until time.Time // zero: unbounded
	After        int64     // only ids greater than this; 0: no bound
	Before       int64     // only ids less than this; 0: no bound
	ClientIP     string
	User         string
	Host         string
	Endpoint     Endpoint
	Outcome      Outcome
	Text         string // case-insensitive substring of host, url or detail
	Sensor       string
	Limit        int // at most this many, newest first; 0: the caller's default
}

// Match reports whether e passes every condition of f except Limit.
func (f *Filter) Match(e *Event) bool {
	switch {
	case !f.Since.IsZero() && e.Time.Before(f.Since),
		!f.Until.IsZero() && !e.Time.Before(f.Until),
		f.After != 0 && e.ID <= f.After,
		f.Before != 0 && e.ID >= f.Before,
		f.ClientIP != "" && e.ClientIP != f.ClientIP,
		f.User != "" && !strings.EqualFold(e.ClientUser, f.User),
		f.Host != "" && !strings.EqualFold(e.Host, f.Host),
		f.Endpoint != "" && e.Endpoint != f.Endpoint,
		f.Outcome != "" && e.Outcome != f.Outcome,
		f.Sensor != "" && e.Sensor != f.Sensor:
		return false
	}
	if f.Text == "" {
		return true
	}
	t := strings.ToLower(f.Text)
	return strings.Contains(strings.ToLower(e.Host), t) ||
		strings.Contains(strings.ToLower(e.URL), t) ||
		strings.Contains(strings.ToLower(e.Detail), t)
}
