package proxy

import (
	"net/url"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	cases := map[string]string{
		"http://u:SuperSecret123@crl.identrust.com/x.crl": "http://u:xxxxx@crl.identrust.com/x.crl",
		"http://u@host/x": "http://u@host/x",
		"http://host/x?password=SuperSecret123&a=1": "http://host/x?password=xxxxx&a=1",
		"http://host/x?a=1&Token=SuperSecret123":    "http://host/x?a=1&Token=xxxxx",
		"http://host/ocsp/MEEwPzA9":                 "http://host/ocsp/MEEwPzA9",
	}
	for in, want := range cases {
		u, err := url.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := redactURL(u); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
	line := `"GET http://u:SuperSecret123@host:99999/?pwd=SuperSecret123 HTTP/1.1"`
	if got := redactText(line); strings.Contains(got, "SuperSecret123") {
		t.Errorf("redactText kept the secret: %q", got)
	}
}
