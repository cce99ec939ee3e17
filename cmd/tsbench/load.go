package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The target names of the scenarios. tetrascope maps them to 127.0.0.1
// with --resolve and Squid with its hosts_file; the bare relay dials
// 127.0.0.1 whatever the name. They are endpoint names of the catalog, so
// tetrascope classifies and stores every event.
const (
	hostBulk  = "tetra-defs.amp.cisco.com"
	hostCycle = "tetra-defs.eu.amp.cisco.com"
	hostIdle  = "tetra-defs.apjc.amp.cisco.com"
	hostGet   = "crl.identrust.com"
)

// ioWait bounds every read and write of the load, so that a stuck proxy
// fails the scenario instead of hanging the run.
const ioWait = 30 * time.Second

// target is where the load connects: a proxy, or the origin itself.
type target struct {
	proxy string // host:port; empty: direct to the origin
}

// tunnel opens a connection to host:port through the proxy with CONNECT and
// returns it with the setup time, from CONNECT sent to 200 read. Direct, it
// dials the origin and the setup time is the dial's.
func (t target) tunnel(host string, port int) (*net.TCPConn, time.Duration, error) {
	if t.proxy == "" {
		start := time.Now()
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), ioWait)
		if err != nil {
			return nil, 0, err
		}
		_ = c.SetDeadline(time.Now().Add(ioWait))
		return c.(*net.TCPConn), time.Since(start), nil
	}

	c, err := net.DialTimeout("tcp", t.proxy, ioWait)
	if err != nil {
		return nil, 0, err
	}
	tc := c.(*net.TCPConn)
	_ = tc.SetDeadline(time.Now().Add(ioWait))
	hp := net.JoinHostPort(host, strconv.Itoa(port))
	req := "CONNECT " + hp + " HTTP/1.1\r\nHost: " + hp + "\r\n\r\n"

	start := time.Now()
	if _, err := tc.Write([]byte(req)); err != nil {
		tc.Close()
		return nil, 0, fmt.Errorf("sending CONNECT: %w", err)
	}
	if err := readConnectAnswer(tc); err != nil {
		tc.Close()
		return nil, 0, err
	}
	return tc, time.Since(start), nil
}

