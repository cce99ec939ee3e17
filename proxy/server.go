// Package proxy is tetrascope's inline sensor: a forward proxy that relays
// CONNECT tunnels and plain HTTP requests for the endpoints and reports one
// observation per connection or request. CONNECT is taken over from goproxy
// with our own dialer and relay, so that failures keep their cause and the
// TLS handshake can be watched; plain HTTP goes through goproxy's handler
// and our own keep-alive client to the origins.
package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/resolve"
)

// Config is the proxy's part of the configuration. Zero durations and limits
// take the defaults of config.yaml.
type Config struct {
	Listen            string
	Sensor            string
	AllowClients      []netip.Prefix // empty: every client is refused
	AllowPorts        []int          // CONNECT ports; empty: only 443
	AllowLinkLocal    bool           // allow link-local and metadata targets
	ConnectTimeout    time.Duration
	IdleTimeout       time.Duration
	ReadHeaderTimeout time.Duration
	ShutdownGrace     time.Duration
	MaxHeaderBytes    int
	MaxConnections    int
	FirstID           int64    // ids continue after this one (and after the clock)
	Upstream          Upstream // the proxy to chain to; zero: direct
	Htpasswd          string   // clients must authenticate against it; empty: no
	Realm             string   // realm of our Basic challenge
	// OtherListeners are this program's other listen addresses (the page
	// and API), host:port: never dialled, like the proxy's own, so that a
	// client cannot reach a page bound to loopback through the proxy.
	// Empty: only the proxy's own address is refused.
	OtherListeners []string
}

// Recorder receives the events of the proxy. Its methods must not block,
// nor keep ev after they return: the proxy reuses it.
type Recorder interface {
	Open(ev *inspect.Event)
	Done(ev *inspect.Event)
}

// Deps are what the proxy uses. Resolver nil means the system resolver;
// Catalog nil classifies every host as other.
type Deps struct {
	IDs      *inspect.IDs // shared with other sensors of the process; nil: the proxy's own
	Resolver *resolve.Resolver
	Catalog  *inspect.Catalog
	Recorder Recorder
	Logger   *slog.Logger
}

// Server is the forward proxy. Use New.
type Server struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	gp      *goproxy.ProxyHttpServer
	origins originPool // idle connections to origins, for plain HTTP
	ports   map[int]bool
	auth    *htpasswd // nil: no client authentication

	ids         *inspect.IDs
	conns       atomic.Int64          // client connections open now
	openTunnels atomic.Int64          // tunnels open now
	busy        atomic.Int64          // connections refused over limits.max_connections
	busyLog     atomic.Int64          // unix seconds of the last warning about them
	tunnels     registry[*tunnel]     // the tunnels open now, by event id
	waiting     registry[*clientConn] // connections the front waits on for a request
	connSeq     atomic.Uint64         // numbers client connections
	stopping    atomic.Bool           // shutting down: connections waiting for a request close
	closing     atomic.Bool           // the grace period is over: tunnels end at once
	handoff     *handoff              // where the front passes connections to net/http
	work        *workers              // goroutines for fronts and tunnels
	wg          sync.WaitGroup        // fronts and tunnels still running

	mu    sync.Mutex
	addrs []netip.AddrPort // our own listeners, never dialled (loops)
	ready chan struct{}
}

// New checks cfg and returns a proxy that is not yet listening.
func New(cfg Config, deps Deps) (*Server, error) {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Recorder == nil {
		return nil, errors.New("proxy: no recorder")
	}
	if len(cfg.AllowPorts) == 0 {
		cfg.AllowPorts = []int{443}
	}
	setDefault(&cfg.ConnectTimeout, 10*time.Second)
	setDefault(&cfg.IdleTimeout, 5*time.Minute)
	setDefault(&cfg.ReadHeaderTimeout, 30*time.Second)
	setDefault(&cfg.ShutdownGrace, 10*time.Second)
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = 64 << 10
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = 10000
	}
	s := &Server{
		cfg:   cfg,
		deps:  deps,
		log:   deps.Logger,
		ports: make(map[int]bool),
		ready: make(chan struct{}),
		work:  newWorkers(),
	}
	for _, p := range cfg.AllowPorts {
		s.ports[p] = true
	}
	s.ids = deps.IDs
	if s.ids == nil {
		s.ids = new(inspect.IDs)
	}
	s.ids.Seed(cfg.FirstID)
	s.gp = s.newGoproxy()
	if cfg.Htpasswd != "" {
		a, err := newHtpasswd(cfg.Htpasswd)
		if err != nil {
			return nil, err
		}
		s.auth = a
	}
	if s.cfg.Realm == "" {
		s.cfg.Realm = "tetrascope"
	}
	return s, nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// Addr returns the address the proxy listens on, once Run has started
