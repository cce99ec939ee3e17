package e2e

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
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// Host names the tests use. They are the real names of DOMAIN.md, so that
// the binary's default endpoint catalog classifies them; the proxy maps
// them to loopback through --resolve or the test DNS server, and curl never
// resolves them itself.
const (
	hostTetra     = "tetra-defs.amp.cisco.com"      // --resolve
	hostTetraEU   = "tetra-defs.eu.amp.cisco.com"   // NXDOMAIN at the test DNS
	hostTetraAPJC = "tetra-defs.apjc.amp.cisco.com" // A record at the test DNS
	hostCRL       = "crl.identrust.com"             // --resolve
	hostOCSP      = "ocsp.example-ca.test"          // --resolve; not in the catalog
	hostOCSPKnown = "commercial.ocsp.identrust.com" // unused by the proxy cases; in the leaf
)

// testPKI is a throwaway certificate authority with one leaf certificate
// for the tetra hosts, a CRL and an OCSP responder key (the CA itself).
type testPKI struct {
	CA     *x509.Certificate
	CAKey  *ecdsa.PrivateKey
	CAFile string // PEM, for curl --cacert

	Leaf    tls.Certificate // leaf only, without the CA: curl must know the CA
	LeafX   *x509.Certificate
	CRL     []byte // DER, signed by the CA, revoking one unrelated serial
	RootsCA *x509.CertPool
}

// newPKI creates the CA and the leaf, and writes the CA PEM under dir.
func newPKI(t testing.TB, dir string) *testPKI {
	t.Helper()
	now := time.Now()

	caKey := newKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject: pkix.Name{
			CommonName:   "tetrascope e2e test CA",
			Organization: []string{"tetrascope e2e"},
		},
		NotBefore: now.Add(-time.Hour),
		NotAfter:  now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign |
			x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("pki: creating CA: %v", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatalf("pki: parsing CA: %v", err)
	}

	leafKey := newKey(t)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: hostTetra},
		DNSNames:     []string{hostTetra, hostTetraEU, hostTetraAPJC},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		// Where a Windows client would look; nothing in the tests fetches
		// these by themselves.
		CRLDistributionPoints: []string{"http://" + hostCRL + "/good.crl"},
		OCSPServer:            []string{"http://" + hostOCSPKnown},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("pki: creating leaf: %v", err)
	}
	leaf, err := x509.ParseCertificate(leafDER)
	if err != nil {
		t.Fatalf("pki: parsing leaf: %v", err)
	}

	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:     big.NewInt(1),
		ThisUpdate: now.Add(-time.Minute),
		NextUpdate: now.Add(24 * time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{
			{SerialNumber: big.NewInt(99), RevocationTime: now.Add(-time.Minute)},
		},
	}, ca, caKey)
	if err != nil {
		t.Fatalf("pki: creating CRL: %v", err)
	}

	caFile := filepath.Join(dir, "ca.pem")
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		t.Fatalf("pki: writing CA: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)

	return &testPKI{
		CA:      ca,
		CAKey:   caKey,
		CAFile:  caFile,
		Leaf:    tls.Certificate{Certificate: [][]byte{leafDER}, PrivateKey: leafKey, Leaf: leaf},
		LeafX:   leaf,
		CRL:     crl,
		RootsCA: pool,
	}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("pki: generating key: %v", err)
	}
	return k
}

// OCSPRequest returns a DER OCSP request for the leaf.
func (p *testPKI) OCSPRequest(t testing.TB) []byte {
	t.Helper()
	req, err := ocsp.CreateRequest(p.LeafX, p.CA, &ocsp.RequestOptions{Hash: crypto.SHA256})
	if err != nil {
		t.Fatalf("pki: creating OCSP request: %v", err)
	}
	return req
}

// OCSPResponse answers a parsed request "good", signed by the CA.
func (p *testPKI) OCSPResponse(req *ocsp.Request) ([]byte, error) {
	now := time.Now()
	return ocsp.CreateResponse(p.CA, p.CA, ocsp.Response{
		Status:       ocsp.Good,
		SerialNumber: req.SerialNumber,
		ThisUpdate:   now.Add(-time.Minute),
		NextUpdate:   now.Add(time.Hour),
		IssuerHash:   req.HashAlgorithm,
	}, p.CAKey)
}

func TestHarnessPKI(t *testing.T) {
	p := newPKI(t, t.TempDir())

	for _, host := range []string{hostTetra, hostTetraEU, hostTetraAPJC} {
		if _, err := p.LeafX.Verify(x509.VerifyOptions{DNSName: host, Roots: p.RootsCA}); err != nil {
			t.Errorf("leaf does not verify for %s: %v", host, err)
		}
	}
	if _, err := p.LeafX.Verify(x509.VerifyOptions{DNSName: hostTetra}); err == nil {
		t.Error("leaf verifies against the system roots; the unknown_ca cases need it not to")
	}

	crl, err := x509.ParseRevocationList(p.CRL)
	if err != nil {
		t.Fatalf("parsing CRL: %v", err)
	}
	if err := crl.CheckSignatureFrom(p.CA); err != nil {
		t.Errorf("CRL signature: %v", err)
	}

	req, err := ocsp.ParseRequest(p.OCSPRequest(t))
	if err != nil {
		t.Fatalf("parsing OCSP request: %v", err)
	}
	der, err := p.OCSPResponse(req)
	if err != nil {
		t.Fatalf("creating OCSP response: %v", err)
	}
	resp, err := ocsp.ParseResponseForCert(der, p.LeafX, p.CA)
	if err != nil {
		t.Fatalf("parsing OCSP response: %v", err)
	}
	if resp.Status != ocsp.Good {
		t.Errorf("OCSP status = %d, want good", resp.Status)
	}

	pemBytes, err := os.ReadFile(p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if blk, _ := pem.Decode(pemBytes); blk == nil || blk.Type != "CERTIFICATE" {
		t.Errorf("CA file is not a PEM certificate")
	}
}
