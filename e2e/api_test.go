package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tetrascope/tetrascope/inspect"
)

// eventWait bounds the wait for an event to show in the API or the stream:
// events are written asynchronously, after the connection closes.
const eventWait = 10 * time.Second

// apiClient reads the UI's HTTP API.
type apiClient struct {
	base string // http://host:port
	hc   *http.Client
}

func newAPIClient(uiAddr string) *apiClient {
	return &apiClient{
		base: "http://" + uiAddr,
		hc:   &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second},
	}
}

// apiEvent is one event of /api/v1/events, decoded and raw.
type apiEvent struct {
	inspect.Event
	Raw json.RawMessage
}

// Events returns GET /api/v1/events?q, newest first as the API sends them.
func (a *apiClient) Events(ctx context.Context, q url.Values) ([]apiEvent, error) {
	u := a.base + "/api/v1/events"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("GET %s: reading: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %.300s", u, resp.Status, b)
	}
	var page struct {
		Events *[]json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(b, &page); err != nil {
		return nil, fmt.Errorf("GET %s: decoding: %w (body %.300s)", u, err, b)
	}
	if page.Events == nil {
		return nil, fmt.Errorf("GET %s: no \"events\" array in %.300s", u, b)
	}
	out := make([]apiEvent, 0, len(*page.Events))
	for _, raw := range *page.Events {
		var e apiEvent
		if err := json.Unmarshal(raw, &e.Event); err != nil {
			return nil, fmt.Errorf("GET %s: decoding event %s: %w", u, raw, err)
		}
		e.Raw = raw
		out = append(out, e)
	}
	return out, nil
}

// WaitEvent polls Events(q) until an event satisfies match, for up to
// timeout. On a timeout the error lists what the API returned last.
func (a *apiClient) WaitEvent(q url.Values, match func(*inspect.Event) bool,
	timeout time.Duration) (apiEvent, error) {
	var (
		last    []apiEvent
		lastErr error
		found   apiEvent
	)
	ok := waitFor(timeout, 100*time.Millisecond, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		last, lastErr = a.Events(ctx, q)
		for _, e := range last {
			if match(&e.Event) {
				found = e
				return true
			}
		}
		return false
	})
	if ok {
		return found, nil
	}
	if lastErr != nil {
		return apiEvent{}, fmt.Errorf("no matching event within %v; last error: %v", timeout, lastErr)
	}
	var lines []string
	for _, e := range last {
		lines = append(lines, string(e.Raw))
	}
	return apiEvent{}, fmt.Errorf("no matching event within %v for ?%s; the API returned %d:\n%s",
		timeout, q.Encode(), len(last), strings.Join(lines, "\n"))
}