// listening; it waits for that.
func (s *Server) Addr() netip.AddrPort {
	<-s.ready
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs[0]
}

// listenConfig and dialer leave TCP keep-alive off, as Squid does: setting
// it costs four system calls on every connection, each side of every
// tunnel, and a peer that vanished is noticed by timeouts.idle anyway.
var (
	listenConfig = net.ListenConfig{KeepAlive: -1}
	dialer       = net.Dialer{KeepAlive: -1}
)

// Run listens and serves until ctx is done, then stops accepting, lets open
// tunnels finish for the grace period and closes the rest.
func (s *Server) Run(ctx context.Context) error {
	ln, err := listenConfig.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("proxy listening on %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on a listener the caller opened.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	own := ownAddrs(ln.Addr().String())
	for _, a := range s.cfg.OtherListeners {
		own = append(own, ownAddrs(a)...)
	}
	s.mu.Lock()
	s.addrs = own
	s.mu.Unlock()
	close(s.ready)
	defer s.work.close()
	defer s.origins.close()

	// The front reads what clients send first and serves CONNECTs itself;
	// net/http gets the rest through the handoff listener.
	s.handoff = newHandoff(ln.Addr())
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          log.New(serverLog{s.log}, "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		// HTTP/2 is not offered: endpoints speak HTTP/1.1 to proxies.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	s.log.Info("proxy listening", "addr", ln.Addr().String())

	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Serve(s.handoff) }()
	acceptDone := make(chan error, 1)
	go func() { acceptDone <- s.accept(ln) }()

	select {
	case err := <-acceptDone:
		s.stopping.Store(true)
		s.closeWaiting()
		_ = srv.Close()
		return fmt.Errorf("proxy serving: %w", err)
	case err := <-httpDone:
		_ = ln.Close()
		<-acceptDone
		return fmt.Errorf("proxy serving: %w", err)
	case <-ctx.Done():
	}

	// Stop accepting; idle connections close at once, requests in flight
	// and tunnels get the grace period.
	_ = ln.Close()
	<-acceptDone
	s.stopping.Store(true)
	s.closeWaiting()
	grace, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancel()
	_ = srv.Shutdown(grace)
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-grace.Done():
		s.closing.Store(true)
		_ = srv.Close()
		s.closeWaiting()
		n := 0
		s.tunnels.each(func(t *tunnel) {
			t.shutdown()
			n++
		})
		s.log.Info("closing tunnels still open after the grace period", "tunnels", n)
		<-done
	}
	return nil
}

// accept takes the connections of ln, up to limits.max_connections at
// once, and gives each to the front on a goroutine of its own. It returns
// once ln is closed, with the error that says so.
func (s *Server) accept(ln net.Listener) error {
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return err
		}
		if err != nil {
			// Out of descriptors, or a connection reset before it was
			// taken: wait a little, as net/http does, and go on.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Debug("accepting a connection", "error", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		tc, ok := c.(*net.TCPConn)
		if !ok {
			if !s.handoff.pass(c) {
				_ = c.Close()
			}
			continue
		}
		if s.conns.Add(1) > int64(s.cfg.MaxConnections) {
			s.conns.Add(-1)
			s.refuseBusy(tc)
			continue
		}
		s.wg.Add(1)
		cc := &clientConn{TCPConn: tc, s: s, id: s.connSeq.Add(1)}
		s.work.run(func() { s.front(cc) })
	}
}

