package squidlog

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

func TestNewParserErrors(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		wantError string // substring; empty means no error
	}{
		{"default is squid", Config{}, ""},
		{"common", Config{Format: "common"}, ""},
		{"combined", Config{Format: "combined"}, ""},
		{"squid.conf line", Config{Format: "custom",
			LogFormat: "logformat mine %ts.%03tu %>a %Ss/%03>Hs %ru"}, ""},
		{"unknown format", Config{Format: "apache"}, "unknown log format"},
		{"logformat with a built-in", Config{Format: "squid", LogFormat: "%ts"}, "only taken with"},
		{"custom without spec", Config{Format: "custom"}, "needs a logformat"},
		{"no time", Config{Format: "custom", LogFormat: "%>a %Ss/%>Hs %ru"}, "no time code"},
		{"no client", Config{Format: "custom", LogFormat: "%ts %Ss/%>Hs %ru"}, "no client code"},
		{"no url", Config{Format: "custom", LogFormat: "%ts %>a %Ss/%>Hs"}, "no request URL"},
		{"no status", Config{Format: "custom", LogFormat: "%ts %>a %ru"}, "no status code"},
		{"tu alone", Config{Format: "custom", LogFormat: "%tl %tu %>a %>Hs %ru"}, "%tu without %ts"},
		{"adjacent codes", Config{Format: "custom", LogFormat: "%ts%tr %>a %>Hs %ru"}, "nothing between"},
		{"unknown code", Config{Format: "custom", LogFormat: "%ts %>a %>Hs %ru %zz"}, "unknown code"},
		{"unclosed arg", Config{Format: "custom", LogFormat: "%ts %>a %>Hs %ru %{Referer>h"}, "unclosed"},
		{"strftime", Config{Format: "custom", LogFormat: "%{%s}tl %>a %>Hs %ru"}, "not supported"},
		{"adaptation codes are opaque", Config{Format: "custom",
			LogFormat: "%ts %>a %>Hs %ru %adapt::sum_trs %{svc}icap::tt"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewParser(tc.cfg)
			switch {
			case tc.wantError == "" && err != nil:
				t.Fatalf("NewParser: %v", err)
			case tc.wantError != "" && (err == nil || !strings.Contains(err.Error(), tc.wantError)):
				t.Fatalf("NewParser error = %v, want one containing %q", err, tc.wantError)
			}
		})
	}
}

const nativeOK = "1700000000.500   1500 10.0.0.7 TCP_TUNNEL/200 5000000 CONNECT " +
	"tetra-defs.amp.cisco.com:443 - HIER_DIRECT/52.1.2.3 -"

func TestParseMalformed(t *testing.T) {
	p := mustParser(t, Config{})
	tests := []struct {
		name, line string
		kind       string // empty: ErrNoRequest
	}{
		{"blank", "   \r\n", ""},
		{"closed before a request", "1700000000.000 0 10.0.0.7 NONE_NONE/000 0 - " +
			"error:transaction-end-before-headers - HIER_NONE/- -", ""},
		{"too few fields", "1700000000.000 0 10.0.0.7 TCP_MISS/200", KindFormat},
		{"not squid at all", "<134>Jan  1 00:00:00 host squid[1]: hello", KindFormat},
		{"status not a number", strings.Replace(nativeOK, "/200", "/2x0", 1), KindNumber},
		{"size not a number", strings.Replace(nativeOK, "5000000", "5MB", 1), KindNumber},
		{"elapsed not a number", strings.Replace(nativeOK, "1500", "-1", 1), KindNumber},
		{"time not a number", strings.Replace(nativeOK, "1700000000", "yesterday", 1), KindTime},
		{"time missing", strings.Replace(nativeOK, "1700000000.500", "-.500", 1), KindTime},
		{"status too large", strings.Replace(nativeOK, "/200", "/2000", 1), KindNumber},
		{"time past year 9999", strings.Replace(nativeOK, "1700000000", "300000000000", 1), KindTime},
		{"elapsed of centuries", strings.Replace(nativeOK, " 1500 ", " 9000000000000 ", 1), KindNumber},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := p.Parse([]byte(tc.line))
			if tc.kind == "" {
				if !errors.Is(err, ErrNoRequest) {
					t.Fatalf("error = %v, want ErrNoRequest", err)
				}
				return
			}
			var se *SyntaxError
			if !errors.As(err, &se) || se.Kind != tc.kind {
				t.Fatalf("error = %v, want a SyntaxError of kind %s", err, tc.kind)
			}
			if se.Error() == "" {
				t.Fatal("empty error text")
			}
		})
	}

	// The native format ends with %mt, which may hold spaces; common ends
	// with a token, so words after it are not of the format.
	common := mustParser(t, Config{Format: "common"})
	_, err := common.Parse([]byte(`10.0.0.7 - - [14/Nov/2023:22:13:20 +0000] ` +
		`"GET http://a.test/ HTTP/1.1" 200 10 TCP_MISS:HIER_DIRECT extra words`))
	var se *SyntaxError
	if !errors.As(err, &se) || se.Kind != KindFormat {
		t.Errorf("trailing words: error = %v, want a format SyntaxError", err)
	}
}

