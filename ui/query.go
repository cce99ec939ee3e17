package ui

import (
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// Limits of the event queries.
const (
	defaultLimit = 100
	maxLimit     = 10000
)

// paramError is a query parameter the API cannot use; it becomes a 400
// answer naming the parameter.
type paramError struct {
	param   string
	problem string
}

func (e *paramError) Error() string { return e.param + ": " + e.problem }

// parseFilter reads the filter parameters shared by /api/v1/events and the
// stream. Relative times (since=15m) count back from now. An empty value is
// the same as an absent parameter. The returned filter's Limit is always
// set: the limit parameter, or defaultLimit.
func parseFilter(q url.Values, now time.Time) (inspect.Filter, error) {
	var f inspect.Filter
	var err error

	if f.Since, err = parseTime(q, "since", now); err != nil {
		return f, err
	}
	if f.Until, err = parseTime(q, "until", now); err != nil {
		return f, err
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Until.After(f.Since) {
		return f, &paramError{"until", "must be later than since"}
	}
	if f.After, err = parseID(q, "after"); err != nil {
		return f, err
	}
	if f.Before, err = parseID(q, "before"); err != nil {
		return f, err
	}

	f.ClientIP = strings.TrimSpace(q.Get("client"))
	f.User = strings.TrimSpace(q.Get("user"))
	f.Host = strings.TrimSpace(q.Get("host"))
	f.Text = q.Get("q")
	f.Sensor = strings.TrimSpace(q.Get("sensor"))

	if v := q.Get("endpoint"); v != "" {
		f.Endpoint = inspect.Endpoint(v)
		if !f.Endpoint.Valid() {
			return f, &paramError{"endpoint", "want one of " + joinEndpoints()}
		}
	}
	if v := q.Get("outcome"); v != "" {
		f.Outcome = inspect.Outcome(v)
		if !f.Outcome.Valid() {
			return f, &paramError{"outcome", "want one of " + joinOutcomes()}
		}
	}

	n, err := parseCount(q, "limit", 1)
	if err != nil {
		return f, err
	}
	f.Limit = defaultLimit
	if n > 0 {
		f.Limit = n
	}
	return f, nil
}

// parseTime reads an RFC 3339 time or a positive Go duration meaning that
// long before now. Absent: the zero time.
func parseTime(q url.Values, name string, now time.Time) (time.Time, error) {
	v := strings.TrimSpace(q.Get(name))
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return time.Time{}, &paramError{name,
			"want an RFC 3339 time (2006-01-02T15:04:05Z) or a duration such as 15m"}
	}
	if d <= 0 {
		return time.Time{}, &paramError{name,
			"a duration must be positive: it counts back from now"}
	}
	return now.Add(-d).UTC(), nil
}

// parseID reads an event id. Absent: 0, no bound.
func parseID(q url.Values, name string) (int64, error) {
	v := strings.TrimSpace(q.Get(name))
	if v == "" {
		return 0, nil
	}
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id < 0 {
		return 0, &paramError{name, "want an event id (a non-negative integer)"}
	}
	return id, nil
}

// parseCount reads a count between lo and maxLimit. Absent: 0.
func parseCount(q url.Values, name string, lo int) (int, error) {
	v := strings.TrimSpace(q.Get(name))
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > maxLimit {
		return 0, &paramError{name,
			"want an integer from " + strconv.Itoa(lo) + " to " + strconv.Itoa(maxLimit)}
	}
	return n, nil
}

// streamQuery is what /api/v1/stream asks for.
type streamQuery struct {
	filter   inspect.Filter // as for /api/v1/events
	backfill int            // stored events to send first; 0: none
}

// parseStreamQuery reads the stream's parameters: the filter, plus
// backfill=N.
func parseStreamQuery(q url.Values, now time.Time) (streamQuery, error) {
	f, err := parseFilter(q, now)
	if err != nil {
		return streamQuery{}, err
	}
	n, err := parseCount(q, "backfill", 0)
	if err != nil {
		return streamQuery{}, err
	}
	return streamQuery{filter: f, backfill: n}, nil
}

// replayFilter is the store query that catches a new viewer up: the n newest
// matching events, or, with after= and no backfill, every matching event
// after that id up to maxLimit. ok is false when nothing is to be replayed.
func (sq streamQuery) replayFilter() (f inspect.Filter, ok bool) {
	f = sq.filter
	switch {
	case sq.backfill > 0:
		f.Limit = sq.backfill
	case f.After > 0:
		f.Limit = maxLimit
	default:
		return f, false
	}
	return f, true
}

// liveFilter is the filter of live messages: the id bounds only shape the
// replay, since a tunnel that opened before after= may end after it.
func (sq streamQuery) liveFilter() inspect.Filter {
	f := sq.filter
	f.After, f.Before, f.Limit = 0, 0, 0
	return f
}

func joinOutcomes() string {
	names := make([]string, len(inspect.Outcomes))
	for i, o := range inspect.Outcomes {
		names[i] = string(o)
	}
	return strings.Join(names, ", ")
}

func joinEndpoints() string {
	names := make([]string, len(inspect.Endpoints))
	for i, e := range inspect.Endpoints {
		names[i] = string(e)
	}
	return strings.Join(names, ", ")
}