// serverLog takes net/http's own log lines. A handler that panicked lost
// its request (net/http closes the connection and goes on): an error. The
// rest, such as clients resetting while a request is read, is debug.
type serverLog struct{ log *slog.Logger }

func (l serverLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if first, stack, _ := strings.Cut(msg, "\n"); strings.HasPrefix(first, "http: panic serving") {
		l.log.Error("request handler panicked; its connection was closed", "error", first,
			"stack", truncate(stack, 4000))
	} else {
		l.log.Debug(msg)
	}
	return len(p), nil
}

// ownAddrs lists the addresses a listener on hostport answers on, so that
// a CONNECT to one of them (a loop) is refused. A listener on all
// interfaces is listed with the unspecified address and each interface's.
func ownAddrs(hostport string) []netip.AddrPort {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil
	}
	var a netip.Addr
	switch host {
	case "":
		a = netip.IPv6Unspecified()
	case "localhost":
		return []netip.AddrPort{
			netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)),
			netip.AddrPortFrom(netip.IPv6Loopback(), uint16(port)),
		}
	default:
		if a, err = netip.ParseAddr(host); err != nil {
			return nil
		}
	}
	ap := netip.AddrPortFrom(a.Unmap(), uint16(port))
	if !ap.Addr().IsUnspecified() {
		return []netip.AddrPort{ap}
	}
	out := []netip.AddrPort{ap}
	ifaddrs, _ := net.InterfaceAddrs()
	for _, ia := range ifaddrs {
		if p, err := netip.ParsePrefix(ia.String()); err == nil {
			out = append(out, netip.AddrPortFrom(p.Addr().Unmap(), ap.Port()))
		}
	}
	return out
}

// isOwn reports whether ap is one of our listeners. A listener on all
// interfaces also answers on every loopback address; remote hosts that
// happen to use the same port (an upstream proxy on 3128) are not loops.
func (s *Server) isOwn(ap netip.AddrPort) bool {
	addr := ap.Addr().Unmap()
	local := addr.IsLoopback() || addr.IsUnspecified()
	// No lock: addrs is set before the listener serves its first
	// connection and never changes after, and this runs on every dial.
	for _, a := range s.addrs {
		if a.Port() == ap.Port() && (a.Addr() == addr || a.Addr().IsUnspecified() && local) {
			return true
		}
	}
	return false
}

// Active returns the tunnels open now, with the bytes relayed so far.
func (s *Server) Active() []inspect.Event {
	var out []inspect.Event
	s.tunnels.each(func(t *tunnel) { out = append(out, t.snapshot()) })
	return out
}

// Tunnels returns the number of tunnels open now, without listing them.
func (s *Server) Tunnels() int64 { return s.openTunnels.Load() }

// Connections returns the number of client connections open now.
func (s *Server) Connections() int64 { return s.conns.Load() }

// newEvent starts the event of a request.
func (s *Server) newEvent(r *http.Request, start time.Time) inspect.Event {
	return inspect.Event{
		ID:         s.ids.Next(),
		Time:       start.UTC(),
		Source:     inspect.SourceProxy,
		Sensor:     s.cfg.Sensor,
		ClientIP:   remoteIP(r.RemoteAddr),
		ClientUser: credentialUser(r.Header.Get("Proxy-Authorization")),
		Method:     r.Method,
	}
}

// open announces a request: only what is known when a connection starts,
// never an outcome, even when the proxy has already decided it.
func (s *Server) open(ev *inspect.Event) {
	if ev.Outcome == "" {
		// Undecided, ev holds only what is known at the start: it is
		// handed over as it is, without a copy.
		s.deps.Recorder.Open(ev)
		return
	}
	o := inspect.Event{
		ID: ev.ID, Time: ev.Time, Source: ev.Source, Sensor: ev.Sensor,
		ClientIP: ev.ClientIP, ClientUser: ev.ClientUser, Method: ev.Method,
		Host: ev.Host, Port: ev.Port, URL: ev.URL, Endpoint: ev.Endpoint,
	}
	s.deps.Recorder.Open(&o)
}

