package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Go clients for what curl cannot do: a TLS ClientHello that arrives a byte
// at a time or in several records, and raw bytes that are not HTTP.

// clientTimeout bounds each Go client exchange.
const clientTimeout = 10 * time.Second

// dialTunnel connects to the proxy at proxyAddr and asks it for a tunnel to
// target (host:port). It returns the connection, ready for the tunnel's
// bytes, with the proxy's status; on a status other than 200 the
// connection is closed and nil.
func dialTunnel(proxyAddr, target string) (net.Conn, int, error) {
	c, err := net.DialTimeout("tcp", proxyAddr, clientTimeout)
	if err != nil {
		return nil, 0, fmt.Errorf("dialing proxy: %w", err)
	}
	c.(*net.TCPConn).SetNoDelay(true)
	c.SetDeadline(time.Now().Add(clientTimeout))

	req := fmt.Sprintf("CONNECT %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tetrascope-e2e\r\n\r\n",
		target, target)
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, 0, fmt.Errorf("writing CONNECT: %w", err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return nil, 0, fmt.Errorf("reading CONNECT response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, resp.StatusCode, nil
	}
	c.SetDeadline(time.Time{})
	// Bytes the proxy sent behind its answer stay in br; read through it.
	return &bufConn{Conn: c, r: br}, resp.StatusCode, nil
}

// bufConn reads through a buffered reader that may hold bytes already read
// from the connection.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// CloseWrite half-closes the underlying TCP connection.
func (c *bufConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// slowConn writes one byte per Write call on the underlying connection,
// with a short pause between bytes, until Fast is called: each byte leaves
// in its own TCP segment (TCP_NODELAY is Go's default and dialTunnel sets
// it).
type slowConn struct {
	net.Conn
	fast   atomic.Bool
	writes atomic.Int64 // single-byte writes made
}

func (c *slowConn) Write(p []byte) (int, error) {
	if c.fast.Load() {
		return c.Conn.Write(p)
	}
	for i := range p {
		if _, err := c.Conn.Write(p[i : i+1]); err != nil {
			return i, err
		}
		c.writes.Add(1)
		time.Sleep(100 * time.Microsecond)
	}
	return len(p), nil
}

// Fast makes later writes go out whole.
func (c *slowConn) Fast() { c.fast.Store(true) }

// splitHelloConn rewrites the first TLS record written (the ClientHello) as
// parts records carrying consecutive pieces of the same handshake message,
// as TLS allows; later writes pass through.
type splitHelloConn struct {
	net.Conn
	parts int

	done    bool
	pending []byte
	records int // records the ClientHello was sent in
}

func (c *splitHelloConn) Write(p []byte) (int, error) {
	if c.done {
		return c.Conn.Write(p)
	}
	c.pending = append(c.pending, p...)
	if len(c.pending) < 5 {
		return len(p), nil
	}
	n := int(binary.BigEndian.Uint16(c.pending[3:5]))
	if len(c.pending) < 5+n {
		return len(p), nil
	}

	hdr, payload, rest := c.pending[:3], c.pending[5:5+n], c.pending[5+n:]
	chunk := (n + c.parts - 1) / c.parts
	var out []byte
	for i := 0; i < n; i += chunk {
		end := min(i+chunk, n)
		out = append(out, hdr...)
		out = binary.BigEndian.AppendUint16(out, uint16(end-i))
		out = append(out, payload[i:end]...)
		c.records++
	}
	out = append(out, rest...)
	c.done, c.pending = true, nil
	if _, err := c.Conn.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

// fetchOverTLS runs a TLS handshake for host over conn with roots as the
// trust anchors, calling afterHandshake once it completes, then GETs path
// and reads the whole body. It closes the connection (close_notify, then
// FIN) before returning.
func fetchOverTLS(conn net.Conn, host string, roots *x509.CertPool, path string,
	afterHandshake func()) (tls.ConnectionState, int, []byte, error) {
	tc := tls.Client(conn, &tls.Config{
		ServerName: host, RootCAs: roots, NextProtos: []string{"http/1.1"},
	})
	defer tc.Close()
	conn.SetDeadline(time.Now().Add(clientTimeout))

	ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		return tls.ConnectionState{}, 0, nil, fmt.Errorf("tls handshake: %w", err)
	}
	if afterHandshake != nil {
		afterHandshake()
	}
	st := tc.ConnectionState()

	req := fmt.Sprintf("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tetrascope-e2e\r\n\r\n", path, host)
	if _, err := io.WriteString(tc, req); err != nil {
		return st, 0, nil, fmt.Errorf("writing request: %w", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		return st, 0, nil, fmt.Errorf("reading response: %w", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return st, resp.StatusCode, b, fmt.Errorf("reading body: %w", err)
	}
	return st, resp.StatusCode, b, nil
}

// rawExchange writes payload to addr and returns the first line of the
// answer, without its line ending.
func rawExchange(addr, payload string) (string, error) {
	return rawExchangeFrom("", addr, payload)
}
