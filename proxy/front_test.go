package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/resolve"
)

// reverseOrigin answers each read of a connection with the bytes read,
// upper-cased, until the client closes.
func reverseOrigin(t *testing.T) int {
	t.Helper()
	return serveLoopback(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if _, err := c.Write([]byte(strings.ToUpper(string(buf[:n])))); err != nil {
				return
			}
		}
	})
}

// TestConnectWithDataBehind: bytes a client sends in the same write as its
// CONNECT, before the answer, reach the server first.
func TestConnectWithDataBehind(t *testing.T) {
	origin := reverseOrigin(t)
	f := start(t, []int{origin}, "tetra-defs.amp.cisco.com")
	c, err := net.Dial("tcp", f.proxyURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT tetra-defs.amp.cisco.com:%d HTTP/1.1\r\nHost: x\r\n\r\nhello", origin)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("answer %v, %v; want 200", resp, err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "HELLO" {
		t.Fatalf("relayed %q (%v); want HELLO", got, err)
	}
	c.Close()
	if ev := f.rec.next(t); ev.BytesUp != 5 || ev.Status != http.StatusOK {
		t.Errorf("event %+v; want 5 bytes up through an established tunnel", ev)
	}
}

// TestConnectAfterChallenge: a connection answered 407 stays open for the
// next attempt, which may be another CONNECT or a plain request; both are
// recorded.
func TestConnectAfterChallenge(t *testing.T) {
	f, target := startWithAlice(t, reverseOrigin(t))

	t.Run("connect", func(t *testing.T) {
		c, err := net.Dial("tcp", f.proxyURL.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if resp := challenged(t, c, br, target); resp.StatusCode != 407 {
			t.Fatalf("first answer %d; want 407", resp.StatusCode)
		}
		if ev := f.rec.next(t); ev.Outcome != inspect.AuthRequired {
			t.Fatalf("first event %+v", ev)
		}
		if resp := connectVia(t, c, br, target, basic("alice", "secret")); resp.StatusCode != 200 {
			t.Fatalf("second answer %d; want 200", resp.StatusCode)
		}
		io.WriteString(c, "abc")
		got := make([]byte, 3)
		if _, err := io.ReadFull(br, got); err != nil || string(got) != "ABC" {
			t.Fatalf("relayed %q (%v)", got, err)
		}
		c.Close()
		if ev := f.rec.next(t); ev.Status != 200 || ev.ClientUser != "alice" {
			t.Fatalf("second event %+v", ev)
		}
	})

	t.Run("then a plain request", func(t *testing.T) {
		c, err := net.Dial("tcp", f.proxyURL.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if resp := challenged(t, c, br, target); resp.StatusCode != 407 {
			t.Fatalf("first answer %d; want 407", resp.StatusCode)
		}
		f.rec.next(t)
		io.WriteString(c, "GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		ev := f.rec.next(t)
		if resp.StatusCode != 407 || ev.Method != http.MethodGet || ev.Status != 407 {
			t.Fatalf("answer %d, event %+v; want the GET challenged and recorded",
				resp.StatusCode, ev)
		}
	})
}

// challenged sends a CONNECT without credentials and reads the answer
// whole, body included.
func challenged(t *testing.T, c net.Conn, br *bufio.Reader, target string) *http.Response {
	t.Helper()
	resp := connectVia(t, c, br, target, "")
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// TestConnectLeftToNetHTTP: a CONNECT the front does not serve itself is
// answered as net/http answers it, and recorded.
func TestConnectLeftToNetHTTP(t *testing.T) {
	origin := reverseOrigin(t)
	f := start(t, []int{origin}, "tetra-defs.amp.cisco.com")
	target := fmt.Sprintf("tetra-defs.amp.cisco.com:%d", origin)
	cases := []struct {
		name    string
		head    string
		status  int
		outcome inspect.Outcome
	}{
		{"HTTP/1.0", "CONNECT " + target + " HTTP/1.0\r\n\r\n", 200, inspect.OK},
		{"long head", "CONNECT " + target + " HTTP/1.1\r\nX-Pad: " + strings.Repeat("a", 5000) +
			"\r\n\r\n", 200, inspect.OK},
		{"bare LF", "CONNECT " + target + " HTTP/1.1\nHost: x\n\n", 200, inspect.OK},
		{"expect", "CONNECT " + target + " HTTP/1.1\r\nExpect: magic\r\n\r\n", 417,
			inspect.BadRequest},
		{"bad host header", "CONNECT " + target + " HTTP/1.1\r\nHost: a b\r\n\r\n", 400,
			inspect.BadRequest},
		{"two hosts", "CONNECT " + target + " HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400,
			inspect.BadRequest},
		{"HTTP/2", "CONNECT " + target + " HTTP/2.0\r\n\r\n", 505, inspect.BadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", f.proxyURL.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, tc.head)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode == http.StatusOK {
				io.WriteString(c, "ok")
				got := make([]byte, 2)
				if _, err := io.ReadFull(br, got); err != nil || string(got) != "OK" {
					t.Fatalf("relayed %q (%v)", got, err)
				}
			}
			c.Close()
			ev := f.rec.next(t)
			if resp.StatusCode != tc.status || ev.Status != tc.status || ev.Outcome != tc.outcome {
				t.Fatalf("answer %d, event %+v; want %d, %s", resp.StatusCode, ev, tc.status,
					tc.outcome)
			}
		})
	}
}

// TestShutdownClosesWaitingConnections: a connection that has sent no
// request is closed at shutdown, and the proxy stops without waiting for
// it however long the timeouts are.
func TestShutdownClosesWaitingConnections(t *testing.T) {
	res, err := resolve.New(nil, nil, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{
		Listen: "127.0.0.1:0", Sensor: "test",
		AllowClients:      []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		ReadHeaderTimeout: time.Hour, IdleTimeout: time.Hour, ShutdownGrace: time.Hour,
	}, Deps{Resolver: res, Recorder: newRecorder()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	idle, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	partial, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer partial.Close()
	io.WriteString(partial, "CONNECT tetra-defs.amp.cisco.com:443 HTTP/1.1\r\n")
	for s.Connections() != 2 {
		time.Sleep(time.Millisecond)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, c := range []net.Conn{idle, partial} {
		if n, err := c.Read(make([]byte, 1)); err == nil {
			t.Errorf("read %d bytes from a connection of a stopped proxy; want it closed", n)
		}
	}
	if n := s.Connections(); n != 0 {
		t.Errorf("%d connections still counted", n)
	}
}

// panicky is a Recorder whose Open panics once.
type panicky struct {
	*recorder
	panicked atomic.Bool
}

func (p *panicky) Open(ev *inspect.Event) {
	if p.panicked.CompareAndSwap(false, true) {
		panic("recorder broke")
	}
	p.recorder.Open(ev)
}

// TestFrontHandlerPanic: a handler that panics on a CONNECT the front read
// loses its connection, which is logged as an error, and the proxy goes
// on serving.
func TestFrontHandlerPanic(t *testing.T) {
	origin := reverseOrigin(t)
	res, err := resolve.New(nil, nil, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	el := &errorLog{}
	rec := &panicky{recorder: newRecorder()}
	s, err := New(Config{Listen: "127.0.0.1:0", Sensor: "test", AllowPorts: []int{origin},
		AllowClients: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		Deps{Resolver: res, Recorder: rec, Logger: slog.New(el)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	connect := func() (*http.Response, error) {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "CONNECT 127.0.0.1:%d HTTP/1.1\r\n\r\n", origin)
		return http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	}
	if resp, err := connect(); err == nil {
		t.Fatalf("the panicking request was answered %s; want the connection closed", resp.Status)
	}
	if msgs := el.take(); len(msgs) != 1 || !strings.Contains(msgs[0], "recorder broke") {
		t.Errorf("error log %q; want the panic", msgs)
	}
	if resp, err := connect(); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the next CONNECT: %v, %v; want 200", resp, err)
	}
}
