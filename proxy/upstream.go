package proxy

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// Upstream is the proxy tetrascope chains to. The zero Upstream means
// direct connections.
type Upstream struct {
	URL                   *url.URL // nil: connect to origins directly
	Username, Password    string   // credentials to send; empty: none
	PassClientCredentials bool     // send each client's own Proxy-Authorization
	Direct                *inspect.Patterns
}

// upstreamConn is one connection to the upstream proxy. It is pinned to the
// client connection that opened it, so that connection-bound schemes (NTLM,
// Negotiate) see every leg of their 407 exchange on one connection.
type upstreamConn struct {
	conn *net.TCPConn
	br   *bufio.Reader
}

func (u *upstreamConn) close() { _ = u.conn.Close() }

// viaUpstream reports whether requests for host go through the upstream.
func (s *Server) viaUpstream(host string) bool {
	return s.cfg.Upstream.URL != nil && !s.cfg.Upstream.Direct.Match(host)
}

// upstreamConnFor returns the connection pinned to the client connection
// cc, or a new one. Its errors are *dialError with upstream_unreachable.
func (s *Server) upstreamConnFor(r *http.Request, cc *clientConn) (*upstreamConn, error) {
	if cc != nil {
		if u := cc.takePinned(); u != nil {
			return u, nil
		}
	}
	up := s.cfg.Upstream.URL
	host := up.Hostname()
	port, _ := strconv.Atoi(up.Port())
	if port == 0 {
		port = 3128
	}
	c, err := s.dial(r.Context(), host, port)
	if err != nil {
		var de *dialError
		errors.As(err, &de)
		return nil, &dialError{inspect.UpstreamUnreachable, http.StatusBadGateway,
			fmt.Sprintf("upstream proxy %s: %s", up.Host, de.detail)}
	}
	return &upstreamConn{conn: c, br: bufio.NewReaderSize(c, 4096)}, nil
}

// upstreamAuth returns the Proxy-Authorization to send upstream for a
// client that sent clientAuth.
func (s *Server) upstreamAuth(clientAuth string) string {
	u := s.cfg.Upstream
	switch {
	case u.Username != "":
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(u.Username+":"+u.Password))
	case u.PassClientCredentials:
		return clientAuth
	}
	return ""
}

// connectUpstream serves a CONNECT through the upstream proxy, keeping its
// answer: a 407 stays a 407 for the client, and a refusal keeps its status
// and its words.
func (s *Server) connectUpstream(w http.ResponseWriter, r *http.Request, o *inspect.Observation,
	start time.Time, clientAuth string) {
	ev := &o.Event
	cc, _ := r.Context().Value(connKey{}).(*clientConn)
	uc, err := s.upstreamConnFor(r, cc)
	if err != nil {
		s.refuse(w, o, start, err.(*dialError))
		return
	}

	// Ask the upstream for the tunnel.
	target := net.JoinHostPort(ev.Host, strconv.Itoa(ev.Port))
	auth := s.upstreamAuth(clientAuth)
	var b strings.Builder
	fmt.Fprintf(&b, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", target, target)
	if auth != "" {
		fmt.Fprintf(&b, "Proxy-Authorization: %s\r\n", auth)
	}
	b.WriteString("\r\n")
	_ = uc.conn.SetDeadline(time.Now().Add(s.cfg.ConnectTimeout + s.cfg.ReadHeaderTimeout))
	_, err = io.WriteString(uc.conn, b.String())
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(uc.br, r)
	}
	if err != nil {
		uc.close()
		s.refuse(w, o, start, &dialError{inspect.UpstreamUnreachable, http.StatusBadGateway,
			fmt.Sprintf("upstream proxy %s did not answer the CONNECT: %v",
				s.cfg.Upstream.URL.Host, unwrapSyscall(err))})
		return
	}
	_ = uc.conn.SetDeadline(time.Time{})
	ev.UpstreamStatus = resp.StatusCode

	if resp.StatusCode/100 == 2 {
		// Bytes the upstream sent behind its answer belong to the server.
		var early []byte
		if n := uc.br.Buffered(); n > 0 {
			early, _ = uc.br.Peek(n)
			early = append([]byte(nil), early...)
		}
		s.tunnel(w, r, o, start, uc.conn, early)
		return
	}

	// Relay the refusal as the upstream worded it.
	ev.Outcome, ev.Detail = upstreamVerdict(resp, auth, clientAuth != "" && auth == clientAuth)
	ev.Status = resp.StatusCode
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	keep := resp.StatusCode == http.StatusProxyAuthRequired && !resp.Close && cc != nil
	if keep {
		cc.pin(uc)
	} else {
		uc.close()
		w.Header().Set("Connection", "close")
	}
	copyEndToEnd(w.Header(), resp.Header)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(body)
	s.finish(o, start)
}

