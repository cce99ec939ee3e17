// Package ui is the HTTP server on the --ui address: the REST API over the
// event store, the websocket stream that fans live events out to viewers,
// the health check and the embedded live page. It talks to the store and
// the proxy only through the small interfaces of Deps, which cmd wires.
package ui

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/tetrascope/tetrascope/inspect"
)

// Config is what the UI server needs from the configuration.
type Config struct {
	// Listen is the address Run listens on (the ui.listen key, --ui).
	Listen string
	// Token, when set, is required on every path but /healthz, as
	// "Authorization: Bearer TOKEN" or a token query parameter. Empty: no
	// authentication.
	Token string
	// Sensor names this instance on the live page and in stats messages.
	// Empty: not shown.
	Sensor string
}

// EventSource queries stored events; the store implements it.
type EventSource interface {
	// Events returns the events that match f, newest first, at most
	// f.Limit of them.
	Events(ctx context.Context, f inspect.Filter) ([]inspect.Event, error)
}

// Deps are the parts of the running program the UI reads. Every field may be
// nil; the doc of each says what nil means. The UI calls them from many
// goroutines at once (requests, stream handlers), so they must be safe for
// concurrent use.
type Deps struct {
	// Events is the store. Nil: /api/v1/events answers 503 and the stream
	// replays nothing.
	Events EventSource
	// Active returns the tunnels open now, with bytes so far. Nil: none.
	Active func() []inspect.Event
	// Health returns the reasons the service is degraded; none means
	// healthy. Nil: always healthy.
	Health func() []string
	// Stats returns the counters of the stats message sent to each
	// viewer about once a second (such as events_total, dropped, active,
	// store_errors); the UI adds viewers, viewers_dropped and sensor. Nil:
	// the message carries only the UI's own counters.
	Stats func() map[string]any
	// Clients returns every client's health as of now, failing first.
	// Nil: /api/v1/clients answers 503 and the stream sends no client
	// messages at its start (PublishClient still forwards changes).
	Clients func() []inspect.Client
	// Metrics serves /metrics, behind the token like every other path
	// but /healthz. Nil: /metrics answers 404.
	Metrics http.Handler
	// Report serves GET /api/v1/report and LastErrors POST
	// /api/v1/lasterrors, both behind the token. Nil: 404.
	Report, LastErrors http.Handler
	// Logger receives the server's logs. Nil: logs are discarded.
	Logger *slog.Logger
}

// Log keys of this package.
const (
	keyAddr          = "addr"
	keyTokenRequired = "token_required"
	keyRemoteAddr    = "remote_addr"
	keyViewers       = "viewers"
	keyReason        = "reason"
	keyErr           = "error"
)

// Server serves the UI and fans events out to websocket viewers. Create it
// with New; its methods are safe for concurrent use.
type Server struct {
	cfg     Config
	deps    Deps
	log     *slog.Logger
	handler http.Handler
	page    *template.Template

	upgrader websocket.Upgrader

	// Stream timings and sizes; tests shorten them. viewerBuffer is the
	// length of the stream's log: how many messages a viewer may fall
	// behind before it is dropped.
	viewerBuffer int
	writeWait    time.Duration
	pongWait     time.Duration
	pingPeriod   time.Duration
	statsPeriod  time.Duration

	// viewers is the list Publish reads without a lock; addViewer and
	// removeViewer replace it, under mu, with a changed copy.
	viewers  atomic.Pointer[[]*viewer]
	stream   atomic.Pointer[streamLog] // set when the first viewer joins
	mu       sync.Mutex
	closed   bool           // set on shutdown, under mu; no viewer joins after it
	handlers sync.WaitGroup // stream handlers still running

	nviewers  atomic.Int64  // viewers not yet stopped
	slow      atomic.Int64  // viewers dropped because their buffer was full
	clientSeq atomic.Uint64 // numbers the client messages, in publish order
}

// Defaults of the stream.
const (
	defaultViewerBuffer = 1024
	defaultWriteWait    = 10 * time.Second
	defaultPongWait     = 60 * time.Second
	defaultStatsPeriod  = time.Second
	shutdownWait        = 5 * time.Second
)

