package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// dnsServer is an authoritative loopback DNS server on one port, UDP and
// TCP. Names given as A records answer 127.0.0.1 (and an empty answer for
// other types); every other name, including the ones a resolver makes by
// appending search domains, answers NXDOMAIN. It counts queries per name so
// tests can tell that the proxy asked it.
type dnsServer struct {
	Addr string // host:port, the same for UDP and TCP

	names map[string]net.IP // fqdn, lower case

	mu      sync.Mutex
	queries map[string]int // fqdn, lower case -> count

	udp, tcp *dns.Server
}

// startDNS starts a server answering aNames with 127.0.0.1 and NXDOMAIN for
// everything else (nxNames are listed for clarity: they must not overlap
// aNames). It is shut down when the test ends.
func startDNS(t testing.TB, aNames, nxNames []string) *dnsServer {
	t.Helper()
	s := &dnsServer{names: map[string]net.IP{}, queries: map[string]int{}}
	for _, n := range aNames {
		s.names[dns.Fqdn(strings.ToLower(n))] = net.IPv4(127, 0, 0, 1)
	}
	for _, n := range nxNames {
		if _, dup := s.names[dns.Fqdn(strings.ToLower(n))]; dup {
			t.Fatalf("dns: %s is both an A name and an NXDOMAIN name", n)
		}
	}

	pc, ln, err := listenUDPAndTCP()
	if err != nil {
		t.Fatalf("dns: %v", err)
	}
	s.run(t, pc, ln)
	return s
}

// run serves s on pc and ln until the test ends.
func (s *dnsServer) run(t testing.TB, pc net.PacketConn, ln net.Listener) {
	t.Helper()
	s.Addr = pc.LocalAddr().String()
	s.udp = &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(s.serve)}
	s.tcp = &dns.Server{Listener: ln, Handler: dns.HandlerFunc(s.serve)}
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatalf("dns: server on %s did not start", s.Addr)
		}
	}
	t.Cleanup(func() {
		s.udp.Shutdown()
		s.tcp.Shutdown()
	})
}

// listenUDPAndTCP binds UDP and TCP on the same free loopback port.
func listenUDPAndTCP() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("listening on udp: %w", err)
		}
		ln, err := net.Listen("tcp4", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
	}
	return nil, nil, fmt.Errorf("no port free for both udp and tcp: %w", lastErr)
}

func (s *dnsServer) serve(w dns.ResponseWriter, r *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(r)
	// Go's resolver treats a non-authoritative answer without recursion
	// as a lame referral; say both.
	m.Authoritative = true
	m.RecursionAvailable = true

	if len(r.Question) != 1 {
		m.SetRcode(r, dns.RcodeFormatError)
		w.WriteMsg(m)
		return
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.Lock()
	s.queries[name]++
	s.mu.Unlock()

	ip, ok := s.names[name]
	switch {
	case !ok:
		m.SetRcode(r, dns.RcodeNameError)
	case q.Qtype == dns.TypeA:
		m.Answer = append(m.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5},
			A:   ip,
		})
	}
	w.WriteMsg(m)
}

// Queries returns how many queries (any type) the server got for name.
func (s *dnsServer) Queries(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[dns.Fqdn(strings.ToLower(name))]
}

// Self-tests: the server answers A, empty AAAA and NXDOMAIN over UDP and
// TCP, and Go's own resolver, pointed at it, accepts those answers.

func TestHarnessDNS(t *testing.T) {
	s := startDNS(t, []string{"tetra-defs.apjc.amp.cisco.com"}, []string{"tetra-defs.eu.amp.cisco.com"})

	tests := []struct {
		name  string
		qtype uint16
		rcode int
		a     string // the A answer expected, empty for none
	}{
		{"tetra-defs.apjc.amp.cisco.com", dns.TypeA, dns.RcodeSuccess, "127.0.0.1"},
		{"TETRA-DEFS.APJC.AMP.CISCO.COM", dns.TypeA, dns.RcodeSuccess, "127.0.0.1"},
		{"tetra-defs.apjc.amp.cisco.com", dns.TypeAAAA, dns.RcodeSuccess, ""},
		{"tetra-defs.eu.amp.cisco.com", dns.TypeA, dns.RcodeNameError, ""},
		{"tetra-defs.eu.amp.cisco.com", dns.TypeAAAA, dns.RcodeNameError, ""},
		{"unlisted.example.test", dns.TypeA, dns.RcodeNameError, ""},
	}
	for _, netw := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: netw, Timeout: 2 * time.Second}
		for _, tc := range tests {
			t.Run(netw+"/"+tc.name+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) {
				q := new(dns.Msg)
				q.SetQuestion(dns.Fqdn(tc.name), tc.qtype)
				r, _, err := c.Exchange(q, s.Addr)
				if err != nil {
					t.Fatalf("exchange: %v", err)
				}
				if r.Rcode != tc.rcode {
					t.Fatalf("rcode = %s, want %s",
						dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
				}
				var got string
				for _, rr := range r.Answer {
					if a, ok := rr.(*dns.A); ok {
						got = a.A.String()
					}
				}
				if got != tc.a {
					t.Fatalf("A answer = %q, want %q (answer %v)", got, tc.a, r.Answer)
				}
			})
		}
	}
	if n := s.Queries("tetra-defs.eu.amp.cisco.com"); n != 4 {
		t.Errorf("Queries(eu) = %d, want 4", n)
	}

	t.Run("go resolver", func(t *testing.T) {
		r := &net.Resolver{
			PreferGo: true,
			Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, s.Addr)
			},
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()

		ips, err := r.LookupIP(ctx, "ip", "tetra-defs.apjc.amp.cisco.com")
		if err != nil || len(ips) != 1 || !ips[0].Equal(net.IPv4(127, 0, 0, 1)) {
			t.Errorf("LookupIP(apjc) = %v, %v; want [127.0.0.1]", ips, err)
		}
		_, err = r.LookupIP(ctx, "ip", "tetra-defs.eu.amp.cisco.com")
		var de *net.DNSError
		if !errors.As(err, &de) || !de.IsNotFound {
			t.Errorf("LookupIP(eu) error = %v, want a not-found DNSError", err)
		}
	})
}
