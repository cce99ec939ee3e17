package tlsrec

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// withoutBytes returns r with BytesSeen cleared, for comparing results of
// streams that differ only in framing.
func withoutBytes(r Result) Result {
	r.BytesSeen = [2]int64{}
	return r
}

// checkResult compares the result of every way of feeding chunks with want
// (BytesSeen aside), checks that they all agree with each other exactly,
// and that each direction is done as wantDone says.
func checkResult(t *testing.T, chunks []chunk, want Result, wantDone [2]bool) {
	t.Helper()
	var first Result
	for i, f := range feeders {
		tr, got := run(t, f, chunks)
		if withoutBytes(got) != want {
			t.Errorf("%s: result\n got  %+v\n want %+v", f.name, withoutBytes(got), want)
		}
		if i == 0 {
			first = got
		} else if got != first {
			t.Errorf("%s: result differs from %s:\n got  %+v\n want %+v",
				f.name, feeders[0].name, got, first)
		}
		for dir := range 2 {
			d := Direction(dir)
			if tr.Done(d) != wantDone[dir] {
				t.Errorf("%s: Done(%v) = %v, want %v", f.name, d, tr.Done(d), wantDone[dir])
			}
			if total := int64(len(stream(chunks, d))); got.BytesSeen[dir] > total {
				t.Errorf("%s: BytesSeen[%v] = %d, more than the %d sent",
					f.name, d, got.BytesSeen[dir], total)
			}
		}
		checkInvariants(t, tr, got)
	}
}

// checkInvariants checks what must hold of any result, whatever was fed.
func checkInvariants(tb testing.TB, tr *Tracker, r Result) {
	tb.Helper()
	fail := func(what string) { tb.Errorf("invariant broken: %s in %+v", what, r) }
	if r.NotTLS && (r.TLS || r.ClientHello) {
		fail("NotTLS with TLS or ClientHello")
	}
	if r.Complete && (!r.ClientHello || !r.ServerHello) {
		fail("Complete without both hellos")
	}
	if r.Certificate && (!r.ServerHello || r.Version == "TLS 1.3") {
		fail("Certificate without a TLS <= 1.2 ServerHello")
	}
	if (r.ServerFlightDone || r.EncryptedAlertLikely) && !r.ServerHello {
		fail("server flight without a ServerHello")
	}
	if r.ServerHello != (r.Version != "") {
		fail("ServerHello and Version disagree")
	}
	if r.EncryptedAlertLikely && r.Complete {
		fail("both EncryptedAlertLikely and Complete")
	}
	if r.SNI != "" && !validHostName([]byte(r.SNI)) {
		fail("SNI not a printable name")
	}
	if r.Alert == "" && (r.AlertFatal || r.AlertFrom != 0) {
		fail("alert details without an alert")
	}
	if r.Err != "" && !tr.Done(ClientToServer) && !tr.Done(ServerToClient) {
		fail("Err with no direction done")
	}
	if len(r.LeafIssuer) > maxNameLen || len(r.LeafSubject) > maxNameLen {
		fail("certificate name too long")
	}
	maxBytes := tr.MaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for dir := range 2 {
		if r.BytesSeen[dir] > maxBytes {
			fail("BytesSeen above MaxBytes")
		}
		if c := cap(tr.dirs[dir].hs.buf); c > MaxHandshakeLen {
			tb.Errorf("handshake buffer of %v holds %d bytes", Direction(dir), c)
		}
	}
}

