package ui

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

func TestParseFilter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		query string
		want  inspect.Filter
	}{
		{"empty", "", inspect.Filter{Limit: defaultLimit}},
		{"empty values", "since=&client=&limit=", inspect.Filter{Limit: defaultLimit}},
		{
			"rfc3339 since with zone",
			"since=2026-03-01T13:00:00%2B02:00",
			inspect.Filter{Since: now.Add(-time.Hour), Limit: defaultLimit},
		},
		{
			"rfc3339 with fraction",
			"until=2026-03-01T11:59:59.5Z",
			inspect.Filter{Until: now.Add(-500 * time.Millisecond), Limit: defaultLimit},
		},
		{
			"durations count back from now",
			"since=15m&until=90s",
			inspect.Filter{
				Since: now.Add(-15 * time.Minute), Until: now.Add(-90 * time.Second),
				Limit: defaultLimit,
			},
		},
		{"ids", "after=42&before=50", inspect.Filter{After: 42, Before: 50, Limit: defaultLimit}},
		{
			"text fields",
			"client=10.0.0.5&user=CORP%5Csvc&host=tetra-defs.amp.cisco.com&q=reset",
			inspect.Filter{
				ClientIP: "10.0.0.5", User: `CORP\svc`, Host: "tetra-defs.amp.cisco.com",
				Text: "reset", Limit: defaultLimit,
			},
		},
		{
			"classes",
			"endpoint=revocation&outcome=tls_aborted",
			inspect.Filter{
				Endpoint: inspect.EndpointRevocation, Outcome: inspect.TLSAborted,
				Limit: defaultLimit,
			},
		},
		{"sensor", "sensor=branch-1", inspect.Filter{Sensor: "branch-1", Limit: defaultLimit}},
		{"limit", "limit=5", inspect.Filter{Limit: 5}},
		{"limit max", "limit=10000", inspect.Filter{Limit: maxLimit}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseFilter(q, now)
			if err != nil {
				t.Fatalf("parseFilter(%q): %v", tt.query, err)
			}
			if !got.Since.Equal(tt.want.Since) || !got.Until.Equal(tt.want.Until) {
				t.Errorf("since, until = %v, %v; want %v, %v",
					got.Since, got.Until, tt.want.Since, tt.want.Until)
			}
			got.Since, got.Until = tt.want.Since, tt.want.Until
			if got != tt.want {
				t.Errorf("parseFilter(%q) = %+v; want %+v", tt.query, got, tt.want)
			}
		})
	}
}

// badQueries are parameters the API refuses, with the parameter the answer
// must name.
var badQueries = []struct {
	query string
	param string
}{
	{"since=yesterday", "since"},
	{"since=-15m", "since"},
	{"since=0s", "since"},
	{"since=2026-13-01T00:00:00Z", "since"},
	{"until=soon", "until"},
	{"since=2026-03-01T12:00:00Z&until=2026-03-01T11:00:00Z", "until"},
	{"after=x", "after"},
	{"after=-1", "after"},
	{"before=1.5", "before"},
	{"endpoint=web", "endpoint"},
	{"outcome=failed", "outcome"},
	{"outcome=open", "outcome"},
	{"limit=0", "limit"},
	{"limit=10001", "limit"},
	{"limit=ten", "limit"},
	{"limit=-3", "limit"},
}

func TestParseFilterRejects(t *testing.T) {
	for _, tt := range badQueries {
		t.Run(tt.query, func(t *testing.T) {
			q, err := url.ParseQuery(tt.query)
			if err != nil {
				t.Fatal(err)
			}
			_, err = parseFilter(q, time.Now())
			var pe *paramError
			if !errors.As(err, &pe) {
				t.Fatalf("parseFilter(%q) error = %v; want a paramError", tt.query, err)
			}
			if pe.param != tt.param {
				t.Errorf("parseFilter(%q) blames %q; want %q", tt.query, pe.param, tt.param)
			}
		})
	}
}

func TestEventsBadParams(t *testing.T) {
	ts := start(t, New(Config{}, Deps{Events: storeOf(3)}))
	for _, tt := range badQueries {
		t.Run(tt.query, func(t *testing.T) {
			status, body := get(t, ts, "/api/v1/events?"+tt.query, nil)
			if status != http.StatusBadRequest {
				t.Fatalf("status %d; want 400 (%s)", status, body)
			}
			var e errorBody
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("decoding %s: %v", body, err)
			}
			if e.Param != tt.param || !strings.HasPrefix(e.Error, tt.param+": ") {
				t.Errorf("answer %s; want one naming %q", body, tt.param)
			}
		})
	}
}

func TestStreamQuery(t *testing.T) {
	tests := []struct {
		query      string
		replay     bool
		limit      int
		after      int64
		liveClient string
	}{
		{"", false, 0, 0, ""},
		{"backfill=50", true, 50, 0, ""},
		{"after=7", true, maxLimit, 7, ""},
		{"after=7&backfill=20&client=10.0.0.9", true, 20, 7, "10.0.0.9"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			q, _ := url.ParseQuery(tt.query)
			sq, err := parseStreamQuery(q, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			f, ok := sq.replayFilter()
			if ok != tt.replay || (ok && (f.Limit != tt.limit || f.After != tt.after)) {
				t.Errorf("replay = %v, limit %d, after %d; want %v, %d, %d",
					ok, f.Limit, f.After, tt.replay, tt.limit, tt.after)
			}
			live := sq.liveFilter()
			if live.After != 0 || live.Before != 0 || live.Limit != 0 ||
				live.ClientIP != tt.liveClient {
				t.Errorf("live filter %+v keeps id bounds or loses the client", live)
			}
		})
	}

	for _, bad := range []string{"backfill=x", "backfill=-1", "backfill=10001"} {
		q, _ := url.ParseQuery(bad)
		var pe *paramError
		if _, err := parseStreamQuery(q, time.Now()); !errors.As(err, &pe) ||
			pe.param != "backfill" {
			t.Errorf("parseStreamQuery(%q) error = %v; want one naming backfill", bad, err)
		}
	}
}
