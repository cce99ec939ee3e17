package tlsrec_test

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/tetrascope/tetrascope/inspect/tlsrec"
)

// relay copies one direction of a tunnel, feeding the tracker until that
// direction needs no more inspection, then leaves the rest to io.Copy (which
// can splice between TCP connections). Bytes are fed before they are
// written, so that the peer's answer cannot be fed before them.
func relay(dst io.Writer, src io.Reader, tr *tlsrec.Tracker, dir tlsrec.Direction) (int64, error) {
	buf := make([]byte, 32<<10)
	var n int64
	for !tr.Done(dir) {
		k, err := src.Read(buf)
		if k > 0 {
			tr.Feed(dir, buf[:k])
			w, werr := dst.Write(buf[:k])
			n += int64(w)
			if werr != nil {
				return n, werr
			}
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
	m, err := io.Copy(dst, src)
	return n + m, err
}

func Example() {
	var tr tlsrec.Tracker
	var server bytes.Buffer
	request := "GET / HTTP/1.1\r\nHost: example\r\n\r\n"
	n, _ := relay(&server, strings.NewReader(request), &tr, tlsrec.ClientToServer)

	r := tr.Result()
	fmt.Println("relayed:", n, "inspected:", r.BytesSeen[tlsrec.ClientToServer])
	fmt.Println("not TLS:", r.NotTLS, "server side done:", tr.Done(tlsrec.ServerToClient))
	// Output:
	// relayed: 33 inspected: 1
	// not TLS: true server side done: true
}