func TestHandshakes(t *testing.T) {
	p := getPKI(t)
	const v12, v13 = tls.VersionTLS12, tls.VersionTLS13
	ok12 := Result{
		TLS: true, SNI: testHost, ClientHello: true, ServerHello: true, Version: "TLS 1.2",
		Certificate: true, LeafIssuer: p.caName, LeafSubject: p.leafName,
		ServerFlightDone: true, Complete: true,
	}
	ok13 := Result{
		TLS: true, SNI: testHost, ClientHello: true, ServerHello: true, Version: "TLS 1.3",
		ServerFlightDone: true, Complete: true,
	}
	change := func(r Result, f func(*Result)) Result {
		f(&r)
		return r
	}
	both := [2]bool{true, true}
	sendClientCert := func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &p.clientCert, nil
	}

	tests := []struct {
		name     string
		version  uint16 // both sides limited to it; 0: as setup says
		setup    func(server, client *tls.Config)
		resume   bool // capture a second connection resuming the first
		fails    bool // the handshake is meant to fail
		want     Result
		wantDone [2]bool
	}{
		{name: "TLS 1.2", version: v12, want: ok12, wantDone: both},
		{name: "TLS 1.3", version: v13, want: ok13, wantDone: both},
		{
			name: "TLS 1.2 resumed", version: v12, resume: true, wantDone: both,
			want: change(ok12, func(r *Result) {
				r.Certificate, r.LeafIssuer, r.LeafSubject = false, "", ""
			}),
		},
		{name: "TLS 1.3 resumed", version: v13, resume: true, want: ok13, wantDone: both},
		{
			name: "TLS 1.3 HelloRetryRequest", version: v13, want: ok13, wantDone: both,
			setup: func(server, client *tls.Config) {
				server.CurvePreferences = []tls.CurveID{tls.CurveP256}
				client.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP256}
			},
		},
		{
			name: "TLS 1.2 without SNI", version: v12, wantDone: both,
			want: change(ok12, func(r *Result) { r.SNI = "" }),
			setup: func(_, client *tls.Config) {
				client.ServerName = ""
				client.InsecureSkipVerify = true
			},
		},
		{
			name: "TLS 1.3 IP address sends no SNI", version: v13, wantDone: both,
			want:  change(ok13, func(r *Result) { r.SNI = "" }),
			setup: func(_, client *tls.Config) { client.ServerName = "127.0.0.1" },
		},
		{
			name: "TLS 1.2 client rejects certificate", version: v12, fails: true,
			wantDone: both,
			want: change(ok12, func(r *Result) {
				r.Complete = false
				r.Alert, r.AlertFrom, r.AlertFatal = "bad_certificate", ClientToServer, true
			}),
			setup: func(_, client *tls.Config) { client.RootCAs = x509.NewCertPool() },
		},
		{
			name: "TLS 1.3 client rejects certificate", version: v13, fails: true,
			wantDone: both,
			want: change(ok13, func(r *Result) {
				r.Complete, r.EncryptedAlertLikely = false, true
			}),
			setup: func(_, client *tls.Config) { client.RootCAs = x509.NewCertPool() },
		},
		{
			name: "TLS 1.2 server requires a client certificate", version: v12, fails: true,
			wantDone: both,
			want: change(ok12, func(r *Result) {
				r.Complete = false
				r.Alert, r.AlertFrom, r.AlertFatal = "handshake_failure", ServerToClient, true
			}),
			setup: func(server, _ *tls.Config) { server.ClientAuth = tls.RequireAnyClientCert },
		},
		{
			name: "TLS 1.2 server rejects client certificate", version: v12, fails: true,
			wantDone: both,
			want: change(ok12, func(r *Result) {
				r.Complete = false
				r.Alert, r.AlertFrom, r.AlertFatal = "unknown_ca", ServerToClient, true
			}),
			setup: func(server, client *tls.Config) {
				server.ClientAuth = tls.RequireAndVerifyClientCert
				server.ClientCAs = p.roots
				client.GetClientCertificate = sendClientCert
			},
		},
		{
			// The server's alert is encrypted and comes after the
			// client's Finished: from the records alone the handshake
			// completed. This is the limit of inference for TLS 1.3.
			name: "TLS 1.3 server rejects client certificate", version: v13, fails: true,
			wantDone: both, want: ok13,
			setup: func(server, client *tls.Config) {
				server.ClientAuth = tls.RequireAndVerifyClientCert
				server.ClientCAs = p.roots
				client.GetClientCertificate = sendClientCert
			},
		},
		{
			name: "no common version", fails: true, wantDone: both,
			want: Result{
				TLS: true, SNI: testHost, ClientHello: true,
				Alert: "protocol_version", AlertFrom: ServerToClient, AlertFatal: true,
			},
			setup: func(server, client *tls.Config) {
				server.MinVersion = tls.VersionTLS13
				client.MaxVersion = tls.VersionTLS12
			},
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, client := configs(t, tt.version)
			if tt.setup != nil {
				tt.setup(server, client)
			}
			if tt.resume {
				client.ClientSessionCache = tls.NewLRUClientSessionCache(4)
				if c := handshake(t, server, client); c.clientErr != nil || c.serverErr != nil {
					t.Fatalf("first connection: client %v, server %v", c.clientErr, c.serverErr)
				}
			}

			c := handshake(t, server, client)
			failed := c.clientErr != nil || c.serverErr != nil
			if failed != tt.fails {
				t.Fatalf("handshake: client error %v, server error %v; want failure %v",
					c.clientErr, c.serverErr, tt.fails)
			}
			if tt.resume && !c.resumed {
				t.Fatalf("second connection did not resume")
			}

			checkResult(t, c.chunks, tt.want, tt.wantDone)

			// The tracker stops before the application data that follows
			// a successful handshake.
			_, got := run(t, feeders[0], c.chunks)
			for dir := range 2 {
				d := Direction(dir)
				if !tt.fails && got.BytesSeen[dir] >= int64(len(stream(c.chunks, d))) {
					t.Errorf("BytesSeen[%v] = %d: inspected past the handshake",
						d, got.BytesSeen[dir])
				}
			}
		})
	}
}