// finish classifies and hands over the event of a request.
func (s *Server) finish(o *inspect.Observation, start time.Time) {
	o.Event.DurationMS = float64(time.Since(start).Microseconds()) / 1000
	inspect.Classify(o)
	ev := &o.Event
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("connection", "id", ev.ID, "client_ip", ev.ClientIP, "method", ev.Method,
			"host", ev.Host, "port", ev.Port, "outcome", ev.Outcome, "status", ev.Status,
			"bytes_up", ev.BytesUp, "bytes_down", ev.BytesDown, "close", ev.Close,
			"detail", ev.Detail)
	}
	s.deps.Recorder.Done(ev)
}

// ServeHTTP handles one request from a client.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if c, ok := r.Context().Value(connKey{}).(*clientConn); ok {
		c.headN.Store(0)
		c.handled.Store(true)
	}
	o := &inspect.Observation{Event: s.newEvent(r, start), ContentLength: -1}
	ev := &o.Event

	host, port, err := target(r)
	ev.Host, ev.Port = host, port
	switch {
	case err != nil:
		ev.Outcome, ev.Detail = inspect.BadRequest, err.Error()
	case !s.clientAllowed(ev.ClientIP):
		ev.Outcome, ev.Detail = inspect.Denied, "client "+ev.ClientIP+" is not in allow.clients"
	case r.Method == http.MethodConnect && !s.ports[port]:
		ev.Outcome = inspect.Denied
		ev.Detail = fmt.Sprintf("CONNECT port %d is not in allow.connect_ports", port)
	}
	if r.Method != http.MethodConnect && err == nil {
		ev.URL = redactURL(r.URL)
		ev.Endpoint = s.deps.Catalog.ClassifyRequest(r.Method, host, r.URL, r.Header.Get("Content-Type"))
	} else {
		ev.Endpoint = s.deps.Catalog.Classify(host)
	}
	s.open(ev)

	if ev.Outcome != "" {
		ev.Status = http.StatusForbidden
		if ev.Outcome == inspect.BadRequest {
			ev.Status = http.StatusBadRequest
		}
		w.Header().Set("Connection", "close")
		http.Error(w, ev.Detail, ev.Status)
		s.finish(o, start)
		return
	}

	// Our own authentication, when configured, comes before anything
	// leaves the proxy; the credentials are for us and go no further.
	clientAuth := r.Header.Get("Proxy-Authorization")
	if s.auth != nil {
		verdict, user, why := s.auth.check(clientAuth)
		if user != "" {
			ev.ClientUser = user
		}
		if verdict != authOK {
			s.challenge(w, o, start, verdict, why)
			return
		}
		clientAuth = ""
		r.Header.Del("Proxy-Authorization")
	}

	switch {
	case r.Method == http.MethodConnect && s.viaUpstream(host):
		s.connectUpstream(w, r, o, start, clientAuth)
	case r.Method == http.MethodConnect:
		s.connect(w, r, o, start)
	default:
		s.forward(w, r, o, clientAuth)
		s.finish(o, start)
	}
}

// challenge answers 407 to a client without valid credentials for this
// proxy. The connection stays open for the next attempt.
func (s *Server) challenge(w http.ResponseWriter, o *inspect.Observation, start time.Time,
	verdict authResult, why string) {
	ev := &o.Event
	ev.Status = http.StatusProxyAuthRequired
	if verdict == authMissing {
		ev.Outcome, ev.Detail = inspect.AuthRequired, "challenge: "+why
	} else {
		ev.Outcome = inspect.AuthFailed
		ev.Detail = "credentials rejected by this proxy: " + why
	}
	w.Header().Set("Proxy-Authenticate", fmt.Sprintf("Basic realm=%q", s.cfg.Realm))
	http.Error(w, "proxy authentication required", http.StatusProxyAuthRequired)
	s.finish(o, start)
}

