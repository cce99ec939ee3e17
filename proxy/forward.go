package proxy

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/elazarl/goproxy"

	"github.com/tetrascope/tetrascope/inspect"
)

// newGoproxy sets up goproxy for plain HTTP. Every request goes out through
// roundTrip (our own origin client, or the upstream proxy). Every hook that
// would read the environment or dial on its own is set explicitly anyway:
// goproxy's transport, which none of our requests reaches, has no proxy,
// dials through our resolver and keeps no connection; CONNECT never
// reaches goproxy.
func (s *Server) newGoproxy() *goproxy.ProxyHttpServer {
	gp := goproxy.NewProxyHttpServer()
	gp.Logger = log.New(io.Discard, "", 0)
	gp.Verbose = false
	gp.KeepAcceptEncoding = true
	gp.ConnectDial = nil
	gp.ConnectDialWithReq = nil
	gp.Tr = &http.Transport{
		Proxy:              nil,
		DialContext:        s.dialHTTP,
		DisableKeepAlives:  true,
		DisableCompression: true,
	}
	rt := goproxy.RoundTripperFunc(s.roundTrip)
	gp.OnRequest().DoFunc(func(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		ctx.RoundTripper = rt
		return r, nil
	})
	gp.OnResponse().DoFunc(func(resp *http.Response, ctx *goproxy.ProxyCtx) *http.Response {
		if resp != nil || ctx.Error == nil {
			return resp
		}
		if st, ok := ctx.Req.Context().Value(httpObsKey{}).(*httpObs); ok {
			st.err = ctx.Error
		}
		return errorResponse(ctx.Req, ctx.Error)
	})
	return gp
}

type httpObsKey struct{}

// httpObs collects what the transport saw of one plain-HTTP request.
type httpObs struct {
	o          *inspect.Observation
	bodyErr    atomic.Value // string
	silent     atomic.Bool  // the origin stopped sending for timeouts.idle
	err        error        // why the origin never answered
	cc         *clientConn  // the client's connection, for pinning; may be nil
	upstream   bool         // sent through the upstream proxy
	clientAuth string       // the client's Proxy-Authorization, before goproxy strips it
	sentAuth   string       // what we sent upstream
	outcome    inspect.Outcome
	detail     string
}

// dialHTTP dials an origin for the transport, with the typed errors of dial.
func (s *Server) dialHTTP(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, _ := strconv.Atoi(portStr)
	return s.dial(ctx, host, port)
}

// roundTrip sends the request and notes the origin's answer.
func (s *Server) roundTrip(r *http.Request, ctx *goproxy.ProxyCtx) (*http.Response, error) {
	st, _ := r.Context().Value(httpObsKey{}).(*httpObs)
	if st == nil {
		return nil, errors.New("request without observation")
	}
	var resp *http.Response
	var err error
	if st.upstream {
		resp, err = s.upstreamRoundTrip(r, st)
	} else {
		resp, err = s.originRoundTrip(r, st)
	}
	if err != nil {
		return resp, err
	}
	// Upgrades are not relayed over plain HTTP (the request went out
	// without its Upgrade header): goproxy would take the connection over
	// for a websocket and leave it to nobody. An origin that switches
	// anyway is a broken answer.
	if resp.StatusCode == http.StatusSwitchingProtocols {
		_ = resp.Body.Close()
		return nil, errors.New("the origin switched protocols (101) although no upgrade " +
			"was asked; this proxy relays upgrades only through CONNECT")
	}
	resp.Header.Del("Upgrade")
	st.o.Event.UpstreamStatus = resp.StatusCode
	if st.upstream && (resp.StatusCode == http.StatusProxyAuthRequired ||
		resp.Header.Get("X-Squid-Error") != "") {
		passed := st.clientAuth != "" && st.sentAuth == st.clientAuth
		st.outcome, st.detail = upstreamVerdict(resp, st.sentAuth, passed)
	}
	st.o.ContentLength = resp.ContentLength
	if resp.Body != nil && resp.Body != http.NoBody {
		resp.Body = &watchedBody{ReadCloser: resp.Body, st: st}
	}
	return resp, nil
}