// captures holds real handshakes shared by several tests.
var (
	capturesOnce sync.Once
	captures     map[string]capture
)

func getCaptures(tb testing.TB) map[string]capture {
	tb.Helper()
	capturesOnce.Do(func() {
		captures = make(map[string]capture)
		versions := map[string]uint16{"TLS 1.2": tls.VersionTLS12, "TLS 1.3": tls.VersionTLS13}
		for name, v := range versions {
			server, client := configs(tb, v)
			captures[name] = handshake(tb, server, client)

			server, client = configs(tb, v)
			client.RootCAs = x509.NewCertPool()
			captures[name+" rejected"] = handshake(tb, server, client)
		}
	})
	for name, c := range captures {
		if !strings.HasSuffix(name, "rejected") && (c.clientErr != nil || c.serverErr != nil) {
			tb.Fatalf("%s capture failed: client %v, server %v", name, c.clientErr, c.serverErr)
		}
	}
	return captures
}

func TestClientHelloReframed(t *testing.T) {
	for _, name := range []string{"TLS 1.2", "TLS 1.3"} {
		c := getCaptures(t)[name]
		_, want := run(t, feeders[0], c.chunks)
		msg := clientHelloMsg(t, c)

		for _, size := range []int{2, 3, 4, 5, 37, 100, 512, 16384} {
			t.Run(name+"/records of "+strconv.Itoa(size), func(t *testing.T) {
				data := frame(typeHandshake, 0x0301, msg, size)
				checkResult(t, withClientHello(c, data), withoutBytes(want), [2]bool{true, true})
			})
		}

		t.Run(name+"/one byte per record", func(t *testing.T) {
			data := frame(typeHandshake, 0x0301, msg, 1)
			tr := &Tracker{MaxRecords: 1 << 16}
			feeders[0].feed(t, tr, withClientHello(c, data))
			if got := tr.Result(); withoutBytes(got) != withoutBytes(want) {
				t.Errorf("result\n got  %+v\n want %+v", got, want)
			}

			// With the default record cap the tracker gives up on a
			// ClientHello of more than DefaultMaxRecords bytes.
			data = frame(typeHandshake, 0x0301, padClientHello(t, msg, 2000), 1)
			tr = &Tracker{}
			done := tr.Feed(ClientToServer, data)
			got := tr.Result()
			if !done || !got.Capped || got.ClientHello || got.SNI != "" {
				t.Errorf("default record cap: done %v, result %+v", done, got)
			}
			if got.BytesSeen[ClientToServer] != int64(DefaultMaxRecords+1)*6-1 {
				t.Errorf("BytesSeen = %d, want the bytes up to the record beyond the cap",
					got.BytesSeen[ClientToServer])
			}
		})
	}
}

