package tlsrec

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// testHost and otherHost are only ever sent as SNI; nothing resolves them.
// They have the same length, so that one can replace the other in a
// ClientHello.
const (
	testHost  = "tetra-defs.amp.cisco.com"
	otherHost = "tetra-defs.xxx.cisco.com"
)

// testPKI is a CA with a server certificate, and a second CA with a client
// certificate the first CA does not know.
type testPKI struct {
	roots       *x509.CertPool
	caName      string // issuer of the server certificate, as crypto/x509 prints it
	leafName    string // subject of the server certificate
	serverCert  tls.Certificate
	clientCert  tls.Certificate // issued by the other CA
	clientRoots *x509.CertPool  // holds only the first CA
}

var (
	pkiOnce sync.Once
	pki     *testPKI
	pkiErr  error
)

func getPKI(tb testing.TB) *testPKI {
	tb.Helper()
	pkiOnce.Do(func() { pki, pkiErr = newPKI() })
	if pkiErr != nil {
		tb.Fatalf("making test certificates: %v", pkiErr)
	}
	return pki
}

func newPKI() (*testPKI, error) {
	ca, caKey, err := newCA("Tetrascope Test Root CA")
	if err != nil {
		return nil, err
	}
	other, otherKey, err := newCA("Somebody Else's CA")
	if err != nil {
		return nil, err
	}
	server, err := newLeaf(ca, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: testHost, Organization: []string{"Tetrascope Tests"}},
		DNSNames:    []string{testHost},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return nil, err
	}
	client, err := newLeaf(other, otherKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "connector-42"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, err
	}

	roots := x509.NewCertPool()
	roots.AddCert(ca)
	return &testPKI{
		roots:       roots,
		caName:      ca.Subject.String(),
		leafName:    server.Leaf.Subject.String(),
		serverCert:  server,
		clientCert:  client,
		clientRoots: roots,
	}, nil
}

func newCA(name string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Tetrascope"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func newLeaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, tmpl *x509.Certificate) (
	tls.Certificate, error,
) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl.SerialNumber = big.NewInt(2)
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// chunk is one Write of one side, in the order the writes happened.
type chunk struct {
	dir  Direction
	data []byte
}

// recorder keeps what both sides of a connection write. A write is recorded
// before it reaches the wire, so that the peer cannot answer it before it is
// in the record: the order of chunks is the order a proxy would feed them.
type recorder struct {
	mu     sync.Mutex
	chunks []chunk
}

func (r *recorder) add(dir Direction, p []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.chunks = append(r.chunks, chunk{dir, bytes.Clone(p)})
}

func (r *recorder) all() []chunk {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.chunks
}

type recordingConn struct {
	net.Conn
	dir Direction
	rec *recorder
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.rec.add(c.dir, p)
	return c.Conn.Write(p)
}

// capture is what crossed a real TLS connection.
type capture struct {
	chunks               []chunk
	clientErr, serverErr error
	resumed              bool
}

// handshake runs a crypto/tls client and server over loopback TCP and
// records what each writes. After a successful handshake the client sends
// "ping" and the server answers "pong", so every handshake record (session
// tickets included) is on the wire before both close.
func handshake(tb testing.TB, serverCfg, clientCfg *tls.Config) capture {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listening on loopback: %v", err)
	}
	defer ln.Close()
	rec := &recorder{}
	deadline := time.Now().Add(10 * time.Second)

	serverDone := make(chan error, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			serverDone <- err
			return
		}
		defer raw.Close()
		raw.SetDeadline(deadline)
		conn := tls.Server(&recordingConn{raw, ServerToClient, rec}, serverCfg)
		if err := conn.Handshake(); err != nil {
			serverDone <- err
			return
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(conn, buf); err != nil {
			serverDone <- err
			return
		}
		_, err = conn.Write([]byte("pong"))
		serverDone <- err
	}()

	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatalf("dialing loopback: %v", err)
	}
	raw.SetDeadline(deadline)
	conn := tls.Client(&recordingConn{raw, ClientToServer, rec}, clientCfg)
	var c capture
	c.clientErr = conn.Handshake()
	if c.clientErr == nil {
		c.resumed = conn.ConnectionState().DidResume
		c.clientErr = pingPong(conn)
	}
	conn.Close()
	c.serverErr = <-serverDone
	c.chunks = rec.all()
	return c
}

func pingPong(conn *tls.Conn) error {
	if _, err := conn.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	_, err := io.ReadFull(conn, buf)
	return err
}

// feeder feeds a transcript to a Tracker in one particular way. Every way
// keeps the order of the chunks across directions.
type feeder struct {
	name string
	feed func(tb testing.TB, tr *Tracker, chunks []chunk)
}

var feeders = []feeder{
	{"as_written", func(tb testing.TB, tr *Tracker, chunks []chunk) {
		for _, c := range chunks {
			feedChecked(tb, tr, c.dir, c.data)
		}
	}},
	{"byte_at_a_time", func(tb testing.TB, tr *Tracker, chunks []chunk) {
		for _, c := range chunks {
			for i := range c.data {
				feedChecked(tb, tr, c.dir, c.data[i:i+1])
			}
		}
	}},
	{"random_splits", func(tb testing.TB, tr *Tracker, chunks []chunk) {
		rng := mrand.New(mrand.NewPCG(1, 2))
		for _, c := range chunks {
			for p := c.data; len(p) > 0; {
				n := min(len(p), 1+rng.IntN(300))
				feedChecked(tb, tr, c.dir, p[:n])
				p = p[n:]
			}
		}
	}},
	{"coalesced", func(tb testing.TB, tr *Tracker, chunks []chunk) {
		for _, c := range coalesce(chunks) {
			feedChecked(tb, tr, c.dir, c.data)
		}
	}},
}

