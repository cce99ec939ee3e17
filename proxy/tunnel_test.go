package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// TestTunnelIdleTimeout: a tunnel where nothing moves is closed after
// timeouts.idle; one where only the server speaks, now and then, is not,
// though the client's side stays silent all along.
func TestTunnelIdleTimeout(t *testing.T) {
	const idle = time.Second
	origin := serveLoopback(t, func(c net.Conn) {
		var first [1]byte
		if _, err := c.Read(first[:]); err != nil || first[0] != 't' {
			return // the quiet tunnel: wait for the close
		}
		// The talking tunnel: a byte every tenth of a second
		// for twice the idle timeout, then the end.
		for range int(2 * idle / (100 * time.Millisecond)) {
			time.Sleep(100 * time.Millisecond)
			if _, err := c.Write([]byte("x")); err != nil {
				return
			}
		}
	})
	f := startWith(t, Config{AllowPorts: []int{origin}, IdleTimeout: idle},
		"tetra-defs.amp.cisco.com")

	open := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", f.proxyURL.Host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "CONNECT tetra-defs.amp.cisco.com:%d HTTP/1.1\r\nHost: x\r\n\r\n", origin)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("answer %v, %v; want 200", resp, err)
		}
		return c, br
	}

	t.Run("quiet", func(t *testing.T) {
		c, br := open()
		_, _ = io.Copy(io.Discard, br) // ends with the proxy's reset
		c.Close()
		if ev := f.rec.next(t); ev.Close != inspect.IdleTimeout {
			t.Errorf("event %+v; want close idle_timeout", ev)
		}
	})

	t.Run("server talks", func(t *testing.T) {
		c, br := open()
		if _, err := c.Write([]byte("t")); err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, br)
		c.Close()
		ev := f.rec.next(t)
		if want := int64(2 * idle / (100 * time.Millisecond)); n != want || err != nil ||
			ev.Close != inspect.ServerFIN {
			t.Errorf("read %d bytes (%v), event %+v; want %d bytes and close server_fin",
				n, err, ev, want)
		}
	})
}
