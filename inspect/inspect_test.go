package inspect

import (
	"net/url"
	"strconv"
	"testing"

	"github.com/tetrascope/tetrascope/inspect/tlsrec"
)

func TestCatalog(t *testing.T) {
	c, err := NewCatalog(DefaultTetraHosts,
		[]string{"crl.identrust.com", "*.identrust.com"},
		[]string{"*.amp.cisco.com"})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]Endpoint{
		"tetra-defs.amp.cisco.com":     EndpointTetra,
		"TETRA-DEFS.EU.AMP.CISCO.COM.": EndpointTetra,
		"crl.identrust.com":            EndpointRevocation,
		"validation.identrust.com":     EndpointRevocation,
		"identrust.com":                EndpointOther, // a wildcard is below the domain only
		"intake.amp.cisco.com":         EndpointAMP,
		"example.com":                  EndpointOther,
		"127.0.0.1":                    EndpointOther,
	}
	for host, want := range cases {
		t.Run(host, func(t *testing.T) {
			if got := c.Classify(host); got != want {
				t.Fatalf("Classify(%q) = %q, want %q", host, got, want)
			}
		})
	}
	if _, err := NewCatalog([]string{"bad/host"}, nil, nil); err == nil {
		t.Fatal("bad pattern accepted")
	}
}