// upstreamVerdict classifies a non-2xx answer of the upstream proxy. sent is
// the Proxy-Authorization we sent; passed says it was the client's own.
func upstreamVerdict(resp *http.Response, sent string, passed bool) (inspect.Outcome, string) {
	up := fmt.Sprintf("upstream proxy answered %d %s", resp.StatusCode,
		http.StatusText(resp.StatusCode))
	if resp.StatusCode == http.StatusProxyAuthRequired {
		switch {
		case sent == "" || challengeLeg(sent):
			return inspect.AuthRequired, up + " (challenge" + schemes(resp) + ")"
		case passed:
			return inspect.AuthFailed, up + ": the client's credentials were rejected"
		default:
			return inspect.AuthFailed, up + ": upstream.username's credentials were rejected"
		}
	}
	if name := resp.Header.Get("X-Squid-Error"); name != "" {
		code, rest, _ := strings.Cut(name, " ")
		if o, ok := inspect.SquidErrorOutcome(code, rest); ok && o != inspect.AuthRequired {
			return o, up + ", X-Squid-Error: " + truncate(name, 80)
		}
		return inspect.UpstreamRefused, up + ", X-Squid-Error: " + truncate(name, 80)
	}
	return inspect.UpstreamRefused, up
}

// challengeLeg reports whether credentials are the first leg of a
// connection-bound handshake (an NTLM type-1 message), whose 407 answer is
// a normal challenge, not a rejection.
func challengeLeg(auth string) bool {
	scheme, cred, _ := strings.Cut(strings.TrimSpace(auth), " ")
	if !strings.EqualFold(scheme, "NTLM") && !strings.EqualFold(scheme, "Negotiate") {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil || len(raw) < 12 || string(raw[:8]) != "NTLMSSP\x00" {
		// A Kerberos token: one leg, no challenge in between.
		return false
	}
	return raw[8] == 1
}

func schemes(resp *http.Response) string {
	var out []string
	for _, v := range resp.Header.Values("Proxy-Authenticate") {
		scheme, _, _ := strings.Cut(v, " ")
		out = append(out, scheme)
	}
	if len(out) == 0 {
		return ""
	}
	return ": " + strings.Join(out, ", ")
}

// hopByHop are the headers that belong to one connection only.
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Content-Length": true,
}

// copyEndToEnd copies the headers of an upstream answer that are meant for
// the client. Proxy-Authenticate is kept: the client must see the challenge.
func copyEndToEnd(dst, src http.Header) {
	for k, vs := range src {
		if hopByHop[k] {
			continue
		}
		dst[k] = append([]string(nil), vs...)
	}
}

// refuse answers a request that could not be forwarded.
func (s *Server) refuse(w http.ResponseWriter, o *inspect.Observation, start time.Time,
	de *dialError) {
	ev := &o.Event
	ev.Outcome, ev.Status, ev.Detail = de.outcome, de.status, de.detail
	w.Header().Set("Connection", "close")
	http.Error(w, de.detail, de.status)
	s.finish(o, start)
}

// upstreamRoundTrip sends a plain-HTTP request through the upstream proxy
// on the connection pinned to the client's.
func (s *Server) upstreamRoundTrip(r *http.Request, st *httpObs) (*http.Response, error) {
	uc, err := s.upstreamConnFor(r, st.cc)
	if err != nil {
		return nil, err
	}
	r.Header.Del("Proxy-Authorization")
	if auth := s.upstreamAuth(st.clientAuth); auth != "" {
		r.Header.Set("Proxy-Authorization", auth)
	}
	_ = uc.conn.SetDeadline(time.Now().Add(s.cfg.IdleTimeout))
	err = r.WriteProxy(uc.conn)
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(uc.br, r)
	}
	if err != nil {
		uc.close()
		return nil, &dialError{inspect.UpstreamUnreachable, http.StatusBadGateway,
			fmt.Sprintf("upstream proxy %s did not answer: %v", s.cfg.Upstream.URL.Host,
				unwrapSyscall(err))}
	}
	st.sentAuth = r.Header.Get("Proxy-Authorization")
	resp.Body = &pinnedBody{ReadCloser: resp.Body, uc: uc, cc: st.cc, keep: !resp.Close}
	return resp, nil
}

// pinnedBody gives the upstream connection back to its client connection
// once the answer has been read to its end.
type pinnedBody struct {
	io.ReadCloser
	uc   *upstreamConn
	cc   *clientConn
	keep bool
	eof  bool
}

func (b *pinnedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *pinnedBody) Close() error {
	err := b.ReadCloser.Close()
	_ = b.uc.conn.SetDeadline(time.Time{})
	if b.eof && b.keep && b.cc != nil {
		b.cc.pin(b.uc)
	} else {
		b.uc.close()
	}
	return err
}