// feedChecked feeds p and checks the promises of Feed: done is sticky, agrees
// with Done, and bytes fed after done are not counted.
func feedChecked(tb testing.TB, tr *Tracker, dir Direction, p []byte) {
	tb.Helper()
	wasDone := tr.Done(dir)
	before := bytesSeen(tr, dir)
	done := tr.Feed(dir, p)
	after := bytesSeen(tr, dir)
	switch {
	case wasDone && !done:
		tb.Fatalf("Feed(%v) = false after it was done", dir)
	case done != tr.Done(dir):
		tb.Fatalf("Feed(%v) = %v, Done = %v", dir, done, tr.Done(dir))
	case wasDone && after != before:
		tb.Fatalf("BytesSeen[%v] grew from %d to %d after done", dir, before, after)
	case after-before > int64(len(p)):
		tb.Fatalf("BytesSeen[%v] grew by %d for %d bytes", dir, after-before, len(p))
	}
}

// bytesSeen is Result().BytesSeen[dir] without copying the whole Result,
// for checks after every byte.
func bytesSeen(tr *Tracker, dir Direction) int64 {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.res.BytesSeen[dir]
}

// coalesce merges consecutive chunks of the same direction, as a proxy
// reading with a large buffer may see them.
func coalesce(chunks []chunk) []chunk {
	var out []chunk
	for _, c := range chunks {
		if n := len(out); n > 0 && out[n-1].dir == c.dir {
			out[n-1].data = append(out[n-1].data, c.data...)
			continue
		}
		out = append(out, chunk{c.dir, bytes.Clone(c.data)})
	}
	return out
}

// stream concatenates what one direction sent.
func stream(chunks []chunk, dir Direction) []byte {
	var b []byte
	for _, c := range chunks {
		if c.dir == dir {
			b = append(b, c.data...)
		}
	}
	return b
}

// record is one TLS record of a captured stream.
type record struct {
	typ     byte
	version uint16
	payload []byte
}

// parseRecords splits a whole stream into records; tests use it on streams
// crypto/tls wrote.
func parseRecords(tb testing.TB, b []byte) []record {
	tb.Helper()
	var out []record
	for len(b) > 0 {
		if len(b) < recordHeaderLen {
			tb.Fatalf("stream ends inside a record header")
		}
		n := int(binary.BigEndian.Uint16(b[3:5]))
		if len(b) < recordHeaderLen+n {
			tb.Fatalf("stream ends inside a record")
		}
		out = append(out, record{b[0], binary.BigEndian.Uint16(b[1:3]), b[5 : 5+n]})
		b = b[5+n:]
	}
	return out
}

// frame wraps payload into records of type typ holding at most size bytes
// each.
func frame(typ byte, version uint16, payload []byte, size int) []byte {
	var out []byte
	for len(payload) > 0 {
		n := min(size, len(payload))
		out = append(out, typ, byte(version>>8), byte(version), byte(n>>8), byte(n))
		out = append(out, payload[:n]...)
		payload = payload[n:]
	}
	return out
}

// clientHelloMsg returns the ClientHello handshake message (header
// included) from the first chunk of a capture, which crypto/tls writes as
// one record.
func clientHelloMsg(tb testing.TB, c capture) []byte {
	tb.Helper()
	first := c.chunks[0]
	recs := parseRecords(tb, first.data)
	if first.dir != ClientToServer || len(recs) != 1 || recs[0].typ != typeHandshake ||
		recs[0].payload[0] != msgClientHello {
		tb.Fatalf("first chunk is not one ClientHello record")
	}
	return recs[0].payload
}

// withClientHello returns the chunks of c with the first one, the
// ClientHello, replaced by data.
func withClientHello(c capture, data []byte) []chunk {
	out := append([]chunk{{ClientToServer, data}}, c.chunks[1:]...)
	return out
}

// padClientHello appends an extension of n bytes (type 21, padding) to a
// ClientHello message and fixes its lengths.
func padClientHello(tb testing.TB, msg []byte, n int) []byte {
	tb.Helper()
	body := msg[hsHeaderLen:]
	c := cursor{b: body}
	c.take(2 + 32)
	c.vec8()
	c.vec16()
	c.vec8()
	extStart := len(body) - len(c.b)
	exts := c.vec16()
	if c.bad || len(c.b) != 0 {
		tb.Fatalf("cannot parse ClientHello to pad it")
	}

	var out []byte
	out = append(out, msg[:hsHeaderLen]...)
	out = append(out, body[:extStart]...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(exts)+4+n))
	out = append(out, exts...)
	out = binary.BigEndian.AppendUint16(out, 21)
	out = binary.BigEndian.AppendUint16(out, uint16(n))
	out = append(out, make([]byte, n)...)
	l := len(out) - hsHeaderLen
	out[1], out[2], out[3] = byte(l>>16), byte(l>>8), byte(l)
	return out
}

// run feeds chunks to a new Tracker the way f does and returns the result.
func run(tb testing.TB, f feeder, chunks []chunk) (*Tracker, Result) {
	tb.Helper()
	tr := &Tracker{}
	f.feed(tb, tr, chunks)
	return tr, tr.Result()
}

// configs returns a server and a client configuration for the test PKI,
// limited to one TLS version when v is not zero.
func configs(tb testing.TB, v uint16) (server, client *tls.Config) {
	p := getPKI(tb)
	server = &tls.Config{
		Certificates: []tls.Certificate{p.serverCert},
		MinVersion:   v,
		MaxVersion:   v,
	}
	client = &tls.Config{RootCAs: p.roots, ServerName: testHost, MinVersion: v, MaxVersion: v}
	return server, client
}