func TestLargeClientHello(t *testing.T) {
	c := getCaptures(t)["TLS 1.3"]
	_, want := run(t, feeders[0], c.chunks)
	msg := clientHelloMsg(t, c)

	for _, size := range []int{17 << 10, 40 << 10} {
		t.Run(strconv.Itoa(size)+" bytes", func(t *testing.T) {
			big := padClientHello(t, msg, size)
			data := frame(typeHandshake, 0x0301, big, 16384)
			checkResult(t, withClientHello(c, data), withoutBytes(want), [2]bool{true, true})

			// Split across calls, the message is buffered once, at its
			// size.
			tr := &Tracker{}
			tr.Feed(ClientToServer, data[:len(data)/2])
			if got := cap(tr.dirs[ClientToServer].hs.buf); got != len(big) {
				t.Errorf("buffer capacity %d, want %d", got, len(big))
			}
		})
	}

	t.Run("beyond MaxHandshakeLen", func(t *testing.T) {
		// A ClientHello cannot carry that much, but its header can claim it.
		huge := append([]byte{msgClientHello, 1, 0, 0}, make([]byte, 1000)...)
		data := frame(typeHandshake, 0x0301, huge, 16384)
		tr := &Tracker{}
		done := tr.Feed(ClientToServer, data)
		got := tr.Result()
		if !done || !got.Capped || !got.TLS || got.ClientHello || got.Err != "" {
			t.Errorf("done %v, result %+v", done, got)
		}
		if got.BytesSeen[ClientToServer] != recordHeaderLen+hsHeaderLen {
			t.Errorf("BytesSeen = %d, want it to stop at the message header",
				got.BytesSeen[ClientToServer])
		}
	})
}

func TestNotTLS(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantBytes int64 // inspected before deciding
		wantNot   bool
		wantTLS   bool
		wantDone  bool
	}{
		{"http request", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1, true, false, true},
		{"ssh banner", "SSH-2.0-OpenSSH_9.6\r\n", 1, true, false, true},
		{"SSLv2 hello", "\x80\x2e\x01\x00\x02\x00\x15", 1, true, false, true},
		{"alert first", "\x15\x03\x03\x00\x02\x02\x28", 1, true, false, true},
		{"handshake type, wrong major", "\x16\x02\x00\x00\x10", 2, true, false, true},
		{"nothing yet", "", 0, false, false, false},
		{"one byte of TLS", "\x16", 1, false, false, false},
		{"record header started", "\x16\x03\x01\x02", 4, false, false, false},
		{"record header whole", "\x16\x03\x01\x02\x00", 5, false, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, f := range feeders {
				tr, got := run(t, f, []chunk{{ClientToServer, []byte(tt.in)}})
				if got.NotTLS != tt.wantNot || got.TLS != tt.wantTLS ||
					got.BytesSeen[ClientToServer] != tt.wantBytes || got.Err != "" {
					t.Errorf("%s: result %+v", f.name, got)
				}
				if tr.Done(ClientToServer) != tt.wantDone {
					t.Errorf("%s: Done(client) = %v", f.name, tr.Done(ClientToServer))
				}
				// The start of a ServerHello record: the server side is done
				// only because the client does not speak TLS.
				serverDone := tr.Feed(ServerToClient, []byte{typeHandshake, 3, 3})
				if serverDone != tt.wantNot {
					t.Errorf("%s: server direction done = %v, want %v",
						f.name, serverDone, tt.wantNot)
				}
				checkInvariants(t, tr, tr.Result())
			}
		})
	}
}

// serverHelloMsg builds a ServerHello message choosing legacy, and selected
// through supported_versions when it is not zero.
func serverHelloMsg(legacy, selected uint16, random []byte) []byte {
	body := []byte{byte(legacy >> 8), byte(legacy)}
	if random == nil {
		random = make([]byte, 32)
	}
	body = append(body, random...)
	body = append(body, 0)          // session id
	body = append(body, 0x13, 0x01) // cipher suite
	body = append(body, 0)          // compression
	if selected != 0 {
		body = append(body, 0, 6, 0, extSupportedVersions, 0, 2, byte(selected>>8), byte(selected))
	}
	return append([]byte{msgServerHello, 0, 0, byte(len(body))}, body...)
}

func hsRecord(msg []byte) []byte { return frame(typeHandshake, 0x0303, msg, 16384) }

func rec(typ byte, payload ...byte) []byte {
	return append([]byte{typ, 3, 3, byte(len(payload) >> 8), byte(len(payload))}, payload...)
}

