package ui

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tetrascope/tetrascope/inspect"
)

// client is a client row with an address, state and diagnoses; users are
// the users seen, the last one the latest.
func client(ip string, state inspect.ClientState, diagnoses []string, users ...string) inspect.Client {
	c := inspect.Client{
		ClientIP:  ip,
		Users:     append([]string{}, users...),
		Sensor:    "s1",
		FirstSeen: t0,
		LastSeen:  t0.Add(time.Minute),
		Counts:    map[inspect.Outcome]int{inspect.OK: 1},
		State:     state,
		Diagnoses: []inspect.Diagnosis{},
	}
	if len(users) > 0 {
		c.ClientUser = users[len(users)-1]
	}
	for i, d := range diagnoses {
		if i == 0 {
			c.Diagnosis = d
		}
		c.Diagnoses = append(c.Diagnoses, inspect.Diagnosis{
			Name: d, Evidence: []int64{int64(i + 1)}, Advice: inspect.Advice(d),
		})
	}
	if state == inspect.StateFailing {
		c.ExpectedLastError = inspect.LastErrorDownloadFailed
		c.LastErrorBasis = inspect.Documented
	}
	return c
}

// clientList is a function-type fake of the pipeline's client state.
type clientList struct {
	mu      sync.Mutex
	clients []inspect.Client
}

func (cl *clientList) get() []inspect.Client {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return slices.Clone(cl.clients)
}

func (cl *clientList) set(cs ...inspect.Client) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.clients = cs
}

func sampleClients() *clientList {
	cl := &clientList{}
	cl.set(
		client("10.0.0.1", inspect.StateFailing, []string{inspect.DiagnosisDNS}, "CORP\\svc"),
		client("10.0.0.2", inspect.StateFailing,
			[]string{inspect.DiagnosisProxyAuth, inspect.DiagnosisConnectBlocked}, "bob", "alice"),
		client("10.0.0.3", inspect.StateSilent, []string{inspect.DiagnosisSilent}),
		client("10.0.0.4", inspect.StateHealthy, nil),
	)
	return cl
}

func TestClients(t *testing.T) {
	ts := start(t, New(Config{}, Deps{Clients: sampleClients().get}))

	tests := []struct {
		query string
		want  []string
	}{
		{"", []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}},
		{"?client=10.0.0.3", []string{"10.0.0.3"}},
		{"?user=ALICE", []string{"10.0.0.2"}},
		{"?user=bob", []string{"10.0.0.2"}},
		{"?state=failing", []string{"10.0.0.1", "10.0.0.2"}},
		{"?diagnosis=connect_blocked", []string{"10.0.0.2"}},
		{"?state=healthy&diagnosis=dns", []string{}},
		{"?sensor=other", []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			status, body := get(t, ts, "/api/v1/clients"+tt.query, nil)
			if status != http.StatusOK {
				t.Fatalf("status %d: %s", status, body)
			}
			var got struct {
				Clients *[]inspect.Client `json:"clients"`
			}
			if err := json.Unmarshal(body, &got); err != nil || got.Clients == nil {
				t.Fatalf("decoding %s: %v; want a clients list", body, err)
			}
			ips := []string{}
			for _, c := range *got.Clients {
				ips = append(ips, c.ClientIP)
			}
			if !slices.Equal(ips, tt.want) {
				t.Errorf("clients %v; want %v", ips, tt.want)
			}
		})
	}

	// The rows carry the client fields of the contract.
	_, body := get(t, ts, "/api/v1/clients?client=10.0.0.2", nil)
	var raw struct {
		Clients []map[string]any `json:"clients"`
	}
	if err := json.Unmarshal(body, &raw); err != nil || len(raw.Clients) != 1 {
		t.Fatalf("decoding %s: %v", body, err)
	}
	for _, field := range []string{
		"client_ip", "client_user", "users", "sensor", "first_seen", "last_seen",
		"last_tetra_ok", "tetra_attempts", "tetra_failures", "counts", "state", "diagnosis",
		"diagnoses", "expected_lasterror", "lasterror_basis",
	} {
		if _, ok := raw.Clients[0][field]; !ok {
			t.Errorf("client row lacks %q: %s", field, body)
		}
	}
}