func TestClassifyRequestByForm(t *testing.T) {
	c, _ := NewCatalog(nil, nil, nil)
	u := func(s string) *url.URL { v, _ := url.Parse(s); return v }
	cases := []struct {
		name, method, url, ctype string
		want                     Endpoint
	}{
		{"ocsp post", "POST", "http://ocsp.ca.test/", "application/ocsp-request", EndpointRevocation},
		{"crl get", "GET", "http://crl.ca.test/root.CRL", "", EndpointRevocation},
		{"ocsp get", "GET", "http://ocsp.ca.test/ocsp/MFEwTzBNMEswSTAJBgUrDgMCGgUABBQpY0V3%2BpdRtnlwhE1pZqf7AuWt4AQU", "",
			EndpointRevocation},
		{"page", "GET", "http://www.ca.test/index.html", "", EndpointOther},
		{"post form", "POST", "http://ocsp.ca.test/", "application/x-www-form-urlencoded",
			EndpointOther},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := c.ClassifyRequest(tc.method, u(tc.url).Hostname(), u(tc.url), tc.ctype)
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseLastError(t *testing.T) {
	cases := map[string]LastError{
		"4294965193": LastErrorProxyConnect,
		"-2103":      LastErrorProxyConnect,
		"0xFFFFF7CC": LastErrorProxyAuth,
		"0xfffff7c4": LastErrorConnectTimeout,
		" -2109 ":    LastErrorDownloadFailed,
		"0":          LastErrorNone,
	}
	for in, want := range cases {
		got, err := ParseLastError(in)
		if err != nil || got != want {
			t.Fatalf("ParseLastError(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "4294967296", "-2147483649", "0xZZ"} {
		if _, err := ParseLastError(bad); err == nil {
			t.Fatalf("ParseLastError(%q) accepted", bad)
		}
	}
}

func TestLookupLastError(t *testing.T) {
	if i, ok := LookupLastError(LastErrorProxyAuth); !ok || i.Basis != Documented {
		t.Fatalf("-2100: %+v", i)
	}
	if i, ok := LookupLastError(LastError(uint32(0xFFFFF7CC - 50))); !ok ||
		i.Meaning != "network or proxy class, unmapped" {
		t.Fatalf("-2150: %+v %v", i, ok)
	}
	if _, ok := LookupLastError(12345); ok {
		t.Fatal("12345 known")
	}
}

func TestEventLastError(t *testing.T) {
	cases := []struct {
		e     Endpoint
		o     Outcome
		code  LastError
		basis Basis
	}{
		{EndpointTetra, OK, 0, ""},
		{EndpointTetra, AuthRequired, 0, ""},
		{EndpointTetra, AuthFailed, LastErrorProxyAuth, Documented},
		{EndpointRevocation, AuthFailed, LastErrorProxyAuth, Documented},
		{EndpointTetra, TLSAborted, LastErrorDownloadFailed, Documented},
		{EndpointRevocation, HTTPError, LastErrorDownloadFailed, Inferred},
		{EndpointTetra, Denied, LastErrorDownloadFailed, Documented},
		{EndpointAMP, DNSFailure, 0, ""},
		{EndpointOther, ConnectRefused, 0, ""},
	}
	for _, tc := range cases {
		code, basis := EventLastError(tc.e, tc.o)
		if code != tc.code || basis != tc.basis {
			t.Errorf("%s/%s: got %d %q, want %d %q", tc.e, tc.o, code, basis, tc.code, tc.basis)
		}
	}
}

func TestClassify(t *testing.T) {
	complete := &tlsrec.Result{TLS: true, ClientHello: true, ServerHello: true,
		ServerFlightDone: true, Complete: true, Version: "TLS 1.3", SNI: "tetra-defs.amp.cisco.com"}
	flightOnly := &tlsrec.Result{TLS: true, ClientHello: true, ServerHello: true,
		ServerFlightDone: true, Version: "TLS 1.2"}
	alert := &tlsrec.Result{TLS: true, ClientHello: true, ServerHello: true, ServerFlightDone: true,
		Version: "TLS 1.2", Alert: "unknown_ca", AlertFrom: tlsrec.ClientToServer}
	cases := []struct {
		name    string
		ev      Event
		tls     *tlsrec.Result
		cl      int64
		bodyErr string
		want    Outcome
		code    uint32
	}{
		{"tunnel ok", Event{Method: "CONNECT", Endpoint: EndpointTetra, Close: ClientFIN}, complete,
			-1, "", OK, 0},
		{"tunnel reset", Event{Method: "CONNECT", Endpoint: EndpointTetra, Close: ServerRST,
			BytesDown: 5000}, complete, -1, "", DownloadAborted, 4294965187},
		{"idle", Event{Method: "CONNECT", Endpoint: EndpointTetra, Close: IdleTimeout}, complete,
			-1, "", DownloadAborted, 4294965187},
		{"after flight", Event{Method: "CONNECT", Endpoint: EndpointTetra, Close: ClientFIN},
			flightOnly, -1, "", TLSAborted, 4294965187},
		{"alert", Event{Method: "CONNECT", Endpoint: EndpointTetra, Close: ClientFIN}, alert,
			-1, "", TLSAborted, 4294965187},
		{"nothing sent", Event{Method: "CONNECT", Endpoint: EndpointOther, Close: ClientFIN},
			&tlsrec.Result{}, -1, "", TLSAborted, 0},
		{"not tls", Event{Method: "CONNECT", Endpoint: EndpointAMP, Close: ServerFIN},
			&tlsrec.Result{NotTLS: true}, -1, "", OK, 0},
		{"crl ok", Event{Method: "GET", Endpoint: EndpointRevocation, UpstreamStatus: 200,
			BytesDown: 10}, nil, 10, "", OK, 0},
		{"crl 404", Event{Method: "GET", Endpoint: EndpointRevocation, UpstreamStatus: 404},
			nil, -1, "", HTTPError, 4294965187},
		{"short body", Event{Method: "GET", Endpoint: EndpointTetra, UpstreamStatus: 200,
			BytesDown: 10}, nil, 100, "", DownloadAborted, 4294965187},
		{"head", Event{Method: "HEAD", Endpoint: EndpointTetra, UpstreamStatus: 200}, nil, 100, "",
			OK, 0},
		{"preset", Event{Method: "CONNECT", Endpoint: EndpointTetra, Outcome: DNSFailure,
			Detail: "x"}, nil, -1, "", DNSFailure, 4294965187},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := &Observation{Event: tc.ev, TLS: tc.tls, ContentLength: tc.cl, BodyErr: tc.bodyErr}
			ev := Classify(o)
			if ev.Outcome != tc.want || ev.LastError != tc.code {
				t.Fatalf("got %s %d (%s), want %s %d", ev.Outcome, ev.LastError, ev.Detail,
					tc.want, tc.code)
			}
			if ev.Outcome != OK && ev.Detail == "" {
				t.Fatal("failure without detail")
			}
		})
	}
}

func FuzzParseLastError(f *testing.F) {
	for _, s := range []string{"4294965193", "-2103", "0xFFFFF7CC", "", "-", "0x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseLastError(s)
		if err != nil {
			return
		}
		// A parsed code must explain without panicking and survive a
		// round trip through its unsigned form.
		LookupLastError(c)
		back, err := ParseLastError(strconv.FormatUint(uint64(c), 10))
		if err != nil || back != c {
			t.Fatalf("round trip of %q: %d -> %d %v", s, c, back, err)
		}
	})
}