func TestRecords(t *testing.T) {
	c := getCaptures(t)
	hello := c["TLS 1.3"].chunks[0].data
	sh12 := hsRecord(serverHelloMsg(0x0303, 0, nil))
	sh13 := hsRecord(serverHelloMsg(0x0303, 0x0304, nil))
	ccs := rec(typeChangeCipherSpec, 1)
	cl := func(b ...[]byte) chunk { return chunk{ClientToServer, bytes.Join(b, nil)} }
	sv := func(b ...[]byte) chunk { return chunk{ServerToClient, bytes.Join(b, nil)} }
	encrypted := func(typ byte, n int) []byte {
		p := bytes.Repeat([]byte{2}, n) // would read as fatal alerts if read in clear
		return rec(typ, p...)
	}
	base := Result{TLS: true, SNI: testHost, ClientHello: true}
	with := func(f func(*Result)) Result {
		r := base
		f(&r)
		return r
	}
	hello12 := func(r *Result) { r.ServerHello, r.Version = true, "TLS 1.2" }
	hello13 := func(r *Result) { r.ServerHello, r.Version = true, "TLS 1.3" }

	tests := []struct {
		name     string
		chunks   []chunk
		want     Result
		wantDone [2]bool
	}{
		{
			name:   "warning alert, handshake goes on",
			chunks: []chunk{cl(hello), sv(rec(typeAlert, 1, 112), sh12)},
			want: with(func(r *Result) {
				hello12(r)
				r.Alert, r.AlertFrom = "unrecognized_name", ServerToClient
			}),
		},
		{
			name:   "fatal alert wins over an earlier warning",
			chunks: []chunk{cl(hello), sv(rec(typeAlert, 1, 112), rec(typeAlert, 2, 40))},
			want: with(func(r *Result) {
				r.Alert, r.AlertFrom, r.AlertFatal = "handshake_failure", ServerToClient, true
			}),
			wantDone: [2]bool{true, true},
		},
		{
			name:   "close_notify ends the sender's side only",
			chunks: []chunk{cl(hello), sv(rec(typeAlert, 1, 0))},
			want: with(func(r *Result) {
				r.Alert, r.AlertFrom = "close_notify", ServerToClient
			}),
			wantDone: [2]bool{false, true},
		},
		{
			name:   "alert split across records",
			chunks: []chunk{cl(hello), sv(rec(typeAlert, 2), rec(typeAlert, 48))},
			want: with(func(r *Result) {
				r.Alert, r.AlertFrom, r.AlertFatal = "unknown_ca", ServerToClient, true
			}),
			wantDone: [2]bool{true, true},
		},
		{
			name:   "unnamed alert code",
			chunks: []chunk{cl(hello), sv(rec(typeAlert, 2, 200))},
			want: with(func(r *Result) {
				r.Alert, r.AlertFrom, r.AlertFatal = "alert_200", ServerToClient, true
			}),
			wantDone: [2]bool{true, true},
		},
		{
			name:     "TLS 1.2 alert after ChangeCipherSpec is encrypted",
			chunks:   []chunk{cl(hello), sv(sh12, ccs, encrypted(typeAlert, 26))},
			want:     with(hello12),
			wantDone: [2]bool{false, true},
		},
		{
			name:     "TLS 1.2 Finished after ChangeCipherSpec is not parsed",
			chunks:   []chunk{cl(hello), sv(sh12, ccs, encrypted(typeHandshake, 40))},
			want:     with(func(r *Result) { hello12(r); r.ServerFlightDone = true }),
			wantDone: [2]bool{false, true},
		},
		{
			name:   "TLS 1.3 ChangeCipherSpec switches nothing",
			chunks: []chunk{cl(hello), sv(sh13, ccs), cl(ccs, rec(typeAlert, 2, 47))},
			want: with(func(r *Result) {
				hello13(r)
				r.Alert, r.AlertFrom, r.AlertFatal = "illegal_parameter", ClientToServer, true
			}),
			wantDone: [2]bool{true, true},
		},
		{
			name:     "TLS 1.3 longer alert record after ServerHello is not read",
			chunks:   []chunk{cl(hello), sv(sh13, encrypted(typeAlert, 19))},
			want:     with(hello13),
			wantDone: [2]bool{false, true},
		},
		{
			name: "TLS 1.3 short client record is an alert",
			chunks: []chunk{
				cl(hello), sv(sh13, ccs, encrypted(typeApplicationData, 40)),
				cl(ccs, encrypted(typeApplicationData, 19)),
			},
			want: with(func(r *Result) {
				hello13(r)
				r.ServerFlightDone, r.EncryptedAlertLikely = true, true
			}),
			wantDone: [2]bool{true, true},
		},
		{
			name: "TLS 1.3 client Finished completes",
			chunks: []chunk{
				cl(hello), sv(sh13, encrypted(typeApplicationData, 40)),
				cl(encrypted(typeApplicationData, 53)),
			},
			want: with(func(r *Result) {
				hello13(r)
				r.ServerFlightDone, r.Complete = true, true
			}),
			wantDone: [2]bool{true, true},
		},
		{
			name:   "early data before the ServerHello does not complete",
			chunks: []chunk{cl(hello, ccs, encrypted(typeApplicationData, 100)), sv(sh13)},
			want:   with(hello13),
		},
		{
			name: "HelloRetryRequest is not the ServerHello",
			chunks: []chunk{
				cl(hello), sv(hsRecord(serverHelloMsg(0x0303, 0x0304, helloRetryRandom)), ccs),
			},
			want: base,
		},
		{
			name: "SNI comes from the first ClientHello",
			chunks: []chunk{
				cl(hello), sv(hsRecord(serverHelloMsg(0x0303, 0x0304, helloRetryRandom))),
				cl(ccs, bytes.Replace(hello, []byte(testHost), []byte(otherHost), 1)),
				sv(sh13),
			},
			want: with(hello13),
		},
		{
			name:   "record too long",
			chunks: []chunk{cl(hello), sv([]byte{typeHandshake, 3, 3, 0x48, 0x01})},
			want: with(func(r *Result) {
				r.Err = "server: record length 18433 exceeds limit"
			}),
			wantDone: [2]bool{false, true},
		},
		{
			name:     "server speaks HTTP",
			chunks:   []chunk{cl(hello), sv([]byte("HTTP/1.1 400 Bad Request\r\n"))},
			want:     with(func(r *Result) { r.Err = "server: unknown record type 72" }),
			wantDone: [2]bool{false, true},
		},
		{
			name:     "bad record version",
			chunks:   []chunk{cl(hello), sv([]byte{typeHandshake, 4, 3, 0, 1})},
			want:     with(func(r *Result) { r.Err = "server: bad record version major 4" }),
			wantDone: [2]bool{false, true},
		},
		{
			name:     "alert level out of range",
			chunks:   []chunk{cl(hello), sv(rec(typeAlert, 7, 40))},
			want:     with(func(r *Result) { r.Err = "server: alert level 7" }),
			wantDone: [2]bool{false, true},
		},
		{
			name:     "malformed ServerHello",
			chunks:   []chunk{cl(hello), sv(hsRecord([]byte{msgServerHello, 0, 0, 3, 3, 3, 0}))},
			want:     with(func(r *Result) { r.Err = "server: malformed ServerHello" }),
			wantDone: [2]bool{false, true},
		},
		{
			name:   "client starts with another handshake message",
			chunks: []chunk{cl(hsRecord(serverHelloMsg(0x0303, 0, nil)))},
			want: Result{
				TLS: true, Err: "client: first handshake message is not a ClientHello",
			},
			wantDone: [2]bool{true, false},
		},
		{
			name:     "malformed ClientHello",
			chunks:   []chunk{cl(hsRecord([]byte{msgClientHello, 0, 0, 2, 3, 3}))},
			want:     Result{TLS: true, Err: "client: malformed ClientHello"},
			wantDone: [2]bool{true, false},
		},
		{
			name:     "zero-length records are passed over",
			chunks:   []chunk{cl(rec(typeHandshake), hello), sv(rec(typeHandshake), sh12)},
			want:     with(hello12),
			wantDone: [2]bool{false, false},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkResult(t, tt.chunks, tt.want, tt.wantDone)
		})
	}
}

