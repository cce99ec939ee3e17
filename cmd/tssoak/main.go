// Command tssoak runs `tetrascope serve` under a long load of many open,
// slow and idle tunnels and checks that its goroutines, file descriptors
// and memory come back to where they started once the load is gone
// (issue 9). It is not part of the test run: it takes minutes.
//
//	go run ./cmd/tssoak                            # 1000 tunnels for 2 minutes
//	go run ./cmd/tssoak -gcwait 8m                 # and until the pooled pipes close
//	go run ./cmd/tssoak -tunnels 200 -duration 20s # a quick look
//
// It starts, all on 127.0.0.1: a TLS origin that echoes what it gets, the
// binary (built from ./cmd/tetrascope unless -tetrascope names one) with a
// fresh database, the tunnels (half of them send a little every few
// seconds, half stay silent), a churn of short downloads, and websocket
// viewers of the live stream that never read, which the page must drop
// rather than buffer for. It samples the process from /metrics and /proc
// before, during and after the load, prints the table, and exits 1 when
// goroutines or file descriptors did not come back. docs/security.md shows
// a run.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// host is the definition server's name; the binary maps it to loopback.
const host = "tetra-defs.amp.cisco.com"

type options struct {
	tunnels  int
	duration time.Duration
	every    time.Duration // sampling interval during the load
	churn    int           // short downloads per second during the load
	viewers  int
	settle   time.Duration // wait after the load before the "after" sample
	gcWait   time.Duration // then wait at most this for the pooled pipes to close
	bin      string
	keep     bool
}

func main() {
	var o options
	flag.IntVar(&o.tunnels, "tunnels", 1000, "tunnels held open at once")
	flag.DurationVar(&o.duration, "duration", 2*time.Minute, "how long the tunnels stay open")
	flag.DurationVar(&o.every, "sample", 15*time.Second, "sampling interval during the load")
	flag.IntVar(&o.churn, "churn", 20, "short downloads per second during the load")
	flag.IntVar(&o.viewers, "viewers", 4, "websocket viewers that never read")
	flag.DurationVar(&o.settle, "settle", 20*time.Second,
		"wait after the load before the \"after\" sample")
	flag.DurationVar(&o.gcWait, "gcwait", 0, "then sample every 30 s until the splice pipes Go pools "+
		"are closed by its garbage collector, for at most this long (a few minutes)")
	flag.StringVar(&o.bin, "tetrascope", "", "the binary to run (default: build ./cmd/tetrascope)")
	flag.BoolVar(&o.keep, "keep", false, "keep the working directory (database and log)")
	flag.Parse()
	if o.tunnels < 2 || o.duration <= 0 || o.every <= 0 || o.churn < 0 || o.viewers < 0 {
		fmt.Fprintln(os.Stderr, "tssoak: -tunnels needs at least 2, and durations must be positive")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tssoak:", err)
		os.Exit(1)
	}
	if !ok {
		os.Exit(1)
	}
}

