package proxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/resolve"
)

// handshake is a TLS 1.3 handshake recorded once, in the order it was
// written: the client's hello, the server's flight, the client's Finished
// and one record of application data from the server. Replaying it costs
// neither end any cryptography, while the proxy watches real records.
type handshake struct {
	flights [4][]byte
}

// flightConn notes what is written on one side of a recorded handshake.
type flightConn struct {
	net.Conn
	client bool
	mu     *sync.Mutex
	log    *[]flightPart
}

type flightPart struct {
	client bool
	data   []byte
}

func (c *flightConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if n := len(*c.log); n > 0 && (*c.log)[n-1].client == c.client {
		(*c.log)[n-1].data = append((*c.log)[n-1].data, p...)
	} else {
		*c.log = append(*c.log, flightPart{c.client, append([]byte(nil), p...)})
	}
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func recordHandshake(tb testing.TB, name string) *handshake {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}

	var (
		mu  sync.Mutex
		log []flightPart
	)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	srv := tls.Server(&flightConn{Conn: b, mu: &mu, log: &log}, &tls.Config{
		Certificates:           []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		MinVersion:             tls.VersionTLS13,
		SessionTicketsDisabled: true,
	})
	cli := tls.Client(&flightConn{Conn: a, client: true, mu: &mu, log: &log}, &tls.Config{
		ServerName: name, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13,
	})
	errc := make(chan error, 1)
	go func() {
		if err := srv.Handshake(); err != nil {
			errc <- err
			return
		}
		_, err := srv.Write(make([]byte, 1024))
		errc <- err
	}()
	if err := cli.Handshake(); err != nil {
		tb.Fatal(err)
	}
	if _, err := io.ReadFull(cli, make([]byte, 1024)); err != nil {
		tb.Fatal(err)
	}
	if err := <-errc; err != nil {
		tb.Fatal(err)
	}
	if len(log) != 4 {
		tb.Fatalf("recorded %d flights, want 4", len(log))
	}
	h := &handshake{}
	for i, f := range log {
		h.flights[i] = f.data
	}
	return h
}

// replayOrigin plays the server's part of h on every connection, then
// waits for the client to close.
func replayOrigin(tb testing.TB, h *handshake) int {
	tb.Helper()
	return serveLoopback(tb, func(c net.Conn) {
		buf := make([]byte, 16<<10)
		if _, err := io.ReadFull(c, buf[:len(h.flights[0])]); err != nil {
			return
		}
		if _, err := c.Write(h.flights[1]); err != nil {
			return
		}
		if _, err := io.ReadFull(c, buf[:len(h.flights[2])]); err != nil {
			return
		}
		if _, err := c.Write(h.flights[3]); err != nil {
			return
		}
		_, _ = c.Read(buf)
	})
}

// tallyRecorder counts events and those not ok, and keeps nothing.
type tallyRecorder struct{ done, notOK atomic.Int64 }

func (r *tallyRecorder) Open(*inspect.Event) {}

func (r *tallyRecorder) Done(ev *inspect.Event) {
	r.done.Add(1)
	if ev.Outcome != inspect.OK {
		r.notOK.Add(1)
	}
}

// BenchmarkConnectCycle runs what an endpoint does for every download, with
// a few clients at once: CONNECT, read the 200, the TLS handshake, 1 KiB
// of application data from the origin, close. Client, proxy and origin
// share the process, so ns/op is the cost of all three; the proxy's share
// shows in a CPU profile (-cpuprofile) under the proxy package.
func BenchmarkConnectCycle(b *testing.B) {
	const host = "tetra-defs.amp.cisco.com"
	h := recordHandshake(b, host)
	port := replayOrigin(b, h)
	res, err := resolve.New(map[string][]netip.Addr{host: {netip.MustParseAddr("127.0.0.1")}},
		nil, time.Second)
	if err != nil {
		b.Fatal(err)
	}
	cat, err := inspect.NewCatalog(inspect.DefaultTetraHosts, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	rec := &tallyRecorder{}
	s, err := New(Config{
		Listen: "127.0.0.1:0", Sensor: "bench", AllowPorts: []int{port},
		AllowClients: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	}, Deps{Resolver: res, Catalog: cat, Recorder: rec})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	addr := s.Addr().String()
	connect := []byte(fmt.Sprintf("CONNECT %s:%d HTTP/1.1\r\nHost: %[1]s:%[2]d\r\n\r\n", host, port))

	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		buf := make([]byte, 16<<10)
		for pb.Next() {
			if err := cycle(addr, connect, h, buf); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	for deadline := time.Now().Add(5 * time.Second); rec.done.Load() < int64(b.N); {
		if time.Now().After(deadline) {
			b.Fatalf("%d events for %d cycles", rec.done.Load(), b.N)
		}
		time.Sleep(time.Millisecond)
	}
	if n := rec.notOK.Load(); n > 0 {
		b.Fatalf("%d of %d cycles were not ok", n, b.N)
	}
}

func cycle(addr string, connect []byte, h *handshake, buf []byte) error {
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write(connect); err != nil {
		return err
	}
	const ok = "HTTP/1.1 200 Connection established\r\n\r\n"
	if _, err := io.ReadFull(c, buf[:len(ok)]); err != nil {
		return err
	}
	if string(buf[:len(ok)]) != ok {
		return fmt.Errorf("CONNECT answered %q", buf[:len(ok)])
	}
	if _, err := c.Write(h.flights[0]); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, buf[:len(h.flights[1])]); err != nil {
		return err
	}
	if _, err := c.Write(h.flights[2]); err != nil {
		return err
	}
	_, err = io.ReadFull(c, buf[:len(h.flights[3])])
	return err
}