func TestByteCap(t *testing.T) {
	c := getCaptures(t)
	hello := c["TLS 1.3"].chunks[0].data
	junk := bytes.Repeat(rec(typeApplicationData, make([]byte, 1000)...), 100)

	tr := &Tracker{}
	feedChecked(t, tr, ClientToServer, hello)
	feedChecked(t, tr, ClientToServer, junk)
	got := tr.Result()
	if !tr.Done(ClientToServer) || !got.Capped ||
		got.BytesSeen[ClientToServer] != DefaultMaxBytes {
		t.Errorf("default byte cap: done %v, result %+v", tr.Done(ClientToServer), got)
	}
	if got.SNI != testHost {
		t.Errorf("SNI = %q before the cap, want %q", got.SNI, testHost)
	}

	tr = &Tracker{MaxBytes: 3000}
	for _, b := range junk[:5000] {
		tr.Feed(ServerToClient, []byte{b})
	}
	if got := tr.Result(); !got.Capped || got.BytesSeen[ServerToClient] != 3000 {
		t.Errorf("MaxBytes 3000: result %+v", got)
	}
}

// TestTruncated feeds every prefix of real handshakes: what a tunnel shows
// when it is cut at any point. Nothing is invented, and what is known only
// grows.
func TestTruncated(t *testing.T) {
	for _, name := range []string{"TLS 1.2", "TLS 1.3", "TLS 1.2 rejected", "TLS 1.3 rejected"} {
		t.Run(name, func(t *testing.T) {
			c := getCaptures(t)[name]
			_, final := run(t, feeders[0], c.chunks)

			tr := &Tracker{}
			var prev Result
			fed := 0
			clientFed := 0
			helloLen := len(c.chunks[0].data)
			for _, ch := range c.chunks {
				for i := range ch.data {
					tr.Feed(ch.dir, ch.data[i:i+1])
					fed++
					if ch.dir == ClientToServer {
						clientFed++
					}
					got := tr.Result()
					checkGrowth(t, fed, prev, got, final)
					prev = got

					switch {
					case clientFed == helloLen/2 && ch.dir == ClientToServer:
						if !got.TLS || got.ClientHello || got.SNI != "" {
							t.Errorf("half a ClientHello: %+v", got)
						}
					case clientFed == helloLen && ch.dir == ClientToServer:
						if !got.ClientHello || got.SNI != testHost || got.ServerHello {
							t.Errorf("whole ClientHello: %+v", got)
						}
					}
				}
			}
			if prev != final {
				t.Errorf("byte-wise result\n %+v\ndiffers from\n %+v", prev, final)
			}
		})
	}
}