// run does the whole soak and reports whether the process came back to
// its baseline.
func run(ctx context.Context, o options) (bool, error) {
	raiseFileLimit()
	dir, err := os.MkdirTemp("", "tssoak-")
	if err != nil {
		return false, err
	}
	if o.keep {
		fmt.Fprintln(os.Stderr, "tssoak: working directory", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if o.bin == "" {
		if o.bin, err = build(dir); err != nil {
			return false, err
		}
	}

	org, err := startOrigin()
	if err != nil {
		return false, err
	}
	defer org.close()
	// Idle tunnels must outlive the run: the proxy's idle timeout is
	// tested elsewhere, here they must stay.
	idle := o.duration + 2*time.Minute
	p, err := startServe(o.bin, dir, org.port, idle)
	if err != nil {
		return false, err
	}
	defer p.stop()
	fmt.Fprintf(os.Stderr, "tssoak: tetrascope pid %d, proxy %s, page %s; log %s\n",
		p.cmd.Process.Pid, p.proxy, p.ui, p.log)

	ld := &load{o: o, p: p, org: org}
	var table []sample

	// Baseline: after a few downloads, so that what is made once (the
	// store's statements, pools) exists before the first sample.
	for range 20 {
		if err := ld.download(); err != nil {
			return false, fmt.Errorf("warm-up download: %w", err)
		}
	}
	sleep(ctx, 5*time.Second)
	table = append(table, p.sample("before"))

	start := time.Now()
	if err := ld.open(ctx); err != nil {
		ld.closeAll()
		return false, err
	}
	table = append(table, p.sample(fmt.Sprintf("%d open", len(ld.tunnels))))

	loadCtx, stopLoad := context.WithTimeout(ctx, o.duration)
	var wg sync.WaitGroup
	ld.run(loadCtx, &wg)
	tick := time.NewTicker(o.every)
	for loadCtx.Err() == nil {
		select {
		case <-loadCtx.Done():
		case <-tick.C:
			table = append(table, p.sample(fmt.Sprintf("load %s", time.Since(start).Round(time.Second))))
		}
	}
	tick.Stop()
	stopLoad()
	wg.Wait()
	table = append(table, p.sample("load end"))

	ld.closeAll()
	closed := time.Now()
	if !waitFor(time.Minute, func() bool { return p.metric("tetrascope_open_tunnels") == 0 }) {
		fmt.Fprintln(os.Stderr, "tssoak: tunnels still open a minute after the clients left")
	}
	sleep(ctx, o.settle)
	table = append(table, p.sample("after"))
	for end := time.Now().Add(o.gcWait); time.Now().Before(end) && ctx.Err() == nil; {
		last := table[len(table)-1]
		if last.pipes <= table[0].pipes+slackFDs {
			break
		}
		sleep(ctx, 30*time.Second)
		table = append(table, p.sample(fmt.Sprintf("after %s",
			time.Since(closed).Round(time.Second))))
	}

	printTable(os.Stdout, o, table, ld)
	return verdict(os.Stdout, o, table[0], table[len(table)-1]), ctx.Err()
}

// build compiles ./cmd/tetrascope of the module this program belongs to.
func build(dir string) (string, error) {
	root, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}").Output()
	if err != nil {
		return "", fmt.Errorf("finding the module (run tssoak from inside it): %w", err)
	}
	bin := filepath.Join(dir, "tetrascope")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/tetrascope")
	cmd.Dir = strings.TrimSpace(string(root))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building tetrascope: %w", err)
	}
	return bin, nil
}

// raiseFileLimit lifts this process's descriptor limit to its maximum: it
// holds both ends of every tunnel. The binary inherits it.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func waitFor(timeout time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(timeout); ; time.Sleep(200 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// origin is a TLS server for host that echoes what it reads, and answers
// "GET" with a small body and a close.
type origin struct {
	ln    net.Listener
	port  int
	roots *x509.CertPool
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]bool
}

func startOrigin() (*origin, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	o := &origin{ln: ln, port: ln.Addr().(*net.TCPAddr).Port, roots: x509.NewCertPool(),
		conns: map[net.Conn]bool{}}
	o.roots.AddCert(leaf)
	cfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der},
		PrivateKey: key, Leaf: leaf}}}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			o.track(c, true)
			o.wg.Add(1)
			go func() {
				defer o.wg.Done()
				defer o.track(c, false)
				o.serve(tls.Server(c, cfg))
			}()
		}
	}()
	return o, nil
}

func (o *origin) track(c net.Conn, open bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if open {
		o.conns[c] = true
	} else {
		delete(o.conns, c)
		c.Close()
	}
}