func TestClientsBadParams(t *testing.T) {
	ts := start(t, New(Config{}, Deps{Clients: sampleClients().get}))
	for _, tt := range []struct{ query, param string }{
		{"state=broken", "state"},
		{"diagnosis=gremlins", "diagnosis"},
	} {
		t.Run(tt.query, func(t *testing.T) {
			status, body := get(t, ts, "/api/v1/clients?"+tt.query, nil)
			var e errorBody
			if status != http.StatusBadRequest || json.Unmarshal(body, &e) != nil ||
				e.Param != tt.param {
				t.Errorf("status %d, body %s; want 400 naming %s", status, body, tt.param)
			}
		})
	}
}

func TestClientsWithoutState(t *testing.T) {
	ts := start(t, New(Config{}, Deps{}))
	status, body := get(t, ts, "/api/v1/clients", nil)
	if status != http.StatusServiceUnavailable {
		t.Errorf("status %d, body %s; want 503 without client state", status, body)
	}
}

func TestPublishClient(t *testing.T) {
	s := New(Config{}, Deps{})
	all := s.addViewer(inspect.Filter{})
	all2 := s.addViewer(inspect.Filter{Outcome: inspect.TLSAborted}) // event filters do not apply
	byIP := s.addViewer(inspect.Filter{ClientIP: "10.0.0.2"})
	byUser := s.addViewer(inspect.Filter{User: "Alice"})
	for _, v := range []*viewer{all, all2, byIP, byUser} {
		defer s.removeViewer(v)
	}

	cs := sampleClients().get()
	for _, c := range cs {
		s.PublishClient(c)
	}

	tests := []struct {
		name string
		v    *viewer
		want []string
	}{
		{"no filter", all, []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}},
		{"event filters", all2, []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"}},
		{"client", byIP, []string{"10.0.0.2"}},
		{"user", byUser, []string{"10.0.0.2"}},
	}
	shared := map[string]*byte{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, m := range queued(t, s, tt.v) {
				var r struct {
					Type   string          `json:"type"`
					Client *inspect.Client `json:"client"`
				}
				if err := json.Unmarshal(m.data, &r); err != nil || r.Type != KindClient ||
					r.Client == nil || m.seq == 0 || m.id != 0 {
					t.Fatalf("message %s (seq %d, id %d, %v); want a numbered client message",
						m.data, m.seq, m.id, err)
				}
				got = append(got, r.Client.ClientIP)
				if p, ok := shared[r.Client.ClientIP]; ok && p != &m.data[0] {
					t.Errorf("client %s encoded again for this viewer", r.Client.ClientIP)
				}
				shared[r.Client.ClientIP] = &m.data[0]
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v; want %v", got, tt.want)
			}
		})
	}
}

func TestPublishClientDropsFullViewer(t *testing.T) {
	s := New(Config{}, Deps{})
	s.viewerBuffer = 1
	full := s.addViewer(inspect.Filter{})
	defer s.removeViewer(full)

	c := client("10.0.0.1", inspect.StateFailing, nil)
	s.PublishClient(c)
	s.PublishClient(c) // the buffer is full: dropped, not waited for
	if !full.gone.Load() || full.code != 1013 || s.ViewersDropped() != 1 {
		t.Errorf("gone %v, code %d, dropped %d; want the viewer dropped as too slow",
			full.gone.Load(), full.code, s.ViewersDropped())
	}
}