func TestParseFields(t *testing.T) {
	p := mustParser(t, Config{Catalog: testCatalog(t)})
	ev, err := p.Parse([]byte(nativeOK + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	checkEvent(t, &ev)
	// Squid logs at the end: 1700000000.500 minus 1500 ms.
	if want := time.Unix(1699999999, 0).UTC(); !ev.Time.Equal(want) || ev.DurationMS != 1500 {
		t.Errorf("time, duration = %v, %v; want %v, 1500", ev.Time, ev.DurationMS, want)
	}
	if ev.ClientIP != "10.0.0.7" || ev.Method != "CONNECT" || ev.Host != "tetra-defs.amp.cisco.com" ||
		ev.Port != 443 || ev.URL != "" || ev.Endpoint != inspect.EndpointTetra || ev.Outcome != inspect.OK ||
		ev.Status != 200 || ev.BytesDown != 5000000 || ev.ClientUser != "" || ev.SNI != "" {
		t.Errorf("event %+v", ev)
	}
}

func TestParseTargets(t *testing.T) {
	p := mustParser(t, Config{Catalog: testCatalog(t)})
	line := func(method, u string) string {
		return "1700000000.000 1 10.0.0.7 TCP_MISS/200 100 " + method + " " + u +
			" - HIER_DIRECT/1.2.3.4 -"
	}
	tests := []struct {
		method, u string
		host      string
		port      int
		url       string
	}{
		{"CONNECT", "tetra-defs.amp.cisco.com:8443", "tetra-defs.amp.cisco.com", 8443, ""},
		{"CONNECT", "[2001:db8::1]:443", "2001:db8::1", 443, ""},
		{"CONNECT", "tetra-defs.amp.cisco.com", "tetra-defs.amp.cisco.com", 0, ""},
		{"GET", "http://crl.identrust.com/a.crl", "crl.identrust.com", 80,
			"http://crl.identrust.com/a.crl"},
		{"GET", "https://tetra-defs.amp.cisco.com/defs.bin", "tetra-defs.amp.cisco.com", 443,
			"https://tetra-defs.amp.cisco.com/defs.bin"},
		{"GET", "http://[::1]:8080/x?y", "::1", 8080, "http://[::1]:8080/x?y"},
		{"GET", "ftp://files.example.test/pub", "files.example.test", 21, "ftp://files.example.test/pub"},
		// Credentials in a URL never reach the event.
		{"GET", "http://user:secret@crl.identrust.com:81/a.crl", "crl.identrust.com", 81,
			"http://crl.identrust.com:81/a.crl"},
		{"GET", "/relative/path", "", 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.u, func(t *testing.T) {
			ev, err := p.Parse([]byte(line(tc.method, tc.u)))
			if err != nil {
				t.Fatal(err)
			}
			checkEvent(t, &ev)
			if ev.Host != tc.host || ev.Port != tc.port || ev.URL != tc.url {
				t.Errorf("host, port, url = %q, %d, %q; want %q, %d, %q",
					ev.Host, ev.Port, ev.URL, tc.host, tc.port, tc.url)
			}
			if strings.Contains(ev.Detail+ev.URL+ev.ClientUser, "secret") {
				t.Errorf("the password leaked: %+v", ev)
			}
		})
	}
}

func TestParseCustomCodes(t *testing.T) {
	cat := testCatalog(t)
	tests := []struct {
		name, spec, line string
		check            func(*inspect.Event) string
	}{
		{
			"microseconds and credentials never kept",
			"%ts.%.6tu %tr %>a %Ss/%>Hs %rm %ru %un %credentials",
			"1700000000.250000 250 10.0.0.9 TCP_DENIED/407 CONNECT tetra-defs.amp.cisco.com:443 bob hunter2",
			func(e *inspect.Event) string {
				if !e.Time.Equal(time.Unix(1700000000, 0)) || e.Outcome != inspect.AuthFailed ||
					e.ClientUser != "bob" {
					return "want start 1700000000, auth_failed for bob"
				}
				if strings.Contains(e.Detail+e.URL+e.ClientUser, "hunter2") {
					return "the password leaked"
				}
				return ""
			},
		},
		{
			"SNI names the endpoint of a tunnel to an address",
			"%ts %>a %Ss/%>Hs %<st %rm %ru %ssl::>sni",
			"1700000000 10.0.0.9 TCP_TUNNEL/200 900000 CONNECT 52.1.2.3:443 tetra-defs.eu.amp.cisco.com",
			func(e *inspect.Event) string {
				if e.SNI != "tetra-defs.eu.amp.cisco.com" || e.Endpoint != inspect.EndpointTetra {
					return "want the SNI kept and endpoint tetra"
				}
				return ""
			},
		},
		{
			"GMT time without a zone and %>rd/%>rP",
			"[%tg] %>a %>Hs %Ss %>rd %>rP %rm",
			"[14/Nov/2023:22:13:20] 10.0.0.9 200 TCP_TUNNEL crl.identrust.com 8080 CONNECT",
			func(e *inspect.Event) string {
				if !e.Time.Equal(time.Unix(1700000000, 0)) || e.Host != "crl.identrust.com" ||
					e.Port != 8080 || e.Endpoint != inspect.EndpointRevocation {
					return "want time 1700000000 UTC, host and port from %>rd and %>rP"
				}
				return ""
			},
		},
		{
			"OCSP by the request's content type",
			`%ts %>a %Ss/%>Hs %rm %ru "%{Content-Type}>h"`,
			`1700000000 10.0.0.9 TCP_MISS/200 POST http://ocsp.example-ca.test/status "application/ocsp-request"`,
			func(e *inspect.Event) string {
				if e.Endpoint != inspect.EndpointRevocation {
					return "want endpoint revocation"
				}
				return ""
			},
		},
		{
			"percent-encoded user and a literal percent",
			"%ts %% %>a %Ss/%>Hs %rm %ru %[un",
			"1700000000 % 10.0.0.9 TCP_TUNNEL/200 CONNECT tetra-defs.amp.cisco.com:443 CORP%5Cjdoe",
			func(e *inspect.Event) string {
				if e.ClientUser != `CORP\jdoe` {
					return "want the user decoded"
				}
				return ""
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := mustParser(t, Config{Format: "custom", LogFormat: tc.spec, Catalog: cat})
			ev, err := p.Parse([]byte(tc.line))
			if err != nil {
				t.Fatal(err)
			}
			checkEvent(t, &ev)
			if why := tc.check(&ev); why != "" {
				t.Errorf("%s; got %+v", why, ev)
			}
		})
	}
}

// TestParseMimeHeaders reads native lines with log_mime_hdrs on.
func TestParseMimeHeaders(t *testing.T) {
	p := mustParser(t, Config{Catalog: testCatalog(t)})
	line := "1700000000.000 3 10.0.0.7 TCP_MISS/200 1034 GET http://crl.identrust.com/a.crl - " +
		"HIER_DIRECT/1.2.3.4 application/pkix-crl [Host: crl.identrust.com\\r\\n] [HTTP/1.1 200 OK\\r\\n]"
	ev, err := p.Parse([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Outcome != inspect.OK || ev.Endpoint != inspect.EndpointRevocation {
		t.Errorf("event %+v", ev)
	}
}

func mustParser(t testing.TB, cfg Config) *Parser {
	t.Helper()
	p, err := NewParser(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
