package ui

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tetrascope/tetrascope/inspect"
)

func TestStreamBackfill(t *testing.T) {
	fs := storeOf(10)
	ts := start(t, New(Config{}, Deps{Events: fs}))

	c := dial(t, ts, "/api/v1/stream?backfill=3")
	got := catchUp(t, c)
	want := []string{"event:8", "event:9", "event:10"}
	if !slices.Equal(got, want) {
		t.Errorf("backfill %v; want %v, oldest to newest", got, want)
	}
	if f := fs.lastFilter(t); f.Limit != 3 || f.After != 0 {
		t.Errorf("store got %+v; want limit 3, no after", f)
	}
}

func TestStreamLive(t *testing.T) {
	s := New(Config{Sensor: "branch-1"}, Deps{
		Stats: func() map[string]any { return map[string]any{"events_total": 41, "dropped": 0} },
	})
	s.statsPeriod = 20 * time.Millisecond
	ts := start(t, s)
	c := dial(t, ts, "/api/v1/stream")
	if got := catchUp(t, c); len(got) != 0 {
		t.Fatalf("catch-up without backfill sent %v", got)
	}

	s.Publish(KindOpen, opened(11, "10.0.0.1"))
	s.Publish(KindEvent, ended(11, "10.0.0.1", inspect.TLSAborted))

	open := nextEvent(t, c)
	if open.Type != KindOpen || open.Event.ID != 11 || open.Event.Outcome != "" ||
		open.Event.Host != "tetra-defs.amp.cisco.com" || open.Event.Port != 443 {
		t.Errorf("first message %+v; want open 11 with no outcome", open)
	}
	end := nextEvent(t, c)
	if end.Type != KindEvent || end.Event.ID != 11 || end.Event.Outcome != inspect.TLSAborted {
		t.Errorf("second message %+v; want event 11, tls_aborted", end)
	}

	// The stats message carries the program's counters and the UI's own.
	var stats received
	for stats.Type != KindStats {
		stats = read(t, c)
	}
	if stats.Stats["events_total"] != float64(41) || stats.Stats["viewers"] != float64(1) ||
		stats.Stats["sensor"] != "branch-1" {
		t.Errorf("stats %v; want events_total 41, viewers 1, sensor branch-1", stats.Stats)
	}
}

func TestStreamFilters(t *testing.T) {
	s := New(Config{}, Deps{})
	ts := start(t, s)
	failures := dial(t, ts, "/api/v1/stream?client=10.0.0.1&outcome=tls_aborted")
	client := dial(t, ts, "/api/v1/stream?client=10.0.0.1&endpoint=tetra")
	text := dial(t, ts, "/api/v1/stream?q=RESET")
	for _, c := range []*websocket.Conn{failures, client, text} {
		catchUp(t, c)
	}

	other := ended(4, "10.0.0.1", inspect.OK)
	other.Endpoint, other.Host = inspect.EndpointOther, "example.net"
	withText := ended(5, "10.0.0.2", inspect.DownloadAborted)
	withText.Detail = "server reset mid-transfer"
	withURL := ended(12, "10.0.0.3", inspect.HTTPError)
	withURL.Endpoint, withURL.Method = inspect.EndpointRevocation, "GET"
	withURL.Host, withURL.URL = "crl.identrust.com", "http://crl.identrust.com/Reset.crl"

	s.Publish(KindOpen, opened(1, "10.0.0.1"))                     // client
	s.Publish(KindEvent, ended(2, "10.0.0.2", inspect.TLSAborted)) // none
	s.Publish(KindEvent, ended(1, "10.0.0.1", inspect.OK))         // client
	s.Publish(KindEvent, ended(3, "10.0.0.1", inspect.TLSAborted)) // failures, client
	s.Publish(KindEvent, other)                                    // none
	s.Publish(KindEvent, withText)                                 // text
	s.Publish(KindEvent, ended(9, "10.0.0.1", inspect.TLSAborted)) // failures, client
	s.Publish(KindEvent, withURL)                                  // text

	tests := []struct {
		name string
		c    *websocket.Conn
		want []string
	}{
		{"outcome hides opens", failures, []string{"event:3", "event:9"}},
		{"client and endpoint", client, []string{"open:1", "event:1", "event:3", "event:9"}},
		{"text", text, []string{"event:5", "event:12"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for len(got) < len(tt.want) {
				got = append(got, describe(nextEvent(t, tt.c)))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v; want %v", got, tt.want)
			}
		})
	}
}

