package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// wsViewer is a viewer of /api/v1/stream written for the benchmark: the
// project's websocket library belongs to the ui package alone. It reads
// the stream's text messages and, for each "event" message, notes how long
// after its connection ended (time + duration_ms, both from the proxy's
// clock, which is this machine's) it arrived.
type wsViewer struct {
	c  net.Conn
	br *bufio.Reader

	mu     sync.Mutex
	lat    []time.Duration
	events int
	opens  int
	err    error
}

func dialViewer(uiAddr, query string) (*wsViewer, error) {
	c, err := net.DialTimeout("tcp", uiAddr, ioWait)
	if err != nil {
		return nil, err
	}
	var key [16]byte
	_, _ = rand.Read(key[:])
	req := "GET /api/v1/stream" + query + " HTTP/1.1\r\nHost: " + uiAddr +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " +
		base64.StdEncoding.EncodeToString(key[:]) + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	_ = c.SetDeadline(time.Now().Add(ioWait))
	if _, err := c.Write([]byte(req)); err != nil {
		c.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(c, 64<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		c.Close()
		return nil, fmt.Errorf("websocket handshake answered %s", resp.Status)
	}
	_ = c.SetDeadline(time.Time{})
	return &wsViewer{c: c, br: br}, nil
}

// run reads messages until the connection closes; close ends it.
func (v *wsViewer) run() {
	var msg []byte
	for {
		op, fin, payload, err := v.frame()
		if err != nil {
			v.mu.Lock()
			if !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
				v.err = err
			}
			v.mu.Unlock()
			return
		}
		switch op {
		case 0, 1:
			msg = append(msg, payload...)
			if fin {
				v.message(msg)
				msg = msg[:0]
			}
		case 8:
			return
		case 9:
			// Answer a ping with a masked pong (a zero key leaves the
			// payload as it is).
			pong := append([]byte{0x8a, 0x80 | byte(len(payload)), 0, 0, 0, 0}, payload...)
			_, _ = v.c.Write(pong)
		}
	}
}

func (v *wsViewer) close() { _ = v.c.Close() }

// frame reads one frame; the server's frames are not masked.
func (v *wsViewer) frame() (op byte, fin bool, payload []byte, err error) {
	var h [8]byte
	if _, err = io.ReadFull(v.br, h[:2]); err != nil {
		return
	}
	fin, op = h[0]&0x80 != 0, h[0]&0x0f
	masked := h[1]&0x80 != 0
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		if _, err = io.ReadFull(v.br, h[:2]); err != nil {
			return
		}
		n = uint64(binary.BigEndian.Uint16(h[:2]))
	case 127:
		if _, err = io.ReadFull(v.br, h[:8]); err != nil {
			return
		}
		n = binary.BigEndian.Uint64(h[:8])
	}
	if masked || n > 1<<20 {
		return 0, false, nil, errors.New("websocket: bad frame from the server")
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(v.br, payload)
	return
}

var (
	eventPrefix = []byte(`{"type":"event"`)
	openPrefix  = []byte(`{"type":"open"`)
	timeKey     = []byte(`"time":"`)
	durKey      = []byte(`"duration_ms":`)
)

// message notes an event's delay from its connection's end; it picks the
// two fields out by hand, which costs the load core much less than
// decoding every message.
func (v *wsViewer) message(m []byte) {
	now := time.Now()
	if bytes.HasPrefix(m, openPrefix) {
		v.mu.Lock()
		v.opens++
		v.mu.Unlock()
		return
	}
	if !bytes.HasPrefix(m, eventPrefix) {
		return
	}
	var lat time.Duration
	ok := false
	if i := bytes.Index(m, timeKey); i >= 0 {
		rest := m[i+len(timeKey):]
		if j := bytes.IndexByte(rest, '"'); j > 0 {
			t, err := time.Parse(time.RFC3339Nano, string(rest[:j]))
			if k := bytes.Index(m, durKey); err == nil && k >= 0 {
				num := m[k+len(durKey):]
				end := bytes.IndexAny(num, ",}")
				if end > 0 {
					ms, err := strconv.ParseFloat(string(num[:end]), 64)
					if err == nil {
						lat = now.Sub(t.Add(time.Duration(ms * float64(time.Millisecond))))
						ok = true
					}
				}
			}
		}
	}
	v.mu.Lock()
	v.events++
	if ok {
		v.lat = append(v.lat, lat)
	}
	v.mu.Unlock()
}