func (s *Server) clientAllowed(ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	for _, p := range s.cfg.AllowClients {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// target returns the host and port a request is for, or why it is
// malformed.
func target(r *http.Request) (string, int, error) {
	hostport := r.Host
	defPort := 80
	if r.Method == http.MethodConnect {
		defPort = 0
	} else {
		if !r.URL.IsAbs() {
			return "", 0, fmt.Errorf("not a proxy request: %s %s (relative URL)", r.Method,
				truncate(redactText(r.RequestURI), 80))
		}
		if r.URL.Scheme != "http" {
			return "", 0, fmt.Errorf("unsupported scheme %q in %s", r.URL.Scheme,
				truncate(redactText(r.RequestURI), 80))
		}
		hostport = r.URL.Host
	}
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		host, portStr = hostport, ""
	}
	if portStr == "" && strings.HasSuffix(hostport, ":") {
		return "", 0, fmt.Errorf("malformed target %q: empty port", truncate(redactText(r.RequestURI), 80))
	}
	port := defPort
	if portStr != "" {
		port, err = strconv.Atoi(portStr)
		if err != nil || port < 1 || port > 65535 {
			return "", 0, fmt.Errorf("malformed target %q: bad port", truncate(redactText(r.RequestURI), 80))
		}
	}
	if port == 0 {
		return host, 0, fmt.Errorf("CONNECT %q has no port", truncate(redactText(r.RequestURI), 80))
	}
	if host == "" || !validHost(host) {
		return host, port, fmt.Errorf("malformed target host %q", truncate(host, 80))
	}
	return strings.ToLower(host), port, nil
}

// validHost accepts DNS names and IP literals.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if len(h) > 253 {
		return false
	}
	for _, c := range []byte(h) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '-' || c == '.' || c == '_'
		if !ok {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func remoteIP(addr string) string {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return addr
	}
	return ap.Addr().Unmap().String()
}

type connKey struct{}

// Refused returns how many connections were refused because
// limits.max_connections were open.
func (s *Server) Refused() int64 { return s.busy.Load() }

// refuseBusy answers a connection over limits.max_connections.
func (s *Server) refuseBusy(c *net.TCPConn) {
	n := s.busy.Add(1)
	now := time.Now().Unix()
	if last := s.busyLog.Load(); now-last >= 60 && s.busyLog.CompareAndSwap(last, now) {
		s.log.Warn("connections refused: limits.max_connections are open",
			"max_connections", s.cfg.MaxConnections, "refused_total", n,
			"client_ip", remoteIP(c.RemoteAddr().String()))
	}
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write([]byte("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n" +
		"Content-Length: 34\r\n\r\ntoo many connections at the proxy\n"))
	_ = c.Close()
}

// clientConn is a client connection before it becomes a tunnel. Tunnels use
// the TCPConn inside, so the relay keeps the kernel's splice path. Its Write
// spots the answers net/http writes without calling the handler (400 for a
// malformed request line, 431 for oversized headers), so that they are
// recorded as bad_request.
type clientConn struct {
	*net.TCPConn
	s        *Server
	id       uint64 // its number, for the registry's shards
	closed   atomic.Bool
	recorded bool
	// pending are bytes the front read and net/http has still to read.
	pending []byte
	// handled says the handler ran for the request whose answer comes
	// next; an answer written without it is net/http's own.
	handled atomic.Bool

	pinMu  sync.Mutex
	pinned *upstreamConn

	// plainWait is the origin connection that a plain-HTTP request of
	// this client waits on; the client leaving ends the wait (see leave).
	plainWait atomic.Pointer[originConn]

	// head keeps the first bytes of the request being read, to name what
	// was wrong with a request net/http refuses on its own.
	head  [120]byte
	headN atomic.Int32 // the handler resets it while net/http reads ahead
}

// Read returns what the front read first, then reads the connection. It
// keeps the start of each request; the handler resets it.
func (c *clientConn) Read(p []byte) (int, error) {
	var n int
	var err error
	if len(c.pending) > 0 {
		n = copy(p, c.pending)
		c.pending = c.pending[n:]
	} else {
		n, err = c.TCPConn.Read(p)
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			c.leave()
		}
	}
	if h := int(c.headN.Load()); h < len(c.head) && n > 0 {
		c.headN.Store(int32(h + copy(c.head[h:], p[:n])))
	}
	return n, err
}

