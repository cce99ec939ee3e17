package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"sync"
	"time"
)

// transcript is a real TLS 1.3 handshake recorded once at start, replayed
// byte for byte by the load clients and the origin. Replaying costs neither
// side any cryptography, so the load core stays free for the load, while
// the proxies see (and tetrascope inspects) the records a real endpoint and
// server exchange: ClientHello with SNI, ServerHello, encrypted flight,
// client Finished, then application data.
type transcript struct {
	clientHello  []byte // the client's first flight
	serverFlight []byte // ServerHello up to the server's Finished
	clientFinish []byte // the client's Finished flight
	appData      []byte // one application-data record of appDataSize bytes
}

// appDataSize is the payload of the cycle's answer: "CONNECT + 1 KiB".
const appDataSize = 1024

// flightLog records, in order, who wrote what on a connection pair.
type flightLog struct {
	mu      sync.Mutex
	flights []flight
}

type flight struct {
	client bool
	data   []byte
}

func (l *flightLog) add(client bool, p []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.flights); n > 0 && l.flights[n-1].client == client {
		l.flights[n-1].data = append(l.flights[n-1].data, p...)
		return
	}
	l.flights = append(l.flights, flight{client, append([]byte(nil), p...)})
}

// recConn notes every write before making it, so that a write is always
// logged before the answer it causes.
type recConn struct {
	net.Conn
	client bool
	log    *flightLog
}

func (c *recConn) Write(p []byte) (int, error) {
	c.log.add(c.client, p)
	return c.Conn.Write(p)
}

// recordTranscript runs a TLS 1.3 handshake for serverName between
// crypto/tls on both ends of an in-memory pipe and keeps what each side
// wrote.
func recordTranscript(serverName string) (*transcript, error) {
	cert, err := selfSigned(serverName)
	if err != nil {
		return nil, err
	}
	var log flightLog
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	deadline := time.Now().Add(10 * time.Second)
	_ = a.SetDeadline(deadline)
	_ = b.SetDeadline(deadline)

	srv := tls.Server(&recConn{Conn: b, log: &log}, &tls.Config{
		Certificates:           []tls.Certificate{cert},
		MinVersion:             tls.VersionTLS13,
		SessionTicketsDisabled: true,
	})
	cli := tls.Client(&recConn{Conn: a, client: true, log: &log}, &tls.Config{
		ServerName:         serverName,
		InsecureSkipVerify: true, // only the bytes matter
		MinVersion:         tls.VersionTLS13,
	})

	errc := make(chan error, 1)
	go func() {
		if err := srv.Handshake(); err != nil {
			errc <- err
			return
		}
		_, err := srv.Write(make([]byte, appDataSize))
		errc <- err
	}()
	if err := cli.Handshake(); err != nil {
		return nil, fmt.Errorf("recording the TLS handshake: %w", err)
	}
	if _, err := io.ReadFull(cli, make([]byte, appDataSize)); err != nil {
		return nil, fmt.Errorf("recording the TLS answer: %w", err)
	}
	if err := <-errc; err != nil {
		return nil, fmt.Errorf("recording the TLS handshake (server): %w", err)
	}

	f := log.flights
	if len(f) != 4 || !f[0].client || f[1].client || !f[2].client || f[3].client {
		return nil, errors.New("recording the TLS handshake: unexpected flights")
	}
	return &transcript{
		clientHello:  f[0].data,
		serverFlight: f[1].data,
		clientFinish: f[2].data,
		appData:      f[3].data,
	}, nil
}

func selfSigned(name string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// handshakeClient plays the client's part of the handshake on c: hello,
// the server's flight, Finished. buf must hold the server's flight.
func (t *transcript) handshakeClient(c net.Conn, buf []byte) error {
	if _, err := c.Write(t.clientHello); err != nil {
		return fmt.Errorf("sending ClientHello: %w", err)
	}
	if _, err := io.ReadFull(c, buf[:len(t.serverFlight)]); err != nil {
		return fmt.Errorf("reading the server's flight: %w", err)
	}
	if _, err := c.Write(t.clientFinish); err != nil {
		return fmt.Errorf("sending Finished: %w", err)
	}
	return nil
}

// handshakeServer plays the server's part of the handshake on c.
func (t *transcript) handshakeServer(c net.Conn, buf []byte) error {
	if _, err := io.ReadFull(c, buf[:len(t.clientHello)]); err != nil {
		return err
	}
	if _, err := c.Write(t.serverFlight); err != nil {
		return err
	}
	_, err := io.ReadFull(c, buf[:len(t.clientFinish)])
	return err
}

// bufSize is a buffer that holds any flight of the transcript.
func (t *transcript) bufSize() int {
	return max(len(t.clientHello), len(t.serverFlight), len(t.clientFinish), len(t.appData))
}
