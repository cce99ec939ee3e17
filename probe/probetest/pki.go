// Package probetest runs the servers that tests of the probe talk to, all
// on loopback: a throwaway certificate authority, a TLS definition server,
// a revocation server answering CRL and OCSP requests, a forward proxy and
// a DNS server. None of them resolves a name through the system: every
// name they know is given to them. Each stops when its test ends.
package probetest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// CA is a throwaway certificate authority: a root, or an intermediate
// signed by another CA.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey

	chain [][]byte // DER of this CA and the intermediates above it, not the root

	mu     sync.Mutex
	serial int64
	issued []*big.Int
}

// NewCA returns a root CA whose subject has name as its common name and
// organization.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := caTemplate(name)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("probetest: creating CA %s: %v", name, err)
	}
	return &CA{Cert: parse(t, der), Key: key, serial: 100}
}

// Intermediate returns a CA signed by ca, naming the given revocation
// servers. Leaves it issues are served with it in their chain.
func (ca *CA) Intermediate(t testing.TB, name string, crlURLs, ocspURLs []string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := caTemplate(name)
	tmpl.SerialNumber = ca.nextSerial()
	tmpl.CRLDistributionPoints = crlURLs
	tmpl.OCSPServer = ocspURLs
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatalf("probetest: creating intermediate %s: %v", name, err)
	}
	chain := append([][]byte{der}, ca.chain...)
	return &CA{Cert: parse(t, der), Key: key, chain: chain, serial: 100}
}

func caTemplate(name string) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: name, Organization: []string{name}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(48 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign |
			x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
}

func (ca *CA) nextSerial() *big.Int {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.serial++
	n := big.NewInt(ca.serial)
	ca.issued = append(ca.issued, n)
	return n
}

// Issued returns the serial numbers of the certificates ca has signed.
func (ca *CA) Issued() []*big.Int {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return append([]*big.Int(nil), ca.issued...)
}

// Pool returns a pool holding ca's certificate only.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// WriteFile writes ca's certificate as PEM into dir and returns the path.
func (ca *CA) WriteFile(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "ca.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatalf("probetest: writing CA: %v", err)
	}
	return path
}

// LeafOptions describe a server certificate. Zero times mean valid from an
// hour ago to a day ahead.
type LeafOptions struct {
	Hosts     []string
	CRLURLs   []string
	OCSPURLs  []string
	NotBefore time.Time
	NotAfter  time.Time
}

// Leaf issues a server certificate, served with ca's intermediates.
func (ca *CA) Leaf(t testing.TB, o LeafOptions) tls.Certificate {
	t.Helper()
	now := time.Now()
	if o.NotBefore.IsZero() {
		o.NotBefore = now.Add(-time.Hour)
	}
	if o.NotAfter.IsZero() {
		o.NotAfter = now.Add(24 * time.Hour)
	}
	key := newKey(t)
	cn := ""
	if len(o.Hosts) > 0 {
		cn = o.Hosts[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber:          ca.nextSerial(),
		Subject:               pkix.Name{CommonName: cn},
		DNSNames:              o.Hosts,
		NotBefore:             o.NotBefore,
		NotAfter:              o.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		CRLDistributionPoints: o.CRLURLs,
		OCSPServer:            o.OCSPURLs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatalf("probetest: creating leaf: %v", err)
	}
	return tls.Certificate{
		Certificate: append([][]byte{der}, ca.chain...),
		PrivateKey:  key,
		Leaf:        parse(t, der),
	}
}

// CRL returns a DER CRL signed by ca listing the given serial numbers.
func (ca *CA) CRL(revoked []*big.Int, thisUpdate, nextUpdate time.Time) ([]byte, error) {
	var entries []x509.RevocationListEntry
	for _, s := range revoked {
		entries = append(entries, x509.RevocationListEntry{
			SerialNumber: s, RevocationTime: thisUpdate.Add(-time.Minute)})
	}
	return x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(time.Now().UnixNano()),
		ThisUpdate:                thisUpdate,
		NextUpdate:                nextUpdate,
		RevokedCertificateEntries: entries,
	}, ca.Cert, ca.Key)
}

// OCSPResponse returns an OCSP answer signed by ca about serial, with
// status ocsp.Good, ocsp.Revoked or ocsp.Unknown.
func (ca *CA) OCSPResponse(serial *big.Int, status int, hash crypto.Hash,
	thisUpdate, nextUpdate time.Time) ([]byte, error) {
	r := ocsp.Response{
		Status:       status,
		SerialNumber: serial,
		ThisUpdate:   thisUpdate,
		NextUpdate:   nextUpdate,
		IssuerHash:   hash,
	}
	if status == ocsp.Revoked {
		r.RevokedAt = thisUpdate.Add(-time.Minute)
		r.RevocationReason = ocsp.KeyCompromise
	}
	return ocsp.CreateResponse(ca.Cert, ca.Cert, r, ca.Key)
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("probetest: generating key: %v", err)
	}
	return k
}

func parse(t testing.TB, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("probetest: parsing certificate: %v", err)
	}
	return c
}
