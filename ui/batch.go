package ui

import (
	"bufio"
	"net"
	"net/http"
)

// batchConn buffers what is written to a viewer until flush, so that a busy
// stream costs one write system call for many messages instead of one
// each. Every write to a viewer happens on one goroutine at a time (the
// stream handler's: catch-up, then writeLoop, then the close), so it needs
// no lock.
type batchConn struct {
	net.Conn
	w *bufio.Writer
}

func (c *batchConn) Write(p []byte) (int, error) { return c.w.Write(p) }

// write adds a whole websocket frame built beforehand.
func (c *batchConn) write(frame []byte) error {
	_, err := c.w.Write(frame)
	return err
}

func (c *batchConn) flush() error { return c.w.Flush() }

// batchSize is a viewer's write buffer: what twenty milliseconds of a busy
// stream (4,000 messages a second) make, so that they go out in one write.
const batchSize = 64 << 10

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
	b.conn = &batchConn{Conn: c, w: bufio.NewWriterSize(c, batchSize)}
	return b.conn, rw, nil
}