// eventFields are the JSON names of inspect.Event: every event the API or
// the stream sends as finished must carry each of them.
var eventFields = func() []string {
	var names []string
	rt := reflect.TypeFor[inspect.Event]()
	for i := range rt.NumField() {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}()

// rfc3339UTC is the form of `time`: RFC 3339, optional fraction, UTC as Z.
var rfc3339UTC = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$`)

// checkEventJSON returns what is wrong with one finished event's JSON
// against DESIGN.md: a missing field, a time that is not RFC 3339 UTC, an
// unknown outcome or endpoint.
func checkEventJSON(raw json.RawMessage) []string {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return []string{"not a JSON object: " + err.Error()}
	}
	var problems []string
	for _, f := range eventFields {
		if _, ok := m[f]; !ok {
			problems = append(problems, "missing field "+f)
		}
	}
	var ts string
	if err := json.Unmarshal(m["time"], &ts); err != nil {
		problems = append(problems, fmt.Sprintf("time %s is not a string", m["time"]))
	} else if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || !rfc3339UTC.MatchString(ts) {
		problems = append(problems, fmt.Sprintf("time %q is not RFC 3339 in UTC", ts))
	}
	var e inspect.Event
	if err := json.Unmarshal(raw, &e); err != nil {
		return append(problems, "does not decode as inspect.Event: "+err.Error())
	}
	if !e.Outcome.Valid() {
		problems = append(problems, fmt.Sprintf("outcome %q is not one of DESIGN.md's", e.Outcome))
	}
	if !e.Endpoint.Valid() {
		problems = append(problems, fmt.Sprintf("endpoint %q is not one of DESIGN.md's", e.Endpoint))
	}
	if e.ID <= 0 {
		problems = append(problems, fmt.Sprintf("id %d is not positive", e.ID))
	}
	return problems
}

// streamMsg is one message of /api/v1/stream.
type streamMsg struct {
	Type     string          `json:"type"`
	RawEvent json.RawMessage `json:"event"`
	Event    inspect.Event   `json:"-"`
	Raw      []byte          `json:"-"`
}

// streamRecorder keeps every message of one /api/v1/stream websocket.
type streamRecorder struct {
	conn *websocket.Conn

	mu      sync.Mutex
	msgs    []streamMsg
	err     error         // why reading stopped
	changed chan struct{} // closed and replaced on each message
}

// dialStream connects to the stream with query q and records messages until
// Close or the server closes.
func dialStream(uiAddr string, q url.Values) (*streamRecorder, error) {
	u := "ws://" + uiAddr + "/api/v1/stream"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	d := &websocket.Dialer{Proxy: nil, HandshakeTimeout: 5 * time.Second}
	conn, resp, err := d.Dial(u, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dialing %s: %w (%s)", u, err, resp.Status)
		}
		return nil, fmt.Errorf("dialing %s: %w", u, err)
	}
	s := &streamRecorder{conn: conn, changed: make(chan struct{})}
	go s.read()
	return s, nil
}

func (s *streamRecorder) read() {
	for {
		_, b, err := s.conn.ReadMessage()
		var m streamMsg
		if err == nil {
			if err = json.Unmarshal(b, &m); err != nil {
				err = fmt.Errorf("decoding message %s: %w", b, err)
			} else if len(m.RawEvent) > 0 {
				if err = json.Unmarshal(m.RawEvent, &m.Event); err != nil {
					err = fmt.Errorf("decoding the event of %s: %w", b, err)
				}
			}
			m.Raw = b
		}
		s.mu.Lock()
		if err != nil {
			s.err = err
		} else {
			s.msgs = append(s.msgs, m)
		}
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// Messages returns the messages so far and the error that stopped reading,
// if any.
func (s *streamRecorder) Messages() ([]streamMsg, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]streamMsg(nil), s.msgs...), s.err
}

// WaitFor waits up to timeout until cond holds for the messages so far.
func (s *streamRecorder) WaitFor(timeout time.Duration, cond func([]streamMsg) bool) bool {
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		msgs, ch, stopped := append([]streamMsg(nil), s.msgs...), s.changed, s.err != nil
		s.mu.Unlock()
		if cond(msgs) {
			return true
		}
		if stopped {
			return false
		}
		select {
		case <-ch:
		case <-deadline:
			return false
		}
	}
}

// Close closes the websocket.
func (s *streamRecorder) Close() { s.conn.Close() }

// openThenEvent reports whether msgs hold an "open" message for id followed,
// later, by an "event" message for id, and returns them.
func openThenEvent(msgs []streamMsg, id int64) (open, ev *streamMsg, ok bool) {
	for i := range msgs {
		m := &msgs[i]
		switch {
		case m.Type == "open" && m.Event.ID == id && open == nil:
			open = m
		case m.Type == "event" && m.Event.ID == id && open != nil:
			return open, m, true
		}
	}
	return open, nil, false
}

// hasType reports whether msgs hold a message of type typ.
func hasType(msgs []streamMsg, typ string) bool {
	for _, m := range msgs {
		if m.Type == typ {
			return true
		}
	}
	return false
}

// TestHarnessAPIClients checks the API client, the stream recorder and the
// event JSON check against a small in-test server that speaks the shapes
// of DESIGN.md.
func TestHarnessAPIClients(t *testing.T) {
	start := time.Now()
	ev := func(id int64, host string, o inspect.Outcome) inspect.Event {
		return inspect.Event{ID: id, Time: start.UTC(), Source: "proxy", Sensor: "e2e", Host: host,
			Method: "CONNECT", Port: 443, Endpoint: inspect.EndpointTetra, Outcome: o}
	}
	var (
		mu      sync.Mutex
		queries []url.Values
	)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/events", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		mu.Lock()
		queries = append(queries, q)
		mu.Unlock()
		if q.Get("host") == "broken.test" {
			http.Error(w, "store failing", http.StatusInternalServerError)
			return
		}
		all := []inspect.Event{ev(1, hostTetraEU, inspect.DNSFailure)}
		// The second event is "written" a moment later, as the real one
		// is written after the connection closes.
		if time.Since(start) > 300*time.Millisecond {
			all = append([]inspect.Event{ev(2, hostTetra, inspect.OK)}, all...)
		}
		out := []inspect.Event{}
		for _, e := range all {
			if h := q.Get("host"); h == "" || h == e.Host {
				out = append(out, e)
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"events": out})
	})
	up := websocket.Upgrader{}
	mux.HandleFunc("GET /api/v1/stream", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		open := ev(7, hostTetra, "")
		for _, m := range []any{
			map[string]any{"type": "stats", "stats": map[string]int{"open": 0}},
			map[string]any{"type": "open", "event": map[string]any{"id": 7, "time": open.Time,
				"client_ip": "127.0.0.1", "method": "CONNECT", "host": hostTetra, "port": 443,
				"endpoint": "tetra"}},
			map[string]any{"type": "stats", "stats": map[string]int{"open": 1}},
			map[string]any{"type": "event", "event": ev(7, hostTetra, inspect.OK)},
		} {
			if c.WriteJSON(m) != nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		c.ReadMessage() // until the client closes
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	api := newAPIClient(addr)

	t.Run("wait for an event", func(t *testing.T) {
		q := url.Values{"host": {hostTetra}, "limit": {"50"}}
		isOK := func(e *inspect.Event) bool { return e.Outcome == inspect.OK }
		got, err := api.WaitEvent(q, isOK, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != 2 || got.Host != hostTetra || len(got.Raw) == 0 {
			t.Fatalf("got %+v", got)
		}
		mu.Lock()
		last := queries[len(queries)-1]
		mu.Unlock()
		if last.Get("host") != hostTetra || last.Get("limit") != "50" {
			t.Fatalf("the server got query %v", last)
		}
	})

	t.Run("timeout names what was seen", func(t *testing.T) {
		_, err := api.WaitEvent(url.Values{"host": {hostTetraEU}},
			func(e *inspect.Event) bool { return e.Outcome == inspect.OK }, 300*time.Millisecond)
		if err == nil || !strings.Contains(err.Error(), "dns_failure") {
			t.Fatalf("error = %v, want a timeout listing the dns_failure event", err)
		}
	})

	t.Run("server error", func(t *testing.T) {
		_, err := api.WaitEvent(url.Values{"host": {"broken.test"}},
			func(*inspect.Event) bool { return true }, 300*time.Millisecond)
		if err == nil || !strings.Contains(err.Error(), "500") {
			t.Fatalf("error = %v, want the 500", err)
		}
	})

	t.Run("event JSON check", func(t *testing.T) {
		good, _ := json.Marshal(ev(3, hostTetra, inspect.OK))
		if p := checkEventJSON(good); len(p) != 0 {
			t.Errorf("a complete event has problems: %v", p)
		}
		var m map[string]any
		json.Unmarshal(good, &m)
		delete(m, "lasterror")
		m["time"] = start.In(time.FixedZone("CEST", 2*3600)).Format(time.RFC3339Nano)
		m["outcome"] = "fine"
		bad, _ := json.Marshal(m)
		p := strings.Join(checkEventJSON(bad), "; ")
		for _, want := range []string{
			"missing field lasterror", "not RFC 3339 in UTC", `outcome "fine"`,
		} {
			if !strings.Contains(p, want) {
				t.Errorf("problems %q lack %q", p, want)
			}
		}
	})

	t.Run("stream", func(t *testing.T) {
		s, err := dialStream(addr, url.Values{"backfill": {"0"}})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ok := s.WaitFor(5*time.Second, func(m []streamMsg) bool {
			_, _, ok := openThenEvent(m, 7)
			return ok && hasType(m, "stats")
		})
		msgs, rerr := s.Messages()
		if !ok {
			t.Fatalf("no open then event for id 7 (read error %v) in %d messages", rerr, len(msgs))
		}
		open, end, _ := openThenEvent(msgs, 7)
		if open.Event.Outcome != "" || open.Event.Host != hostTetra || end.Event.Outcome != inspect.OK {
			t.Fatalf("open %+v, event %+v", open.Event, end.Event)
		}
		if p := checkEventJSON(end.RawEvent); len(p) != 0 {
			t.Errorf("stream event has problems: %v", p)
		}
	})
}