func TestStreamAfterReplay(t *testing.T) {
	fs := storeOf(10)
	long := opened(3, "10.0.0.1") // a tunnel open since before after=7
	active := func() []inspect.Event {
		return []inspect.Event{opened(20, "10.0.0.1"), long, opened(9, "10.0.0.1")}
	}
	s := New(Config{}, Deps{Events: fs, Active: active})
	ts := start(t, s)

	c := dial(t, ts, "/api/v1/stream?after=7")
	got := catchUp(t, c)
	// Stored events after 7, then what is open now, by id; 9 is not
	// shown open again, since the store holds its end.
	want := []string{"event:8", "event:9", "event:10", "open:3", "open:20"}
	if !slices.Equal(got, want) {
		t.Errorf("catch-up %v; want %v", got, want)
	}
	if f := fs.lastFilter(t); f.After != 7 || f.Limit != maxLimit {
		t.Errorf("store got %+v; want after 7, limit %d", f, maxLimit)
	}

	// Live: an end the replay already sent is not sent twice; the end of
	// the long tunnel comes through although its id is below after.
	s.Publish(KindEvent, ended(10, "10.0.0.1", inspect.OK))
	s.Publish(KindEvent, ended(3, "10.0.0.1", inspect.DownloadAborted))
	s.Publish(KindEvent, ended(21, "10.0.0.1", inspect.OK))
	var live []string
	for len(live) < 2 {
		live = append(live, describe(nextEvent(t, c)))
	}
	if want := []string{"event:3", "event:21"}; !slices.Equal(live, want) {
		t.Errorf("live %v; want %v", live, want)
	}
}

func TestStreamReplayFailure(t *testing.T) {
	var logs logBuffer
	failing := eventsFunc(func(context.Context, inspect.Filter) ([]inspect.Event, error) {
		return nil, errors.New("disk I/O error")
	})
	s := New(Config{}, Deps{Events: failing, Logger: logs.logger()})
	ts := start(t, s)

	c := dial(t, ts, "/api/v1/stream?backfill=10")
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, _, err := c.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseInternalServerErr) {
		t.Errorf("read error %v; want close 1011", err)
	}
	if !strings.Contains(logs.String(), "disk I/O error") {
		t.Errorf("log %q lacks the cause", logs.String())
	}
}

func TestStreamBadParams(t *testing.T) {
	ts := start(t, New(Config{}, Deps{}))
	for _, q := range []string{"backfill=lots", "outcome=nope", "since=later"} {
		_, resp, err := websocket.DefaultDialer.Dial(wsURL(ts, "/api/v1/stream?"+q), nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: err %v, resp %v; want 400", q, err, resp)
		}
	}
}

func TestStreamOrigin(t *testing.T) {
	ts := start(t, New(Config{}, Deps{}))
	host := strings.TrimPrefix(ts.URL, "http://")
	tests := []struct {
		origin string
		ok     bool
	}{
		{"", true},
		{"http://" + host, true},
		{"https://" + strings.ToUpper(host), true},
		{"http://evil.example", false},
		{"http://" + host + ".evil.example", false},
		{"null", false},
	}
	for _, tt := range tests {
		t.Run(tt.origin, func(t *testing.T) {
			h := http.Header{}
			if tt.origin != "" {
				h.Set("Origin", tt.origin)
			}
			c, resp, err := websocket.DefaultDialer.Dial(wsURL(ts, "/api/v1/stream"), h)
			if tt.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				c.Close()
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("accepted a foreign origin")
			}
			if resp == nil || resp.StatusCode != http.StatusForbidden {
				t.Errorf("resp %v; want 403", resp)
			}
		})
	}
}

