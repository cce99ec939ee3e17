package main

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// connLife bounds how long the origin keeps any one connection, so that
// nothing outlives a run even when a client never closes.
const connLife = 10 * time.Minute

// getBodySize is the body of the plain-HTTP answer.
const getBodySize = 2048

// origin is the loopback server side of every scenario, one listener per
// kind of answer so that nothing on the wire has to say which scenario it
// belongs to.
type origin struct {
	tr *transcript

	bulk  net.Listener // handshake, then bulkSize bytes of application data
	cycle net.Listener // handshake, one 1 KiB record, wait for the close
	idle  net.Listener // handshake, then nothing until the client closes
	http  net.Listener // plain HTTP/1.1, keep-alive, a 2 KiB body

	// bulkSize is what a bulk connection sends after the handshake;
	// negative: until the client goes away.
	bulkSize atomic.Int64

	zeros    []byte
	response []byte
	wg       sync.WaitGroup
}

func startOrigin(tr *transcript) (*origin, error) {
	o := &origin{tr: tr, zeros: make([]byte, 1<<20)}
	body := bytes.Repeat([]byte("x"), getBodySize)
	o.response = append([]byte("HTTP/1.1 200 OK\r\nContent-Type: application/pkix-crl\r\n"+
		"Content-Length: "+strconv.Itoa(getBodySize)+"\r\n\r\n"), body...)

	for _, l := range []struct {
		ln    *net.Listener
		serve func(net.Conn)
	}{
		{&o.bulk, o.serveBulk},
		{&o.cycle, o.serveCycle},
		{&o.idle, o.serveIdle},
		{&o.http, o.serveHTTP},
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			o.close()
			return nil, err
		}
		*l.ln = ln
		o.wg.Add(1)
		go o.accept(ln, l.serve)
	}
	return o, nil
}

func (o *origin) accept(ln net.Listener, serve func(net.Conn)) {
	defer o.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // out of descriptors: back off
			continue
		}
		_ = c.SetDeadline(time.Now().Add(connLife))
		go func() {
			defer c.Close()
			serve(c)
		}()
	}
}

func (o *origin) close() {
	for _, ln := range []net.Listener{o.bulk, o.cycle, o.idle, o.http} {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

func port(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

func (o *origin) serveBulk(c net.Conn) {
	buf := make([]byte, o.tr.bufSize())
	if o.tr.handshakeServer(c, buf) != nil {
		return
	}
	left := o.bulkSize.Load()
	for left != 0 {
		p := o.zeros
		if left > 0 && int64(len(p)) > left {
			p = p[:left]
		}
		n, err := c.Write(p)
		if err != nil {
			return
		}
		if left > 0 {
			left -= int64(n)
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	_, _ = io.Copy(io.Discard, c)
}

func (o *origin) serveCycle(c net.Conn) {
	buf := make([]byte, o.tr.bufSize())
	if o.tr.handshakeServer(c, buf) != nil {
		return
	}
	if _, err := c.Write(o.tr.appData); err != nil {
		return
	}
	// The client closes first, as an endpoint does after its download.
	_, _ = c.Read(buf)
}

func (o *origin) serveIdle(c net.Conn) {
	buf := make([]byte, o.tr.bufSize())
	if o.tr.handshakeServer(c, buf) != nil {
		return
	}
	_, _ = io.Copy(io.Discard, c)
}

// serveHTTP answers every request of a keep-alive connection with the same
// 2 KiB body. It reads only request heads: the load sends GETs.
func (o *origin) serveHTTP(c net.Conn) {
	br := bufio.NewReaderSize(c, 4096)
	for {
		if err := skipHead(br); err != nil {
			return
		}
		if _, err := c.Write(o.response); err != nil {
			return
		}
	}
}

// skipHead reads one HTTP message head up to its empty line.
func skipHead(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 && (len(line) == 1 || line[0] == '\r') {
			return nil
		}
	}
}