// checkGrowth checks that a result after one more byte only adds to the
// previous one, towards the final result, and reports no error or cap.
func checkGrowth(t *testing.T, at int, prev, got, final Result) {
	t.Helper()
	if got.Err != "" || got.Capped {
		t.Fatalf("after %d bytes: error or cap in a good stream: %+v", at, got)
	}
	flags := []struct {
		name             string
		prev, got, final bool
	}{
		{"TLS", prev.TLS, got.TLS, final.TLS},
		{"ClientHello", prev.ClientHello, got.ClientHello, final.ClientHello},
		{"ServerHello", prev.ServerHello, got.ServerHello, final.ServerHello},
		{"Certificate", prev.Certificate, got.Certificate, final.Certificate},
		{"ServerFlightDone", prev.ServerFlightDone, got.ServerFlightDone, final.ServerFlightDone},
		{"Complete", prev.Complete, got.Complete, final.Complete},
		{"EncryptedAlertLikely",
			prev.EncryptedAlertLikely, got.EncryptedAlertLikely, final.EncryptedAlertLikely},
	}
	for _, f := range flags {
		if (f.prev && !f.got) || (f.got && !f.final) {
			t.Fatalf("after %d bytes: %s went %v -> %v (final %v)",
				at, f.name, f.prev, f.got, f.final)
		}
	}
	strs := []struct{ name, prev, got, final string }{
		{"SNI", prev.SNI, got.SNI, final.SNI},
		{"Version", prev.Version, got.Version, final.Version},
		{"LeafIssuer", prev.LeafIssuer, got.LeafIssuer, final.LeafIssuer},
		{"Alert", prev.Alert, got.Alert, final.Alert},
	}
	for _, s := range strs {
		if (s.prev != "" && s.got != s.prev) || (s.got != "" && s.got != s.final) {
			t.Fatalf("after %d bytes: %s went %q -> %q (final %q)",
				at, s.name, s.prev, s.got, s.final)
		}
	}
}