func (o *origin) serve(c *tls.Conn) {
	buf := make([]byte, 512)
	for {
		n, err := c.Read(buf)
		if n > 0 && strings.HasPrefix(string(buf[:n]), "GET ") {
			body := strings.Repeat("d", 16<<10)
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
				len(body), body)
			_ = c.CloseWrite()
			_, _ = io.Copy(io.Discard, c)
			return
		}
		if n > 0 {
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (o *origin) close() {
	o.ln.Close()
	o.mu.Lock()
	for c := range o.conns {
		c.Close()
	}
	o.mu.Unlock()
	o.wg.Wait()
}

// load is the clients: the long tunnels, the churn and the viewers.
type load struct {
	o   options
	p   *proc
	org *origin

	tunnels []*tls.Conn
	viewers []net.Conn

	downloads, failures, pings atomic.Int64
}

// dialTunnel opens a tunnel through the proxy and completes the TLS
// handshake with the origin.
func (l *load) dialTunnel() (*tls.Conn, error) {
	c, err := net.DialTimeout("tcp", l.p.proxy, 10*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n", host, l.org.port, host, l.org.port)
	// The answer is one short line and a blank line; read it byte by byte
	// so that nothing of the tunnel is taken with it.
	var head []byte
	b := make([]byte, 1)
	for !strings.HasSuffix(string(head), "\r\n\r\n") {
		if _, err := c.Read(b); err != nil {
			c.Close()
			return nil, fmt.Errorf("reading the CONNECT answer: %w", err)
		}
		head = append(head, b[0])
		if len(head) > 4096 {
			c.Close()
			return nil, errors.New("CONNECT answer too long")
		}
	}
	if !strings.HasPrefix(string(head), "HTTP/1.1 200") {
		c.Close()
		return nil, fmt.Errorf("CONNECT answered %q", strings.SplitN(string(head), "\r\n", 2)[0])
	}
	tc := tls.Client(c, &tls.Config{ServerName: host, RootCAs: l.org.roots})
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	_ = c.SetDeadline(time.Time{})
	return tc, nil
}

// download runs one short definition download in a tunnel of its own.
func (l *load) download() error {
	tc, err := l.dialTunnel()
	if err != nil {
		return err
	}
	defer tc.Close()
	_ = tc.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(tc, "GET /defs HTTP/1.1\r\nHost: %s\r\n\r\n", host)
	n, err := io.Copy(io.Discard, tc)
	if err != nil || n < 16<<10 {
		return fmt.Errorf("download: %d bytes, %v", n, err)
	}
	return nil
}

// open opens the tunnels, at most 50 handshakes at a time.
func (l *load) open(ctx context.Context) error {
	l.tunnels = make([]*tls.Conn, l.o.tunnels)
	sem := make(chan struct{}, 50)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for i := range l.tunnels {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			tc, err := l.dialTunnel()
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil {
				first = fmt.Errorf("opening tunnel %d: %w", i, err)
			}
			l.tunnels[i] = tc
		}()
	}
	wg.Wait()
	for range l.o.viewers {
		v, err := l.p.silentViewer()
		if err != nil && first == nil {
			first = fmt.Errorf("opening a viewer: %w", err)
		}
		if v != nil {
			l.viewers = append(l.viewers, v)
		}
	}
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// run keeps the load going until ctx is done: every other tunnel sends a
// ping every 5 s (spread over the interval) and reads its echo; the churn
// runs short downloads.
func (l *load) run(ctx context.Context, wg *sync.WaitGroup) {
	for i, tc := range l.tunnels {
		if i%2 == 1 || tc == nil {
			continue // the silent half
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			offset := time.Duration(i) * 5 * time.Second / time.Duration(len(l.tunnels))
			t := time.NewTimer(offset)
			defer t.Stop()
			msg := []byte("ping " + strings.Repeat("p", 59))
			buf := make([]byte, len(msg))
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				_ = tc.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err := tc.Write(msg); err != nil {
					l.failures.Add(1)
					return
				}
				if _, err := io.ReadFull(tc, buf); err != nil {
					l.failures.Add(1)
					return
				}
				l.pings.Add(1)
				t.Reset(5 * time.Second)
			}
		}()
	}
	if l.o.churn == 0 {
		return
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second / time.Duration(l.o.churn))
		defer t.Stop()
		var inner sync.WaitGroup
		defer inner.Wait()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			inner.Add(1)
			go func() {
				defer inner.Done()
				if err := l.download(); err != nil {
					l.failures.Add(1)
				} else {
					l.downloads.Add(1)
				}
			}()
		}
	}()
}

func (l *load) closeAll() {
	for _, tc := range l.tunnels {
		if tc != nil {
			tc.Close()
		}
	}
	for _, v := range l.viewers {
		v.Close()
	}
}
