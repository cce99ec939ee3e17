package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
)

// runRelay is the baseline: the least a forward proxy can do. It reads the
// first request of a connection; for a CONNECT it dials, answers 200 and
// copies both ways between the two *net.TCPConn, which the kernel does by
// splice; for a plain request it sends that request to its origin and then
// copies the rest of the connection the same way (every later request of
// the connection goes to the same origin, which is all the benchmark
// needs). Every target is dialled on 127.0.0.1 whatever its name, so no
// lookup can leave the machine. It prints its address and serves until
// killed.
func runRelay(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("relay listening: %w", err)
	}
	fmt.Fprintln(os.Stdout, ln.Addr().String())
	for {
		c, err := ln.Accept()
		if err != nil {
			return fmt.Errorf("relay accepting: %w", err)
		}
		go relayConn(c.(*net.TCPConn))
	}
}

func relayConn(client *net.TCPConn) {
	defer client.Close()
	br := bufio.NewReader(client)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	_, port, err := net.SplitHostPort(req.Host)
	if err != nil {
		port = "80"
	}
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
	if err != nil {
		_, _ = client.Write([]byte("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"))
		return
	}
	server := c.(*net.TCPConn)
	defer server.Close()

	if req.Method == http.MethodConnect {
		_, err = client.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
	} else {
		err = req.Write(server)
	}
	if err == nil && br.Buffered() > 0 {
		early, _ := br.Peek(br.Buffered())
		_, err = server.Write(early)
	}
	if err != nil {
		return
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(server, client)
		_ = server.CloseWrite()
	}()
	_, _ = io.Copy(client, server)
	_ = client.CloseWrite()
	wg.Wait()
}
