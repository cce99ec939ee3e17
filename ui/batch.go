package ui

import (
	"bufio"
	"net"
	"net/http"
	"time"
)

// coalesce is how long a viewer's writer waits after a live message for
// more to come, so that a busy stream costs one write system call for many
// messages instead of one each. It is far below the 50 ms an event may take
// to reach the page.
const coalesce = 4 * time.Millisecond

// batchConn buffers what the websocket writes until flush. Every write to a
// viewer happens on the viewer's own goroutine, so it needs no lock.
type batchConn struct {
	net.Conn
	w *bufio.Writer
}

func (c *batchConn) Write(p []byte) (int, error) { return c.w.Write(p) }

func (c *batchConn) flush() error { return c.w.Flush() }

// batchWriter hands the websocket upgrader a buffered connection when it
// takes the HTTP connection over.
type batchWriter struct {
	http.ResponseWriter
	conn *batchConn
}

func (b *batchWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(b.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	b.conn = &batchConn{Conn: c, w: bufio.NewWriterSize(c, 32<<10)}
	return b.conn, rw, nil
}