// TestStreamSendsClients checks the catch-up's client messages (after the
// replay and the open tunnels, before the first stats message, narrowed by
// the viewer's client filter) and that a change published before the
// snapshot is not sent again after it.
func TestStreamSendsClients(t *testing.T) {
	cl := sampleClients()
	fs := storeOf(2)
	s := New(Config{}, Deps{
		Events:  fs,
		Clients: cl.get,
		Active:  func() []inspect.Event { return []inspect.Event{opened(7, "10.0.0.1")} },
	})
	ts := start(t, s)

	c := dial(t, ts, "/api/v1/stream?backfill=5")
	got := catchUpAll(t, c)
	want := []string{"event:1", "event:2", "open:7", "client:10.0.0.1", "client:10.0.0.2",
		"client:10.0.0.3", "client:10.0.0.4"}
	if !slices.Equal(got, want) {
		t.Errorf("catch-up %v; want %v", got, want)
	}

	one := dial(t, ts, "/api/v1/stream?client=10.0.0.3")
	if got := catchUpAll(t, one); !slices.Equal(got, []string{"client:10.0.0.3"}) {
		t.Errorf("catch-up with client=10.0.0.3: %v", got)
	}

	// A live change reaches the viewer whose filter it matches.
	changed := client("10.0.0.3", inspect.StateHealthy, nil)
	s.PublishClient(changed)
	m := nextMessage(t, one)
	if m != "client:10.0.0.3:healthy" {
		t.Errorf("live message %s; want client:10.0.0.3:healthy", m)
	}
}

// TestStreamSkipsClientChangesInSnapshot publishes a client change while
// the viewer's replay runs, before the client snapshot is taken: the
// snapshot already holds it, so its queued message must not follow the
// snapshot and show an older state after the newer one.
func TestStreamSkipsClientChangesInSnapshot(t *testing.T) {
	cl := &clientList{}
	var s *Server
	s = New(Config{}, Deps{
		Events: eventsFunc(func(ctx context.Context, f inspect.Filter) ([]inspect.Event, error) {
			s.PublishClient(client("10.0.0.1", inspect.StateFailing, nil))
			cl.set(client("10.0.0.1", inspect.StateHealthy, nil))
			return nil, nil
		}),
		Clients: cl.get,
	})
	ts := start(t, s)

	c := dial(t, ts, "/api/v1/stream?backfill=10")
	if got := catchUpAll(t, c); !slices.Equal(got, []string{"client:10.0.0.1"}) {
		t.Fatalf("catch-up %v; want the snapshot of 10.0.0.1", got)
	}
	s.PublishClient(client("10.0.0.9", inspect.StateUnknown, nil))
	if m := nextMessage(t, c); m != "client:10.0.0.9:unknown" {
		t.Errorf("after the catch-up: %s; want client:10.0.0.9:unknown, not the older "+
			"state of 10.0.0.1", m)
	}
}

// clientMessage is a stream message decoded with its client.
type clientMessage struct {
	received
	Client *inspect.Client `json:"client"`
}

// readAny returns the next stream message as "type:id" for events and
// "client:ip" for clients, with the decoded message.
func readAny(t *testing.T, c *websocket.Conn) (string, clientMessage) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	_, data, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("reading stream: %v", err)
	}
	var m clientMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("decoding %s: %v", data, err)
	}
	if m.Type == KindClient {
		if m.Client == nil {
			t.Fatalf("client message without a client: %s", data)
		}
		return "client:" + m.Client.ClientIP, m
	}
	return describe(m.received), m
}

// catchUpAll reads up to the first stats message, client messages
// included.
func catchUpAll(t *testing.T, c *websocket.Conn) []string {
	t.Helper()
	var got []string
	for {
		d, m := readAny(t, c)
		if m.Type == KindStats {
			return got
		}
		got = append(got, d)
	}
}

// nextMessage reads past stats messages; a client message is described
// with its state.
func nextMessage(t *testing.T, c *websocket.Conn) string {
	t.Helper()
	for {
		d, m := readAny(t, c)
		switch m.Type {
		case KindStats:
			continue
		case KindClient:
			return d + ":" + string(m.Client.State)
		}
		return d
	}
}
