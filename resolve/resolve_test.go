package resolve

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// dnsServer answers on a loopback UDP port: A 127.0.0.9 for known.test,
// NXDOMAIN for everything else; it counts the questions it gets.
func dnsServer(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		n.Add(1)
		m := new(dns.Msg)
		name := q.Question[0].Name
		switch {
		case name == "known.test." && q.Question[0].Qtype == dns.TypeA:
			m.SetReply(q)
			rr, _ := dns.NewRR("known.test. 60 IN A 127.0.0.9")
			m.Answer = append(m.Answer, rr)
		case name == "known.test.":
			m.SetReply(q) // no AAAA
		case name == "servfail.test.":
			m.SetRcode(q, dns.RcodeServerFailure)
		default:
			m.SetRcode(q, dns.RcodeNameError)
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String(), &n
}

func TestLookup(t *testing.T) {
	addr, queries := dnsServer(t)
	r, err := New(map[string][]netip.Addr{
		"Tetra-Defs.amp.cisco.com": {netip.MustParseAddr("127.0.0.5")},
	}, []string{addr}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	t.Run("override", func(t *testing.T) {
		got, err := r.Lookup(ctx, "tetra-defs.AMP.cisco.com.")
		if err != nil || len(got) != 1 || got[0].String() != "127.0.0.5" {
			t.Fatalf("got %v %v", got, err)
		}
	})
	t.Run("literal", func(t *testing.T) {
		got, err := r.Lookup(ctx, "[::1]")
		if err != nil || got[0].String() != "::1" {
			t.Fatalf("got %v %v", got, err)
		}
	})
	t.Run("dns answer, then cache", func(t *testing.T) {
		before := queries.Load()
		for i := 0; i < 3; i++ {
			got, err := r.Lookup(ctx, "known.test")
			if err != nil || len(got) != 1 || got[0].String() != "127.0.0.9" {
				t.Fatalf("got %v %v", got, err)
			}
		}
		if n := queries.Load() - before; n != 2 { // A and AAAA, once
			t.Fatalf("%d queries for three lookups", n)
		}
	})
	t.Run("nxdomain", func(t *testing.T) {
		_, err := r.Lookup(ctx, "missing.test")
		var re *Error
		if !errors.As(err, &re) || !re.NotFound {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("servfail is not not-found", func(t *testing.T) {
		_, err := r.Lookup(ctx, "servfail.test")
		var re *Error
		if !errors.As(err, &re) || re.NotFound {
			t.Fatalf("got %#v", err)
		}
	})
}

func TestLookupTimeout(t *testing.T) {
	// A UDP socket that never answers.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	r, _ := New(nil, []string{pc.LocalAddr().String()}, 200*time.Millisecond)
	_, err = r.Lookup(context.Background(), "slow.test")
	var re *Error
	if !errors.As(err, &re) || !re.Timeout || re.NotFound {
		t.Fatalf("got %#v", err)
	}
}

func TestParse(t *testing.T) {
	if a, err := ServerAddr("127.0.0.1"); err != nil || a != "127.0.0.1:53" {
		t.Fatalf("ServerAddr = %q %v", a, err)
	}
	if a, err := ServerAddr("[::1]:5353"); err != nil || a != "[::1]:5353" {
		t.Fatalf("ServerAddr = %q %v", a, err)
	}
	if _, err := ServerAddr("dns.example"); err == nil {
		t.Fatal("a name accepted as DNS server")
	}
	if h, a, err := ParseOverride("Crl.IdenTrust.com=127.0.0.2"); err != nil ||
		h != "crl.identrust.com" || a.String() != "127.0.0.2" {
		t.Fatalf("ParseOverride = %q %v %v", h, a, err)
	}
	for _, bad := range []string{"host", "=1.2.3.4", "host=notip"} {
		if _, _, err := ParseOverride(bad); err == nil {
			t.Fatalf("ParseOverride(%q) accepted", bad)
		}
	}
}
