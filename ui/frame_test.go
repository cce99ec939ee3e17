package ui

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tetrascope/tetrascope/inspect"
)

// TestStreamFrameSizes sends live messages whose lengths need each form of
// the frame header (7-bit, 16-bit and 64-bit lengths) through a real
// stream: the websocket library on the other end must read each whole.
func TestStreamFrameSizes(t *testing.T) {
	s := New(Config{}, Deps{})
	ts := start(t, s)
	c := dial(t, ts, "/api/v1/stream")
	catchUp(t, c)

	// An open message with a short host fits the 7-bit length; the
	// details make the others long.
	short := inspect.Event{ID: 1, Time: time.Now(), ClientIP: "10.0.0.1", Method: "CONNECT",
		Host: "h"}
	s.Publish(KindOpen, short)
	for i, n := range []int{200, 70_000} {
		ev := ended(int64(i+2), "10.0.0.1", inspect.OK)
		ev.Detail = strings.Repeat("x", n)
		s.Publish(KindEvent, ev)
	}
	for i, want := range []int{0, 200, 70_000} {
		m := nextEvent(t, c)
		if m.Event == nil || m.Event.ID != int64(i+1) || len(m.Event.Detail) != want {
			t.Fatalf("message %d: %+v; want event %d with %d bytes of detail", i, m.Event, i+1, want)
		}
	}
	if m := newMessage(0, 0, make([]byte, frameRoom+125)); len(m.frame) != 127 || m.frame[1] != 125 {
		t.Errorf("a 125-byte payload has a %d-byte frame, length byte %d; want 127, 125",
			len(m.frame), m.frame[1])
	}
}

// TestStreamAnswersPing: a client's ping is answered with a pong carrying
// its data.
func TestStreamAnswersPing(t *testing.T) {
	ts := start(t, New(Config{}, Deps{}))
	c := dial(t, ts, "/api/v1/stream")
	catchUp(t, c)

	pong := make(chan string, 1)
	c.SetPongHandler(func(data string) error {
		pong <- data
		return nil
	})
	if err := c.WriteControl(websocket.PingMessage, []byte("hello"), time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	// Control frames are handled while reading.
	go func() {
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	}()
	select {
	case got := <-pong:
		if got != "hello" {
			t.Errorf("pong %q; want hello", got)
		}
	case <-time.After(wait):
		t.Fatal("no pong")
	}
}

// TestStreamAnswersClose: a client that closes gets the server's close
// frame back, with its own code.
func TestStreamAnswersClose(t *testing.T) {
	s := New(Config{}, Deps{})
	ts := start(t, s)
	c := dial(t, ts, "/api/v1/stream")
	catchUp(t, c)

	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye")
	if err := c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	var err error
	for err == nil {
		_, _, err = c.ReadMessage()
	}
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseNormalClosure {
		t.Fatalf("read ended with %v; want the server's close frame, code 1000", err)
	}
	waitFor(t, "the viewer to leave", func() bool { return s.Viewers() == 0 })
}