// watchedBody notes why reading an origin's body failed.
type watchedBody struct {
	io.ReadCloser
	st *httpObs
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		b.st.bodyErr.Store(err.Error())
		if errors.Is(err, errOriginSilent) {
			b.st.silent.Store(true)
		}
	}
	return n, err
}

// errorResponse answers a request the transport could not send.
func errorResponse(r *http.Request, err error) *http.Response {
	status, text := http.StatusBadGateway, err.Error()
	var de *dialError
	if errors.As(err, &de) {
		status, text = de.status, de.detail
	} else if errors.Is(err, context.DeadlineExceeded) {
		status = http.StatusGatewayTimeout
	}
	body := text + "\n"
	return &http.Response{
		StatusCode:    status,
		Status:        strconv.Itoa(status) + " " + http.StatusText(status),
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       r,
	}
}

// forward relays a plain-HTTP request through goproxy and completes the
// observation.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, o *inspect.Observation,
	clientAuth string) {
	cc, _ := r.Context().Value(connKey{}).(*clientConn)
	st := &httpObs{o: o, cc: cc, upstream: s.viaUpstream(o.Event.Host), clientAuth: clientAuth}
	var reqBody *countingReader
	if r.Body != nil && r.Body != http.NoBody {
		reqBody = &countingReader{ReadCloser: r.Body}
		r.Body = reqBody
	}
	cw := &countingWriter{ResponseWriter: w}
	// Upgrade is hop-by-hop; like Squid by default, the request goes on as
	// an ordinary one (goproxy keeps the header for websockets).
	r.Header.Del("Upgrade")
	r = r.WithContext(context.WithValue(r.Context(), httpObsKey{}, st))
	s.gp.ServeHTTP(cw, r)

	ev := &o.Event
	ev.Status = cw.status
	ev.BytesDown = cw.n
	if reqBody != nil {
		ev.BytesUp = reqBody.n
	}
	if e, _ := st.bodyErr.Load().(string); e != "" {
		o.BodyErr = e
	}
	if cw.err != nil && o.BodyErr == "" {
		o.BodyErr = "client went away: " + cw.err.Error()
		ev.Close = inspect.ClientRST
	}
	if st.silent.Load() {
		ev.Close = inspect.IdleTimeout
	}
	switch {
	case ev.UpstreamStatus == 0:
		// The origin never answered: the transport failed.
		o.ContentLength = -1
		ev.Outcome, ev.Detail = transportFailure(st.err)
	case st.outcome != "":
		ev.Outcome, ev.Detail = st.outcome, st.detail
	}
}

// transportFailure classifies a request whose origin never answered.
func transportFailure(err error) (inspect.Outcome, string) {
	var de *dialError
	switch {
	case errors.As(err, &de):
		return de.outcome, de.detail
	case errors.Is(err, context.DeadlineExceeded):
		return inspect.ConnectTimeout, "origin did not answer in time"
	case err == nil:
		return inspect.DownloadAborted, "no answer from the origin"
	}
	return inspect.DownloadAborted, "origin failed before answering: " + err.Error()
}

// countingWriter counts what is written to the client.
type countingWriter struct {
	http.ResponseWriter
	status int
	n      int64
	err    error
}

func (w *countingWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	if err != nil && w.err == nil {
		w.err = err
	}
	return n, err
}

// copyBufs are the buffers of countingWriter.ReadFrom.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// ReadFrom copies a response body to the client with a pooled buffer:
// without it, io.Copy (goproxy's) would allocate 32 KiB per request.
func (w *countingWriter) ReadFrom(src io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	return io.CopyBuffer(writeOnly{w}, src, *bp)
}

// writeOnly hides countingWriter's ReadFrom from io.CopyBuffer, which would
// otherwise call it again.
type writeOnly struct{ w *countingWriter }

func (o writeOnly) Write(p []byte) (int, error) { return o.w.Write(p) }

// Flush passes flushes through for streamed answers.
func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the writer underneath.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingReader counts the request body sent upstream.
type countingReader struct {
	io.ReadCloser
	n int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n += int64(n)
	return n, err
}
