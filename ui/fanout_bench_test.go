package ui

import (
	"bytes"
	"net"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tetrascope/tetrascope/inspect"
)

// fanoutRate is the rate at which BenchmarkFanout publishes: the events of
// a busy site.
const fanoutRate = 2000

// BenchmarkFanout publishes events at fanoutRate per second to 20 viewers
// of the real stream over loopback websockets, and reports how long each
// event took from Publish to a viewer's read (p50-ms, p99-ms, over every
// viewer) and how long Publish itself took (publish-ns/event). In the
// "+slow" case one more viewer never reads, with a small socket buffer: the
// others' latency must not change. The viewers run in this process, so on
// one processor their own reading is part of the latency. read-% is the
// share of the events the 20 viewers read: less than 100 means the server
// dropped viewers that fell behind.
func BenchmarkFanout(b *testing.B) {
	for _, slow := range []bool{false, true} {
		name := "viewers=20"
		if slow {
			name += "+slow"
		}
		b.Run(name, func(b *testing.B) { benchFanout(b, 20, slow) })
	}
}

func benchFanout(b *testing.B, n int, slow bool) {
	s := New(Config{}, Deps{})
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	url := "ws" + strings.TrimPrefix(ts.URL, "http") + "/api/v1/stream"

	var (
		mu       sync.Mutex
		lat      []time.Duration
		received atomic.Int64
		wg       sync.WaitGroup
		conns    []*websocket.Conn
	)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	}()
	for range n {
		c, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			defer func() {
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
			for {
				_, data, err := c.ReadMessage()
				if err != nil {
					return
				}
				now := time.Now()
				if t, ok := eventTime(data); ok {
					mine = append(mine, now.Sub(t))
					received.Add(1)
				}
			}
		}()
	}
	if slow {
		d := websocket.Dialer{NetDial: func(network, addr string) (net.Conn, error) {
			c, err := net.Dial(network, addr)
			if err == nil {
				_ = c.(*net.TCPConn).SetReadBuffer(4096)
			}
			return c, err
		}}
		c, _, err := d.Dial(url, nil)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	want := n
	if slow {
		want++
	}
	for deadline := time.Now().Add(wait); s.Viewers() < want; {
		if time.Now().After(deadline) {
			b.Fatalf("%d viewers joined, want %d", s.Viewers(), want)
		}
		time.Sleep(time.Millisecond)
	}

	ev := ended(1, "10.0.0.1", inspect.OK)
	ev.Detail = "handshake completed; closed by the client"
	interval := time.Second / fanoutRate
	var publish time.Duration
	published := 0
	start := time.Now()
	for b.Loop() {
		if d := time.Until(start.Add(time.Duration(published) * interval)); d > 0 {
			time.Sleep(d)
		}
		ev.ID++
		ev.Time = time.Now()
		s.Publish(KindEvent, ev)
		publish += time.Since(ev.Time)
		published++
	}
	b.StopTimer()

	// Wait for the viewers to read what was sent; a viewer that fell too
	// far behind has been dropped by the server and reads no more.
	for deadline, last := time.Now().Add(wait), int64(-1); received.Load() < int64(n*published); {
		if got := received.Load(); got == last || time.Now().After(deadline) {
			break
		}
		last = received.Load()
		time.Sleep(100 * time.Millisecond)
	}
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	conns = nil

	if len(lat) == 0 {
		b.Fatal("no viewer read any event")
	}
	slices.Sort(lat)
	b.ReportMetric(100*float64(received.Load())/float64(n*published), "read-%")
	b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50-ms")
	b.ReportMetric(float64(lat[(len(lat)-1)*99/100])/1e6, "p99-ms")
	b.ReportMetric(float64(publish.Nanoseconds())/float64(published), "publish-ns/event")
	b.ReportMetric(0, "ns/op")
}

var (
	eventPrefix = []byte(`{"type":"event"`)
	timeKey     = []byte(`"time":"`)
)

// eventTime picks the time out of an event message by hand: decoding every
// message would make the viewers, which share the processors with the
// server, the slowest part of the benchmark.
func eventTime(data []byte) (time.Time, bool) {
	if !bytes.HasPrefix(data, eventPrefix) {
		return time.Time{}, false
	}
	i := bytes.Index(data, timeKey)
	if i < 0 {
		return time.Time{}, false
	}
	rest := data[i+len(timeKey):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(rest[:j]))
	return t, err == nil
}