// TestSlowViewerDropped has one viewer that never reads and one that reads
// everything. Publish must keep returning, the slow viewer must be dropped
// with a reason, and the fast one must get every event in order.
func TestSlowViewerDropped(t *testing.T) {
	s := New(Config{}, Deps{})
	s.viewerBuffer = 16

	// Small socket buffers on both ends make the slow viewer's connection
	// fill after a few messages rather than megabytes; they are real TCP
	// connections on loopback all the same.
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.Listener = smallBuffers{ts.Listener}
	ts.Start()
	t.Cleanup(ts.Close)
	t.Cleanup(s.closeViewers)
	small := websocket.Dialer{NetDialContext: func(ctx context.Context, network, addr string) (
		net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, network, addr)
		if err == nil {
			err = conn.(*net.TCPConn).SetReadBuffer(socketBuffer)
		}
		return conn, err
	}}
	slow, _, err := small.Dial(wsURL(ts, "/api/v1/stream"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	fast := dial(t, ts, "/api/v1/stream")
	catchUp(t, fast)
	waitFor(t, "two viewers", func() bool { return s.Viewers() == 2 })

	// The fast viewer reports the ids it gets.
	got := make(chan int64, 64)
	go func() {
		defer close(got)
		for {
			_ = fast.SetReadDeadline(time.Now().Add(wait))
			_, data, err := fast.ReadMessage()
			if err != nil {
				return
			}
			if strings.HasPrefix(string(data), `{"type":"event"`) {
				var m received
				if json.Unmarshal(data, &m) == nil {
					got <- m.Event.ID
				}
			}
		}
	}()

	// Publish in rounds smaller than a viewer's buffer, waiting each time
	// for the fast viewer, so that only the slow one can fall behind.
	const round, maxEvents = 8, 4000
	detail := strings.Repeat("x", 4<<10)
	var id int64
	publishRound := func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range round {
				id++
				ev := ended(id, "10.0.0.1", inspect.DownloadAborted)
				ev.Detail = detail
				s.Publish(KindEvent, ev)
			}
		}()
		select {
		case <-done:
		case <-time.After(wait):
			t.Fatal("Publish blocked")
		}
		for want := id - round + 1; want <= id; want++ {
			select {
			case g, ok := <-got:
				if !ok || g != want {
					t.Fatalf("fast viewer got %d (open %v); want %d", g, ok, want)
				}
			case <-time.After(wait):
				t.Fatalf("fast viewer stopped before event %d", want)
			}
		}
	}
	for s.Viewers() == 2 && id < maxEvents {
		publishRound()
	}
	if s.Viewers() != 1 {
		t.Fatalf("%d viewers after %d events; want the slow one dropped", s.Viewers(), id)
	}
	t.Logf("slow viewer dropped after %d events", id)
	publishRound() // the fast viewer goes on as before

	// The slow viewer, reading at last, gets what was queued for it, then
	// a close with the reason.
	if err := slow.NetConn().(*net.TCPConn).SetReadBuffer(1 << 20); err != nil {
		t.Fatal(err)
	}
	var closeErr *websocket.CloseError
	for {
		_ = slow.SetReadDeadline(time.Now().Add(wait))
		if _, _, err := slow.ReadMessage(); err != nil {
			if !errors.As(err, &closeErr) {
				t.Fatalf("slow viewer read error %v; want a close", err)
			}
			break
		}
	}
	if closeErr.Code != websocket.CloseTryAgainLater || closeErr.Text != reasonTooSlow {
		t.Errorf("close %d %q; want %d %q", closeErr.Code, closeErr.Text,
			websocket.CloseTryAgainLater, reasonTooSlow)
	}
	if n := s.slow.Load(); n != 1 {
		t.Errorf("viewers dropped = %d; want 1", n)
	}
}

func TestRunShutdown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{}, Deps{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- s.serve(ctx, ln) }()

	url := "ws://" + ln.Addr().String() + "/api/v1/stream"
	c, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	catchUp(t, c)

	cancel()
	_ = c.SetReadDeadline(time.Now().Add(wait))
	_, _, err = c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway || ce.Text != reasonShutdown {
		t.Errorf("read error %v; want close 1001 %q", err, reasonShutdown)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("serve returned %v; want nil after ctx is done", err)
		}
	case <-time.After(wait):
		t.Fatal("serve did not return after ctx was done")
	}
	if s.Viewers() != 0 {
		t.Errorf("%d viewers after shutdown", s.Viewers())
	}
}

func TestRunListenError(t *testing.T) {
	s := New(Config{Listen: "127.0.0.1:-1"}, Deps{})
	err := s.Run(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "listening on 127.0.0.1:-1: ") {
		t.Errorf("Run error %v; want one starting with the address", err)
	}
}

// socketBuffer is the size of the socket buffers of TestSlowViewerDropped.
const socketBuffer = 8 << 10

// smallBuffers gives accepted connections a small send buffer.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if err := conn.(*net.TCPConn).SetWriteBuffer(socketBuffer); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// waitFor polls cond within the bounded wait.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