// New returns a server for cfg that reads from d. It does not listen; use
// Run, or mount Handler in a server of one's own (whose shutdown then does
// not close the websockets: only Run's does).
func New(cfg Config, d Deps) *Server {
	s := &Server{
		cfg:          cfg,
		deps:         d,
		log:          d.Logger,
		page:         pageTemplate,
		viewerBuffer: defaultViewerBuffer,
		writeWait:    defaultWriteWait,
		pongWait:     defaultPongWait,
		pingPeriod:   defaultPongWait * 9 / 10,
		statsPeriod:  defaultStatsPeriod,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.upgrader = websocket.Upgrader{
		ReadBufferSize:  1024,
		WriteBufferSize: 4096,
		CheckOrigin:     sameOrigin,
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.servePage)
	mux.Handle("GET /static/", staticHandler())
	mux.HandleFunc("GET /api/v1/events", s.serveEvents)
	mux.HandleFunc("GET /api/v1/active", s.serveActive)
	mux.HandleFunc("GET /api/v1/clients", s.serveClients)
	mux.HandleFunc("GET /api/v1/stream", s.serveStream)
	if d.Report != nil {
		mux.Handle("GET /api/v1/report", d.Report)
	}
	if d.LastErrors != nil {
		mux.Handle("POST /api/v1/lasterrors", d.LastErrors)
	}
	mux.HandleFunc("GET /healthz", s.serveHealth)
	if d.Metrics != nil {
		mux.Handle("GET /metrics", d.Metrics)
	}
	s.handler = secureHeaders(sameSiteWrites(s.requireToken(mux)))
	return s
}

// Handler returns the handler of every path of the UI, authentication
// included.
func (s *Server) Handler() http.Handler { return s.handler }

// Run listens on cfg.Listen and serves until ctx is done; then it closes
// every websocket with a reason and shuts the server down, waiting a few
// seconds for requests in flight. It returns nil after a shutdown caused by
// ctx, and an error when it cannot listen or serving fails.
func (s *Server) Run(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", s.cfg.Listen, err)
	}
	return s.serve(ctx, ln)
}

// serve is Run on a listener of the caller's.
func (s *Server) serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	s.log.Info("ui listening", keyAddr, ln.Addr().String(),
		keyTokenRequired, s.cfg.Token != "")

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		s.closeViewers()
		return fmt.Errorf("serving ui: %w", err)
	case <-ctx.Done():
	}

	// Viewers first: their connections are hijacked, so Shutdown does not
	// see them.
	s.closeViewers()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownWait)
	defer cancel()
	err := srv.Shutdown(sctx)
	if werr := s.waitHandlers(sctx); err == nil {
		err = werr
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	s.log.Info("ui stopped", keyAddr, ln.Addr().String())
	if err != nil {
		return fmt.Errorf("shutting down ui: %w", err)
	}
	return nil
}

// waitHandlers waits until every stream handler has returned or ctx is done.
func (s *Server) waitHandlers(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.handlers.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for websockets: %w", ctx.Err())
	}
}

// requireToken checks the token on every path but /healthz. The token is
// compared in constant time and never logged.
func (s *Server) requireToken(next http.Handler) http.Handler {
	if s.cfg.Token == "" {
		return next
	}
	want := []byte(s.cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			next.ServeHTTP(w, r)
			return
		}
		got, _ := requestToken(r)
		if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tetrascope"`)
			writeError(w, http.StatusUnauthorized, "",
				"a token is required: Authorization: Bearer TOKEN or ?token=TOKEN")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// sameSiteWrites refuses a request that would change something (any method
// but GET and HEAD) when a browser says another site sent it: without a
// token, any page the admin has open could otherwise post a form here (a
// text/plain POST needs no preflight) and replace the endpoints' values.
// Tools such as curl send no Origin and pass.
func sameSiteWrites(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead &&
			(!sameOrigin(r) || r.Header.Get("Sec-Fetch-Site") == "cross-site") {
			writeError(w, http.StatusForbidden, "",
				"a page of another site may not change anything here (Origin "+
					strconv.Quote(r.Header.Get("Origin"))+")")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// requestToken returns the token a request carries and whether it came in
// the query (rather than the Authorization header).
func requestToken(r *http.Request) (token string, inQuery bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok), false
		}
	}
	if tok := r.URL.Query().Get("token"); tok != "" {
		return tok, true
	}
	return "", false
}

// secureHeaders sets the headers every answer carries: nothing is cached
// (answers hold live data, and page links may carry the token), nothing is
// framed, and no referrer leaks the token.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

// serveHealth answers 200 "ok", or 503 with one reason a line.
func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	var reasons []string
	if s.deps.Health != nil {
		reasons = s.deps.Health()
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(reasons) == 0 {
		_, _ = w.Write([]byte("ok"))
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	_, _ = w.Write([]byte(strings.Join(reasons, "\n") + "\n"))
}