// TestConcurrentFeed feeds the two directions from two goroutines without
// ordering them, as a careless caller might, while a third reads results.
// Run with -race; the findings that do not depend on order must hold.
func TestConcurrentFeed(t *testing.T) {
	c := getCaptures(t)["TLS 1.3"]
	for range 20 {
		tr := &Tracker{}
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for dir := range 2 {
			wg.Go(func() {
				s := stream(c.chunks, Direction(dir))
				for len(s) > 0 {
					n := min(len(s), 64)
					tr.Feed(Direction(dir), s[:n])
					s = s[n:]
				}
			})
		}
		readerDone := make(chan struct{})
		go func() {
			defer close(readerDone)
			for {
				select {
				case <-stop:
					return
				default:
					_ = tr.Result()
					_ = tr.Done(ClientToServer)
				}
			}
		}()
		wg.Wait()
		close(stop)
		<-readerDone

		got := tr.Result()
		if !got.ClientHello || got.SNI != testHost || !got.ServerHello ||
			got.Version != "TLS 1.3" {
			t.Fatalf("result %+v", got)
		}
		checkInvariants(t, tr, got)
	}
}

func TestCertNames(t *testing.T) {
	p := getPKI(t)
	leaf := p.serverCert.Leaf
	issuer, subject := certNames(leaf.Raw)
	if issuer != leaf.Issuer.String() || subject != leaf.Subject.String() {
		t.Errorf("certNames = %q, %q; want %q, %q", issuer, subject, leaf.Issuer, leaf.Subject)
	}

	// A negative serial number, which crypto/x509 refuses: the names are
	// still read. The signature no longer matches; it is not checked.
	der := bytes.Clone(leaf.Raw)
	i := bytes.Index(der, []byte{0xa0, 0x03, 0x02, 0x01, 0x02, 0x02, 0x01, 0x02})
	if i < 0 {
		t.Fatalf("serial number not found in the test certificate")
	}
	der[i+7] = 0xfe
	if _, err := x509.ParseCertificate(der); err == nil {
		t.Logf("crypto/x509 accepts a negative serial number here")
	}
	if gotIssuer, _ := certNames(der); gotIssuer != issuer {
		t.Errorf("negative serial: issuer %q, want %q", gotIssuer, issuer)
	}

	for _, bad := range [][]byte{nil, {0x30}, {0x30, 0x03, 0x02, 0x01, 0x01}, leaf.Raw[:100]} {
		if i, s := certNames(bad); i != "" || s != "" {
			t.Errorf("certNames(% x) = %q, %q; want empty", bad, i, s)
		}
	}
}

func TestNames(t *testing.T) {
	alerts := map[uint8]string{
		0: "close_notify", 40: "handshake_failure", 42: "bad_certificate", 48: "unknown_ca",
		70: "protocol_version", 112: "unrecognized_name", 116: "certificate_required",
		121: "ech_required", 1: "alert_1", 122: "alert_122", 255: "alert_255",
	}
	for code, want := range alerts {
		if got := AlertName(code); got != want {
			t.Errorf("AlertName(%d) = %q, want %q", code, got, want)
		}
	}

	versions := map[uint16]string{
		0: "", 0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2",
		0x0304: "TLS 1.3", 0x7f1c: "0x7f1c", 0xfefd: "0xfefd",
	}
	for v, want := range versions {
		if got := VersionName(v); got != want {
			t.Errorf("VersionName(%#04x) = %q, want %q", v, got, want)
		}
	}

	dirs := map[Direction]string{
		ClientToServer: "client", ServerToClient: "server", 7: "direction_7",
	}
	for d, want := range dirs {
		if got := d.String(); got != want {
			t.Errorf("Direction(%d).String() = %q, want %q", d, got, want)
		}
	}

	var tr Tracker
	if !tr.Feed(Direction(2), []byte{22}) || !tr.Done(Direction(2)) {
		t.Errorf("an unknown direction is not reported done")
	}
}