// readConnectAnswer reads the proxy's answer to a CONNECT up to its empty
// line. Nothing may follow it: the origin speaks only when spoken to.
func readConnectAnswer(c net.Conn) error {
	var buf [1024]byte
	n := 0
	for {
		m, err := c.Read(buf[n:])
		n += m
		if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 {
			if !bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 200")) &&
				!bytes.HasPrefix(buf[:n], []byte("HTTP/1.0 200")) {
				line, _, _ := bytes.Cut(buf[:n], []byte("\r\n"))
				return fmt.Errorf("CONNECT answered %q", line)
			}
			if i+4 != n {
				return errors.New("bytes after the CONNECT answer")
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the CONNECT answer: %w", err)
		}
		if n == len(buf) {
			return errors.New("CONNECT answer too long")
		}
	}
}

// bulkResult is one bulk download.
type bulkResult struct {
	bytes int64
	dur   time.Duration // from the end of the handshake to the last byte
}

// runBulk downloads size bytes through one tunnel, after the handshake. A
// negative size downloads until until, then closes.
func runBulk(t target, o *origin, size int64, until time.Time) (bulkResult, error) {
	o.bulkSize.Store(size)
	c, _, err := t.tunnel(hostBulk, port(o.bulk))
	if err != nil {
		return bulkResult{}, err
	}
	defer c.Close()
	if err := o.tr.handshakeClient(c, make([]byte, o.tr.bufSize())); err != nil {
		return bulkResult{}, err
	}
	buf := make([]byte, 1<<20)
	start := time.Now()
	var n int64
	for size < 0 || n < size {
		_ = c.SetReadDeadline(time.Now().Add(ioWait))
		m, err := c.Read(buf)
		n += int64(m)
		if err != nil {
			if err == io.EOF && size >= 0 {
				return bulkResult{n, time.Since(start)},
					fmt.Errorf("stream ended after %d of %d bytes", n, size)
			}
			return bulkResult{n, time.Since(start)}, err
		}
		if size < 0 && time.Now().After(until) {
			break
		}
	}
	return bulkResult{n, time.Since(start)}, nil
}

// cycleResult is a run of CONNECT cycles.
type cycleResult struct {
	n, errs int
	first   error
	setup   []time.Duration // per cycle, CONNECT sent to 200 read
	elapsed time.Duration
}

// runCycles runs CONNECT + handshake + 1 KiB + close with clients workers
// for d. With rate > 0, cycles start on a fixed schedule of rate per
// second instead of as fast as possible. A cycle under way at the end
// finishes and counts.
func runCycles(t target, o *origin, clients int, d time.Duration, rate float64) cycleResult {
	var (
		mu  sync.Mutex
		res cycleResult
		wg  sync.WaitGroup
		seq atomic.Int64
	)
	start := time.Now()
	deadline := start.Add(d)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, o.tr.bufSize())
			setup := make([]time.Duration, 0, 4096)
			n, errs := 0, 0
			var first error
			for {
				if rate > 0 {
					at := start.Add(time.Duration(float64(seq.Add(1)-1) / rate * float64(time.Second)))
					if at.After(deadline) {
						break
					}
					time.Sleep(time.Until(at))
				} else if time.Now().After(deadline) {
					break
				}
				lat, err := cycle(t, o, buf)
				if err != nil {
					errs++
					if first == nil {
						first = err
					}
					if errs > 100 && errs > n {
						break // the proxy is failing; do not spin
					}
					continue
				}
				n++
				setup = append(setup, lat)
			}
			mu.Lock()
			res.n += n
			res.errs += errs
			res.setup = append(res.setup, setup...)
			if res.first == nil {
				res.first = first
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

func cycle(t target, o *origin, buf []byte) (time.Duration, error) {
	c, lat, err := t.tunnel(hostCycle, port(o.cycle))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := o.tr.handshakeClient(c, buf); err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(c, buf[:len(o.tr.appData)]); err != nil {
		return 0, fmt.Errorf("reading the answer: %w", err)
	}
	return lat, nil
}

// percentile returns the p-th percentile (0..100) of sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

func sortDurations(d []time.Duration) { slices.Sort(d) }

// getResult is a run of plain-HTTP GETs.
type getResult struct {
	n, errs int
	first   error
	elapsed time.Duration
}

// runGets sends GETs for a 2 KiB body over clients keep-alive connections
// for d: through the proxy in absolute form, or straight to the origin.
func runGets(t target, o *origin, clients int, d time.Duration) getResult {
	hp := net.JoinHostPort(hostGet, strconv.Itoa(port(o.http)))
	addr, req := t.proxy, "GET http://"+hp+"/tetra.crl HTTP/1.1\r\nHost: "+hp+
		"\r\nUser-Agent: tsbench\r\nAccept: */*\r\n\r\n"
	if t.proxy == "" {
		addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port(o.http)))
		req = "GET /tetra.crl HTTP/1.1\r\nHost: " + hp + "\r\nUser-Agent: tsbench\r\nAccept: */*\r\n\r\n"
	}
	var (
		mu  sync.Mutex
		res getResult
		wg  sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, errs, first := getLoop(addr, []byte(req), deadline)
			mu.Lock()
			res.n += n
			res.errs += errs
			if res.first == nil {
				res.first = first
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

func getLoop(addr string, req []byte, deadline time.Time) (n, errs int, first error) {
	body := make([]byte, getBodySize)
	var c net.Conn
	var br *bufio.Reader
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for time.Now().Before(deadline) {
		if c == nil {
			var err error
			c, err = net.DialTimeout("tcp", addr, ioWait)
			if err != nil {
				errs++
				first = cmpErr(first, err)
				if errs > 100 && errs > n {
					return
				}
				continue
			}
			_ = c.SetDeadline(deadline.Add(ioWait))
			br = bufio.NewReaderSize(c, 8192)
		}
		err := get(c, br, req, body)
		if err != nil {
			errs++
			first = cmpErr(first, err)
			c.Close()
			c = nil
			if errs > 100 && errs > n {
				return
			}
			continue
		}
		n++
	}
	return
}

func cmpErr(first, err error) error {
	if first == nil {
		return err
	}
	return first
}

// get sends one request and reads its answer, which must be a 200 with a
// Content-Length of getBodySize.
func get(c net.Conn, br *bufio.Reader, req, body []byte) error {
	if _, err := c.Write(req); err != nil {
		return err
	}
	status, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200")) &&
		!bytes.HasPrefix(status, []byte("HTTP/1.0 200")) {
		return fmt.Errorf("GET answered %q", bytes.TrimSpace(status))
	}
	length := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if ok && len(k) == len("Content-Length") &&
			bytes.EqualFold(k, []byte("Content-Length")) {
			length, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if length != getBodySize {
		return fmt.Errorf("GET answer has Content-Length %d, want %d", length, getBodySize)
	}
	_, err = io.ReadFull(br, body)
	return err
}

// openIdle opens n tunnels that complete the handshake and then stay idle,
// par at a time. It returns the open ones even when some failed.
func openIdle(t target, o *origin, n, par int) ([]*net.TCPConn, int, error) {
	var (
		mu    sync.Mutex
		conns = make([]*net.TCPConn, 0, n)
		errs  int
		first error
		wg    sync.WaitGroup
		next  atomic.Int64
	)
	for range par {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, o.tr.bufSize())
			for next.Add(1) <= int64(n) {
				c, _, err := t.tunnel(hostIdle, port(o.idle))
				if err == nil {
					err = o.tr.handshakeClient(c, buf)
					if err != nil {
						c.Close()
					}
				}
				mu.Lock()
				if err != nil {
					errs++
					first = cmpErr(first, err)
				} else {
					_ = c.SetDeadline(time.Now().Add(connLife))
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return conns, errs, first
}