// requestLine returns the first line of what the client sent, quoted.
func (c *clientConn) requestLine() string {
	line, _, _ := bytes.Cut(c.head[:c.headN.Load()], []byte("\n"))
	return redactText(strconv.Quote(string(bytes.TrimRight(line, "\r"))))
}

func (c *clientConn) Close() error {
	c.done()
	return c.TCPConn.Close()
}

// done forgets the connection: it is closed, or became a tunnel.
func (c *clientConn) done() {
	if c.closed.CompareAndSwap(false, true) {
		c.s.conns.Add(-1)
		if u := c.takePinned(); u != nil {
			u.close()
		}
	}
}

// release hands the connection over to a tunnel, which closes the TCPConn
// itself. It still counts as open until the tunnel ends.
func (c *clientConn) release() *net.TCPConn {
	if u := c.takePinned(); u != nil {
		u.close()
	}
	return c.TCPConn
}

// pin keeps an upstream connection for the next request of this client
// connection.
func (c *clientConn) pin(u *upstreamConn) {
	c.pinMu.Lock()
	old := c.pinned
	c.pinned = u
	c.pinMu.Unlock()
	if old != nil && old != u {
		old.close()
	}
	if c.closed.Load() {
		if u := c.takePinned(); u != nil {
			u.close()
		}
	}
}

// takePinned returns the pinned upstream connection, if any, and unpins it.
func (c *clientConn) takePinned() *upstreamConn {
	c.pinMu.Lock()
	defer c.pinMu.Unlock()
	u := c.pinned
	c.pinned = nil
	return u
}

// Write spots the answers net/http sends without calling the handler: a
// 400, 431 or 501 for a request it cannot read, and a 417 for an Expect
// header other than 100-continue. The first carry no Date header, which
// every answer written through a handler has; the 417 is told apart by no
// handler having run for its request.
func (c *clientConn) Write(p []byte) (int, error) {
	if len(p) > 12 && bytes.HasPrefix(p, []byte("HTTP/1.")) && p[9] != '1' {
		handled := c.handled.Swap(false)
		if !c.recorded && !handled && (p[9] == '4' || p[9] == '5') {
			head, body, _ := bytes.Cut(p, []byte("\r\n\r\n"))
			if !bytes.Contains(head, []byte("\r\nDate: ")) ||
				bytes.HasPrefix(head[9:], []byte("417 ")) {
				c.recorded = true
				c.s.recordServerError(c, head, body)
			}
		}
	}
	return c.TCPConn.Write(p)
}

// recordServerError records a request that net/http refused before any
// handler saw it.
func (s *Server) recordServerError(c *clientConn, head, body []byte) {
	start := time.Now()
	status, _ := strconv.Atoi(string(head[9:12]))
	reason := string(bytes.TrimSpace(body))
	switch status {
	case http.StatusBadRequest:
		reason = "malformed request: " + c.requestLine()
		if len(body) > len("400 Bad Request") {
			reason += " (" + truncate(string(body), 100) + ")"
		}
	case http.StatusRequestHeaderFieldsTooLarge:
		reason = fmt.Sprintf("request headers larger than limits.max_header_bytes (%d): %s",
			s.cfg.MaxHeaderBytes, c.requestLine())
	case http.StatusExpectationFailed:
		reason = "unsupported Expect header: " + c.requestLine()
	}
	ev := inspect.Event{
		ID:       s.ids.Next(),
		Time:     start.UTC(),
		Source:   inspect.SourceProxy,
		Sensor:   s.cfg.Sensor,
		ClientIP: remoteIP(c.RemoteAddr().String()),
		Endpoint: inspect.EndpointOther,
		Outcome:  inspect.BadRequest,
		Status:   status,
		Detail:   truncate(reason, 200),
	}
	s.open(&ev)
	s.finish(&inspect.Observation{Event: ev}, start)
}
