package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"
)

// bodySize is what the download servers serve: large enough that a reset
// after a quarter of it is clearly mid-download.
const bodySize = 256 << 10

// body returns the deterministic download body.
func body() []byte {
	b := make([]byte, bodySize)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// handshake is what a TLS server saw of one connection's handshake.
type handshake struct {
	SNI     string
	Version uint16 // zero when the handshake failed
	Err     error  // e.g. "remote error: tls: unknown certificate authority"
	// ClearAlert names the first alert the client sent in clear (a record
	// of type alert with a two-byte payload), as a proxy between them sees
	// it; empty when none crossed in clear.
	ClearAlert string
}

// tlsServerOptions shape a tlsServer.
type tlsServerOptions struct {
	// MaxVersion pins the highest TLS version (tls.VersionTLS12); zero
	// leaves Go's default (TLS 1.3).
	MaxVersion uint16
	// ResetAfter, when positive, makes the server send the response
	// headers and this many body bytes, then reset the TCP connection
	// (SO_LINGER 0 and close) without a TLS close_notify.
	ResetAfter int
	// Listen is the loopback address to listen on, such as "[::1]:0";
	// empty means 127.0.0.1 on a free port.
	Listen string
}

// tlsServer is an HTTPS/1.1 server on 127.0.0.1 that answers every GET with
// the download body and records each handshake. It is written by hand
// rather than with net/http so that it can reset a connection mid-body and
// report handshake failures.
type tlsServer struct {
	Addr string
	Port int

	opts tlsServerOptions
	cfg  *tls.Config
	ln   net.Listener
	body []byte

	mu         sync.Mutex
	handshakes []handshake
	changed    chan struct{} // closed and replaced on each new handshake

	wg sync.WaitGroup
}

// startTLSServer starts a server with the PKI's leaf; it stops when the test
// ends.
func startTLSServer(t testing.TB, p *testPKI, opts tlsServerOptions) *tlsServer {
	t.Helper()
	network, addr := "tcp4", "127.0.0.1:0"
	if opts.Listen != "" {
		network, addr = "tcp", opts.Listen
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatalf("tls server: %v", err)
	}
	s := &tlsServer{
		Addr: ln.Addr().String(),
		Port: ln.Addr().(*net.TCPAddr).Port,
		opts: opts,
		cfg: &tls.Config{
			Certificates: []tls.Certificate{p.Leaf},
			MaxVersion:   opts.MaxVersion,
			NextProtos:   []string{"http/1.1"},
		},
		ln:      ln,
		body:    body(),
		changed: make(chan struct{}),
	}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

func (s *tlsServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(c.(*net.TCPConn))
		}()
	}
}

func (s *tlsServer) serveConn(raw *net.TCPConn) {
	defer raw.Close()
	// Bounds a connection the test forgot; no test waits this long.
	raw.SetDeadline(time.Now().Add(30 * time.Second))

	tap := &recordTap{Conn: raw}
	tc := tls.Server(tap, s.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := tc.HandshakeContext(ctx)
	cancel()
	st := tc.ConnectionState()
	h := handshake{SNI: st.ServerName, Err: err, ClearAlert: tap.clearAlert()}
	if err == nil {
		h.Version = st.Version
	}
	s.record(h)
	if err != nil {
		return
	}

	br := bufio.NewReader(tc)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			// The client is done (close_notify or EOF). Wait for its FIN
			// before sending ours, so that a proxy between us sees the
			// client close first whatever its goroutines' timing; only
			// then answer with close_notify and FIN.
			raw.SetReadDeadline(time.Now().Add(5 * time.Second))
			io.Copy(io.Discard, raw)
			tc.Close()
			return
		}
		io.Copy(io.Discard, req.Body)
		req.Body.Close()

		hdr := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"+
			"Content-Length: %d\r\n\r\n", len(s.body))
		if s.opts.ResetAfter > 0 {
			tc.Write(append([]byte(hdr), s.body[:s.opts.ResetAfter]...))
			// Let the kernel hand the partial body to the peer before the
			// reset discards whatever is still queued.
			time.Sleep(200 * time.Millisecond)
			raw.SetLinger(0)
			raw.Close()
			return
		}
		if _, err := tc.Write(append([]byte(hdr), s.body...)); err != nil {
			return
		}
	}
}

func (s *tlsServer) record(h handshake) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handshakes = append(s.handshakes, h)
	close(s.changed)
	s.changed = make(chan struct{})
}

