package proxy

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/tetrascope/tetrascope/inspect"
)

// fakeUpstream is a small upstream proxy on loopback. It wants Basic
// credentials alice:secret, or an NTLM-style exchange whose second leg must
// arrive on the connection that got the challenge. It refuses
// blocked.example with a Squid error page and does not resolve nx.example.
type fakeUpstream struct {
	ln         net.Listener
	originPort int

	mu          sync.Mutex
	conns       int
	pinnedLegs  int // second NTLM legs seen on the challenged connection
	strayLegs   int // second legs on another connection
	plainAuth   []string
	connectAuth []string
}

func newFakeUpstream(t *testing.T, originPort int) *fakeUpstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &fakeUpstream{ln: ln, originPort: originPort}
	go u.serve()
	t.Cleanup(func() { ln.Close() })
	return u
}

func (u *fakeUpstream) serve() {
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.mu.Lock()
		u.conns++
		u.mu.Unlock()
		go u.handle(c)
	}
}

func ntlmLeg(h string) byte {
	cred, ok := strings.CutPrefix(h, "NTLM ")
	if !ok {
		return 0
	}
	raw, err := base64.StdEncoding.DecodeString(cred)
	if err != nil || len(raw) < 12 {
		return 0
	}
	return raw[8]
}

func (u *fakeUpstream) handle(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	challenged := false
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		auth := req.Header.Get("Proxy-Authorization")
		u.mu.Lock()
		if req.Method == http.MethodConnect {
			u.connectAuth = append(u.connectAuth, auth)
		} else {
			u.plainAuth = append(u.plainAuth, auth)
		}
		u.mu.Unlock()

		reply := func(status int, hdr string) {
			fmt.Fprintf(c, "HTTP/1.1 %d %s\r\n%sContent-Length: 2\r\n\r\nno",
				status, http.StatusText(status), hdr)
		}
		host := req.URL.Hostname()
		if req.Method == http.MethodConnect {
			host, _, _ = net.SplitHostPort(req.Host)
		}
		switch {
		case ntlmLeg(auth) == 1:
			challenged = true
			reply(407, "Proxy-Authenticate: NTLM TlRMTVNTUAACAAAA\r\n")
			continue
		case ntlmLeg(auth) == 3:
			u.mu.Lock()
			if challenged {
				u.pinnedLegs++
			} else {
				u.strayLegs++
			}
			u.mu.Unlock()
			if !challenged {
				reply(407, "Proxy-Authenticate: NTLM\r\n")
				continue
			}
		case auth == "":
			reply(407, "Proxy-Authenticate: Basic realm=\"up\"\r\n")
			continue
		case auth != basic("alice", "secret"):
			reply(407, "Proxy-Authenticate: Basic realm=\"up\"\r\n")
			continue
		case host == "blocked.example":
			reply(403, "X-Squid-Error: ERR_ACCESS_DENIED 0\r\n")
			continue
		case host == "nx.example":
			reply(503, "X-Squid-Error: ERR_DNS_FAIL 0\r\n")
			continue
		}

		if req.Method != http.MethodConnect {
			body := "via upstream " + req.URL.Path
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			continue
		}
		o, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", u.originPort))
		if err != nil {
			reply(503, "X-Squid-Error: ERR_CONNECT_FAIL 111\r\n")
			return
		}
		io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
		go func() { io.Copy(o, br); o.(*net.TCPConn).CloseWrite() }()
		io.Copy(c, o)
		o.Close()
		return
	}
}

// echoOrigin answers every connection with "hello" and closes.
func echoOrigin(t *testing.T) int {
	return serveLoopback(t, func(c net.Conn) { io.WriteString(c, "hello") })
}

// startWithAlice starts a proxy that asks for credentials (alice, password
// "secret") and may reach origin, the port of a loopback server; it
// returns the proxy and origin as a CONNECT target.
func startWithAlice(t *testing.T, origin int) (*fixture, string) {
	t.Helper()
	path := t.TempDir() + "/htpasswd"
	if err := writeFile(path, "alice:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=\n"); err != nil {
		t.Fatal(err)
	}
	f := startChained(t, Upstream{}, path)
	f.srv.ports[origin] = true
	return f, fmt.Sprintf("127.0.0.1:%d", origin)
}

