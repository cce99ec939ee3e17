package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tetrascope/tetrascope/inspect"
)

// wait bounds every blocking step of the tests; nothing here measures speed.
const wait = 10 * time.Second

// eventsFunc is a function-type fake of the store.
type eventsFunc func(ctx context.Context, f inspect.Filter) ([]inspect.Event, error)

func (fn eventsFunc) Events(ctx context.Context, f inspect.Filter) ([]inspect.Event, error) {
	return fn(ctx, f)
}

// fakeStore answers queries from a fixed list of events the way the store
// does (matching, newest first, limited), and remembers the filters it got.
type fakeStore struct {
	mu      sync.Mutex
	events  []inspect.Event // ascending ids
	filters []inspect.Filter
}

func (fs *fakeStore) Events(_ context.Context, f inspect.Filter) ([]inspect.Event, error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.filters = append(fs.filters, f)
	var out []inspect.Event
	for i := len(fs.events) - 1; i >= 0 && len(out) < f.Limit; i-- {
		if f.Match(&fs.events[i]) {
			out = append(out, fs.events[i])
		}
	}
	return out, nil
}

func (fs *fakeStore) lastFilter(t *testing.T) inspect.Filter {
	t.Helper()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if len(fs.filters) == 0 {
		t.Fatal("the store was not queried")
	}
	return fs.filters[len(fs.filters)-1]
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// ended is a finished event with id, client and outcome; the rest is a
// typical tetra download.
func ended(id int64, client string, o inspect.Outcome) inspect.Event {
	ev := opened(id, client)
	ev.Outcome = o
	ev.Status = 200
	ev.DurationMS = 1234.5
	ev.BytesUp, ev.BytesDown = 2048, 5<<20
	return ev
}

// opened is an event as it looks when its tunnel opens.
func opened(id int64, client string) inspect.Event {
	return inspect.Event{
		ID:       id,
		Time:     t0.Add(time.Duration(id) * time.Second),
		Source:   inspect.SourceProxy,
		Sensor:   "s1",
		ClientIP: client,
		Method:   "CONNECT",
		Host:     "tetra-defs.amp.cisco.com",
		Port:     443,
		Endpoint: inspect.EndpointTetra,
	}
}

// storeOf returns a fake store holding events with ids 1..n from client
// 10.0.0.1, all ok.
func storeOf(n int) *fakeStore {
	fs := &fakeStore{}
	for i := 1; i <= n; i++ {
		fs.events = append(fs.events, ended(int64(i), "10.0.0.1", inspect.OK))
	}
	return fs
}

// logBuffer is a logger that keeps what it writes, for tests that look at
// the logs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (lb *logBuffer) Write(p []byte) (int, error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.buf.Write(p)
}

func (lb *logBuffer) String() string {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.buf.String()
}

func (lb *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// start serves s on a loopback httptest server.
func start(t *testing.T, s *Server) *httptest.Server {
	t.Helper()
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	t.Cleanup(func() { s.closeViewers() })
	return ts
}

// get fetches path and returns the status and body.
func get(t *testing.T, ts *httptest.Server, path string, hdr http.Header) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", ts.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatalf("GET %s: reading body: %v", path, err)
	}
	return resp.StatusCode, buf.Bytes()
}

// wsURL is the websocket address of path on ts.
func wsURL(ts *httptest.Server, path string) string {
	return "ws" + strings.TrimPrefix(ts.URL, "http") + path
}

// dial opens a stream and fails the test when it cannot.
func dial(t *testing.T, ts *httptest.Server, path string) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(wsURL(ts, path), nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dialing %s: %v (status %d)", path, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// received is one decoded stream message.
type received struct {
	Type  string         `json:"type"`
	Event *inspect.Event `json:"event"`
	Stats map[string]any `json:"stats"`
}

// read returns the next stream message, within the bounded wait.
func read(t *testing.T, c *websocket.Conn) received {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	_, data, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("reading stream: %v", err)
	}
	var m received
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("decoding %s: %v", data, err)
	}
	return m
}

// catchUp reads the messages a stream sends before its first stats message
// and returns them as "type:id" strings.
func catchUp(t *testing.T, c *websocket.Conn) []string {
	t.Helper()
	var got []string
	for {
		m := read(t, c)
		if m.Type == KindStats {
			return got
		}
		got = append(got, describe(m))
	}
}

// nextEvent reads past stats messages to the next open or event message.
func nextEvent(t *testing.T, c *websocket.Conn) received {
	t.Helper()
	for {
		if m := read(t, c); m.Type != KindStats {
			return m
		}
	}
}

func describe(m received) string {
	if m.Event == nil {
		return m.Type + ":-"
	}
	return m.Type + ":" + strconv.FormatInt(m.Event.ID, 10)
}