// Handshakes returns the handshakes seen so far.
func (s *tlsServer) Handshakes() []handshake {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]handshake(nil), s.handshakes...)
}

// WaitHandshakes waits up to timeout until n handshakes were seen and
// returns them; fewer when the time ran out.
func (s *tlsServer) WaitHandshakes(n int, timeout time.Duration) []handshake {
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		hs, ch := append([]handshake(nil), s.handshakes...), s.changed
		s.mu.Unlock()
		if len(hs) >= n {
			return hs
		}
		select {
		case <-ch:
		case <-deadline:
			return hs
		}
	}
}

// recordTap watches the TLS records read from a connection and keeps the
// first alert that arrives in clear.
type recordTap struct {
	net.Conn

	mu        sync.Mutex
	hdr       []byte // partial record header
	typ       byte   // type of the record being read
	length    int    // its payload length
	remaining int    // payload bytes still to come
	payload   []byte // payload so far of a two-byte alert record
	alert     string
}

func (r *recordTap) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.feed(p[:n])
	return n, err
}

func (r *recordTap) feed(b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(b) > 0 {
		if r.remaining == 0 {
			k := min(5-len(r.hdr), len(b))
			r.hdr, b = append(r.hdr, b[:k]...), b[k:]
			if len(r.hdr) < 5 {
				return
			}
			r.typ, r.length = r.hdr[0], int(r.hdr[3])<<8|int(r.hdr[4])
			r.remaining, r.hdr, r.payload = r.length, nil, nil
			continue
		}
		k := min(r.remaining, len(b))
		if r.typ == 21 && r.length == 2 {
			r.payload = append(r.payload, b[:k]...)
		}
		r.remaining, b = r.remaining-k, b[k:]
		if r.remaining == 0 && len(r.payload) == 2 && r.alert == "" {
			r.alert = alertName(r.payload[1])
		}
	}
}

func (r *recordTap) clearAlert() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.alert
}

// alertName names a TLS alert description as RFC 8446 and RFC 5246 do.
func alertName(d byte) string {
	names := map[byte]string{
		0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 40: "handshake_failure",
		42: "bad_certificate", 43: "unsupported_certificate", 44: "certificate_revoked",
		45: "certificate_expired", 46: "certificate_unknown", 47: "illegal_parameter",
		48: "unknown_ca", 50: "decode_error", 51: "decrypt_error", 70: "protocol_version",
		80: "internal_error", 90: "user_canceled", 109: "missing_extension",
		112: "unrecognized_name", 116: "certificate_required",
	}
	if n, ok := names[d]; ok {
		return n
	}
	return fmt.Sprintf("alert_%d", d)
}

// revocationServer is a plain-HTTP server for CRL and OCSP traffic:
// GET /good.crl answers the PKI's CRL, GET /missing.crl answers 404, and a
// POST of application/ocsp-request to any path answers a signed "good" OCSP
// response. It records the requests it served.
type revocationServer struct {
	Addr string
	Port int

	mu   sync.Mutex
	reqs []revocationRequest
}

// revocationRequest is one request a revocationServer answered.
type revocationRequest struct {
	Method, Host, Path string
	Status             int
}

func startRevocationServer(t testing.TB, p *testPKI) *revocationServer {
	t.Helper()
	s := &revocationServer{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /good.crl", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Header().Set("Content-Length", strconv.Itoa(len(p.CRL)))
		w.Write(p.CRL)
	})
	mux.HandleFunc("GET /missing.crl", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such CRL", http.StatusNotFound)
	})
	mux.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") != "application/ocsp-request" {
			http.Error(w, "want application/ocsp-request", http.StatusUnsupportedMediaType)
			return
		}
		der, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req, err := ocsp.ParseRequest(der)
		if err != nil {
			w.Header().Set("Content-Type", "application/ocsp-response")
			w.Write(ocsp.MalformedRequestErrorResponse)
			return
		}
		resp, err := p.OCSPResponse(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		w.Write(resp)
	})

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		mux.ServeHTTP(rec, r)
		s.mu.Lock()
		s.reqs = append(s.reqs, revocationRequest{r.Method, r.Host, r.URL.Path, rec.status})
		s.mu.Unlock()
	}))
	srv.Start()
	t.Cleanup(srv.Close)
	s.Addr = srv.Listener.Addr().String()
	s.Port = srv.Listener.Addr().(*net.TCPAddr).Port
	return s
}

// Requests returns the requests served so far.
func (s *revocationServer) Requests() []revocationRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]revocationRequest(nil), s.reqs...)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}