func startChained(t *testing.T, up Upstream, htpasswdPath string) *fixture {
	t.Helper()
	return startWith(t, Config{AllowPorts: []int{443}, Upstream: up, Htpasswd: htpasswdPath})
}

// connectVia sends one CONNECT on c and returns the answer's status.
func connectVia(t *testing.T, c net.Conn, br *bufio.Reader, target, auth string) *http.Response {
	t.Helper()
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n", target, target)
	if auth != "" {
		fmt.Fprintf(c, "Proxy-Authorization: %s\r\n", auth)
	}
	io.WriteString(c, "\r\n")
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestUpstreamConnect(t *testing.T) {
	up := newFakeUpstream(t, echoOrigin(t))
	upURL, _ := url.Parse("http://" + up.ln.Addr().String())

	cases := []struct {
		name      string
		cfg       Upstream
		target    string
		auth      string
		status    int
		outcome   inspect.Outcome
		user      string
		wantEvent func(inspect.Event) bool
	}{
		{"configured credentials", Upstream{URL: upURL, Username: "alice", Password: "secret"},
			"tetra-defs.amp.cisco.com:443", "", 200, "", "", nil},
		{"no credentials", Upstream{URL: upURL}, "tetra-defs.amp.cisco.com:443", "",
			407, inspect.AuthRequired, "", nil},
		{"wrong configured", Upstream{URL: upURL, Username: "alice", Password: "x"},
			"tetra-defs.amp.cisco.com:443", "", 407, inspect.AuthFailed, "", nil},
		{"client's own, wrong", Upstream{URL: upURL, PassClientCredentials: true},
			"tetra-defs.amp.cisco.com:443", basic("bob", "x"), 407, inspect.AuthFailed, "bob", nil},
		{"client's own, right", Upstream{URL: upURL, PassClientCredentials: true},
			"tetra-defs.amp.cisco.com:443", basic("alice", "secret"), 200, "", "alice", nil},
		{"denied by upstream", Upstream{URL: upURL, Username: "alice", Password: "secret"},
			"blocked.example:443", "", 403, inspect.UpstreamRefused, "", nil},
		{"upstream dns failure", Upstream{URL: upURL, Username: "alice", Password: "secret"},
			"nx.example:443", "", 503, inspect.DNSFailure, "", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := startChained(t, tc.cfg, "")
			c, err := net.Dial("tcp", f.proxyURL.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			resp := connectVia(t, c, br, tc.target, tc.auth)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status == 407 && resp.Header.Get("Proxy-Authenticate") == "" {
				t.Fatal("the upstream's challenge did not reach the client")
			}
			if tc.status == 200 {
				got, _ := io.ReadAll(br)
				if string(got) != "hello" {
					t.Fatalf("tunnel carried %q", got)
				}
			}
			c.Close()
			ev := f.rec.next(t)
			if ev.UpstreamStatus != tc.status || ev.Status != tc.status || ev.ClientUser != tc.user {
				t.Fatalf("event %+v", ev)
			}
			if tc.outcome != "" && ev.Outcome != tc.outcome {
				t.Fatalf("outcome %s (%s), want %s", ev.Outcome, ev.Detail, tc.outcome)
			}
		})
	}
}

func TestUpstreamUnreachable(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	upURL, _ := url.Parse("http://" + addr)
	f := startChained(t, Upstream{URL: upURL}, "")
	c, err := net.Dial("tcp", f.proxyURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp := connectVia(t, c, bufio.NewReader(c), "tetra-defs.amp.cisco.com:443", "")
	ev := f.rec.next(t)
	if resp.StatusCode != 502 || ev.Outcome != inspect.UpstreamUnreachable ||
		ev.LastError != uint32(inspect.LastErrorDownloadFailed) {
		t.Fatalf("status %d, event %+v", resp.StatusCode, ev)
	}
}

// TestNTLMPinning proves that the second leg of a connection-bound
// handshake reaches the upstream on the connection that got the challenge.
func TestNTLMPinning(t *testing.T) {
	up := newFakeUpstream(t, echoOrigin(t))
	upURL, _ := url.Parse("http://" + up.ln.Addr().String())
	f := startChained(t, Upstream{URL: upURL, PassClientCredentials: true}, "")

	c, err := net.Dial("tcp", f.proxyURL.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	type1 := "NTLM " + base64.StdEncoding.EncodeToString([]byte("NTLMSSP\x00\x01\x00\x00\x00"))
	resp := connectVia(t, c, br, "tetra-defs.amp.cisco.com:443", type1)
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 407 || !strings.HasPrefix(resp.Header.Get("Proxy-Authenticate"), "NTLM ") {
		t.Fatalf("first leg: %d %q", resp.StatusCode, resp.Header.Get("Proxy-Authenticate"))
	}
	first := f.rec.next(t)
	if first.Outcome != inspect.AuthRequired || first.LastError != 0 {
		t.Fatalf("a challenge must not count as a failure: %+v", first)
	}

	type3 := "NTLM " + base64.StdEncoding.EncodeToString(ntlmType3("CORP", "WS01$"))
	resp = connectVia(t, c, br, "tetra-defs.amp.cisco.com:443", type3)
	if resp.StatusCode != 200 {
		t.Fatalf("second leg: %d", resp.StatusCode)
	}
	got, _ := io.ReadAll(br)
	if string(got) != "hello" {
		t.Fatalf("tunnel carried %q", got)
	}
	c.Close()
	second := f.rec.next(t)
	if second.ClientUser != `CORP\WS01$` || second.Status != 200 {
		t.Fatalf("second event %+v", second)
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if up.pinnedLegs != 1 || up.strayLegs != 0 || up.conns != 1 {
		t.Fatalf("pinned %d, stray %d, upstream connections %d", up.pinnedLegs, up.strayLegs,
			up.conns)
	}
}

func TestUpstreamPlainHTTP(t *testing.T) {
	up := newFakeUpstream(t, 0)
	upURL, _ := url.Parse("http://" + up.ln.Addr().String())
	f := startChained(t, Upstream{URL: upURL, Username: "alice", Password: "secret"}, "")
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(f.proxyURL)}}
	for i := 0; i < 3; i++ {
		resp, err := c.Get("http://crl.identrust.com/root.crl")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "via upstream /root.crl" {
			t.Fatalf("body %q", body)
		}
		ev := f.rec.next(t)
		if ev.Outcome != inspect.OK || ev.Endpoint != inspect.EndpointRevocation || ev.UpstreamStatus != 200 {
			t.Fatalf("event %+v", ev)
		}
	}
	resp, err := c.Get("http://nx.example/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ev := f.rec.next(t); ev.Outcome != inspect.DNSFailure || ev.Status != 503 {
		t.Fatalf("event %+v", ev)
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	// Keep-alive from the client keeps one pinned upstream connection.
	if up.conns != 1 {
		t.Fatalf("%d upstream connections for one client connection", up.conns)
	}
	for _, a := range up.plainAuth {
		if a != basic("alice", "secret") {
			t.Fatalf("upstream got Proxy-Authorization %q", a)
		}
	}
}

func TestClientAuth(t *testing.T) {
	f, target := startWithAlice(t, echoOrigin(t))
	cases := []struct {
		name    string
		auth    string
		status  int
		outcome inspect.Outcome
		user    string
	}{
		{"missing", "", 407, inspect.AuthRequired, ""},
		{"wrong", basic("alice", "nope"), 407, inspect.AuthFailed, "alice"},
		{"malformed", "Basic ###", 407, inspect.AuthFailed, ""},
		{"right", basic("alice", "secret"), 200, "", "alice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", f.proxyURL.Host)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			resp := connectVia(t, c, bufio.NewReader(c), target, tc.auth)
			c.Close()
			ev := f.rec.next(t)
			if resp.StatusCode != tc.status || ev.Status != tc.status || ev.ClientUser != tc.user {
				t.Fatalf("status %d, event %+v", resp.StatusCode, ev)
			}
			if tc.status == 407 && !strings.Contains(resp.Header.Get("Proxy-Authenticate"), "tetrascope") {
				t.Fatalf("challenge %q", resp.Header.Get("Proxy-Authenticate"))
			}
			if tc.outcome != "" && ev.Outcome != tc.outcome {
				t.Fatalf("outcome %s", ev.Outcome)
			}
			if strings.Contains(fmt.Sprintf("%+v", ev), "secret") {
				t.Fatal("the password reached the event")
			}
		})
	}
}
