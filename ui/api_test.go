package ui

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tetrascope/tetrascope/inspect"
)

func TestEvents(t *testing.T) {
	fs := storeOf(5)
	ts := start(t, New(Config{}, Deps{Events: fs}))

	status, body := get(t, ts, "/api/v1/events?limit=3&endpoint=tetra", nil)
	if status != http.StatusOK {
		t.Fatalf("status %d: %s", status, body)
	}
	var got struct {
		Events []inspect.Event `json:"events"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	var ids []int64
	for _, ev := range got.Events {
		ids = append(ids, ev.ID)
	}
	if len(ids) != 3 || ids[0] != 5 || ids[1] != 4 || ids[2] != 3 {
		t.Errorf("ids %v; want [5 4 3], newest first", ids)
	}
	if f := fs.lastFilter(t); f.Limit != 3 || f.Endpoint != inspect.EndpointTetra {
		t.Errorf("store got %+v; want limit 3, endpoint tetra", f)
	}
	if !strings.Contains(string(body), `"time":"2026-03-01T12:00:05Z"`) {
		t.Errorf("body %s lacks the UTC RFC 3339 time", body)
	}

	// Relative times reach the store as absolute ones.
	before := time.Now()
	get(t, ts, "/api/v1/events?since=15m", nil)
	f := fs.lastFilter(t)
	if f.Since.Before(before.Add(-15*time.Minute-time.Second)) ||
		f.Since.After(time.Now().Add(-15*time.Minute)) {
		t.Errorf("since=15m gave %v; want about %v", f.Since, before.Add(-15*time.Minute))
	}
	if f.Limit != defaultLimit {
		t.Errorf("default limit %d; want %d", f.Limit, defaultLimit)
	}
}

func TestEventsEmptyIsList(t *testing.T) {
	ts := start(t, New(Config{}, Deps{Events: &fakeStore{}}))
	status, body := get(t, ts, "/api/v1/events", nil)
	if status != http.StatusOK || strings.TrimSpace(string(body)) != `{"events":[]}` {
		t.Errorf("answer %d %s; want 200 {\"events\":[]}", status, body)
	}
}

func TestEventsStoreTrouble(t *testing.T) {
	t.Run("no store", func(t *testing.T) {
		ts := start(t, New(Config{}, Deps{}))
		if status, body := get(t, ts, "/api/v1/events", nil); status != 503 {
			t.Errorf("status %d (%s); want 503", status, body)
		}
	})
	t.Run("store fails", func(t *testing.T) {
		var logs logBuffer
		failing := eventsFunc(func(context.Context, inspect.Filter) ([]inspect.Event, error) {
			return nil, errors.New("database is locked: /var/lib/tetrascope.db")
		})
		ts := start(t, New(Config{}, Deps{Events: failing, Logger: logs.logger()}))
		status, body := get(t, ts, "/api/v1/events", nil)
		if status != http.StatusInternalServerError {
			t.Errorf("status %d; want 500", status)
		}
		if strings.Contains(string(body), "/var/lib") {
			t.Errorf("answer %s shows the cause; it belongs in the log", body)
		}
		if !strings.Contains(logs.String(), "database is locked") {
			t.Errorf("log %q lacks the cause", logs.String())
		}
	})
}

func TestActive(t *testing.T) {
	t.Run("none", func(t *testing.T) {
		ts := start(t, New(Config{}, Deps{}))
		status, body := get(t, ts, "/api/v1/active", nil)
		if status != http.StatusOK || strings.TrimSpace(string(body)) != `{"active":[]}` {
			t.Errorf("answer %d %s; want 200 {\"active\":[]}", status, body)
		}
	})
	t.Run("open tunnels", func(t *testing.T) {
		tunnel := opened(7, "10.0.0.3")
		tunnel.Time = tunnel.Time.In(time.FixedZone("CET", 3600))
		tunnel.BytesDown = 1 << 20
		active := func() []inspect.Event { return []inspect.Event{tunnel} }
		ts := start(t, New(Config{}, Deps{Active: active}))
		status, body := get(t, ts, "/api/v1/active", nil)
		var got struct {
			Active []inspect.Event `json:"active"`
		}
		if err := json.Unmarshal(body, &got); err != nil || status != http.StatusOK {
			t.Fatalf("answer %d %s: %v", status, body, err)
		}
		if len(got.Active) != 1 || got.Active[0].ID != 7 || got.Active[0].BytesDown != 1<<20 ||
			got.Active[0].Outcome != "" {
			t.Errorf("active %+v; want tunnel 7 with its bytes and no outcome", got.Active)
		}
		if !strings.Contains(string(body), `"time":"2026-03-01T12:00:07Z"`) {
			t.Errorf("body %s: time not in UTC", body)
		}
	})
}

func TestHealthz(t *testing.T) {
	var reasons []string
	health := func() []string { return reasons }
	ts := start(t, New(Config{Token: "tok"}, Deps{Health: health}))

	if status, body := get(t, ts, "/healthz", nil); status != 200 || string(body) != "ok" {
		t.Errorf("healthy: %d %q; want 200 \"ok\"", status, body)
	}

	reasons = []string{"store: disk full", "pipeline: queue full"}
	status, body := get(t, ts, "/healthz", nil)
	if status != http.StatusServiceUnavailable {
		t.Errorf("degraded: status %d; want 503", status)
	}
	for _, r := range reasons {
		if !strings.Contains(string(body), r) {
			t.Errorf("degraded body %q lacks %q", body, r)
		}
	}
}

func TestToken(t *testing.T) {
	const token = "s3cr3t-t0ken"
	var logs logBuffer
	s := New(Config{Token: token}, Deps{Events: storeOf(2), Logger: logs.logger()})
	ts := start(t, s)

	bearer := http.Header{"Authorization": {"Bearer " + token}}
	tests := []struct {
		name   string
		path   string
		header http.Header
		want   int
	}{
		{"header", "/api/v1/events", bearer, 200},
		{"header scheme in lower case", "/api/v1/active",
			http.Header{"Authorization": {"bearer " + token}}, 200},
		{"query", "/api/v1/events?token=" + token, nil, 200},
		{"page by query", "/?token=" + token, nil, 200},
		{"asset by query", "/static/app.js?token=" + token, nil, 200},
		{"missing", "/api/v1/events", nil, 401},
		{"missing on page", "/", nil, 401},
		{"missing on asset", "/static/app.js", nil, 401},
		{"wrong", "/api/v1/events?token=s3cr3t", nil, 401},
		{"wrong header", "/api/v1/active",
			http.Header{"Authorization": {"Bearer " + token + "x"}}, 401},
		{"basic is not bearer", "/api/v1/active",
			http.Header{"Authorization": {"Basic " + token}}, 401},
		{"healthz is open", "/healthz", nil, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := get(t, ts, tt.path, tt.header)
			if status != tt.want {
				t.Errorf("GET %s: status %d; want %d (%s)", tt.path, status, tt.want, body)
			}
		})
	}

	t.Run("stream", func(t *testing.T) {
		c := dial(t, ts, "/api/v1/stream?backfill=1&token="+token)
		if got := catchUp(t, c); len(got) != 1 {
			t.Errorf("catch-up %v; want one event", got)
		}
		_, resp, err := websocket.DefaultDialer.Dial(wsURL(ts, "/api/v1/stream"), nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("stream without token: err %v, resp %v; want 401", err, resp)
		}
		c2, _, err := websocket.DefaultDialer.Dial(wsURL(ts, "/api/v1/stream"), bearer)
		if err != nil {
			t.Fatalf("stream with bearer header: %v", err)
		}
		c2.Close()
	})

	if strings.Contains(logs.String(), token) {
		t.Errorf("the token appears in the log:\n%s", logs.String())
	}
}

func TestUnregisteredPaths(t *testing.T) {
	ts := start(t, New(Config{}, Deps{}))
	for _, p := range []string{
		"/api/v1/report", "/metrics", "/static/", "/static/index.html",
		"/static/../server.go", "/nope",
	} {
		if status, _ := get(t, ts, p, nil); status != http.StatusNotFound {
			t.Errorf("GET %s: status %d; want 404", p, status)
		}
	}
	resp, err := ts.Client().Post(ts.URL+"/api/v1/events", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /api/v1/events: status %d; want 405", resp.StatusCode)
	}
}

// A write that a browser says comes from another site is refused; the
// same page's own upload and tools without an Origin pass.
func TestCrossSiteWrites(t *testing.T) {
	posted := 0
	s := New(Config{}, Deps{Events: storeOf(1),
		LastErrors: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			posted++
			w.WriteHeader(http.StatusOK)
		})})
	ts := start(t, s)
	host := strings.TrimPrefix(ts.URL, "http://")
	cases := []struct {
		name   string
		header http.Header
		want   int
	}{
		{"no origin (curl)", nil, 200},
		{"same origin (the page)", http.Header{"Origin": {"http://" + host}}, 200},
		{"another site", http.Header{"Origin": {"http://evil.example"}}, 403},
		{"opaque origin", http.Header{"Origin": {"null"}}, 403},
		{"cross-site fetch", http.Header{"Sec-Fetch-Site": {"cross-site"}}, 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", ts.URL+"/api/v1/lasterrors",
				strings.NewReader("ip,lasterror\n"))
			req.Header.Set("Content-Type", "text/plain")
			for k, v := range tc.header {
				req.Header[k] = v
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	if posted != 2 {
		t.Errorf("the upload ran %d times, want 2", posted)
	}
}
