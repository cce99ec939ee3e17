// Package resolve turns target host names into addresses the way the admin
// configured: static overrides first (resolve: HOST=IP), then the DNS servers
// named in dns.servers, or the system resolver when none are named. Its
// errors say whether a name does not exist, so the proxy can tell a
// dns_failure from a connect failure.
package resolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Error is a failed lookup. NotFound is true when the name does not exist
// (NXDOMAIN, or no address of any family); otherwise the lookup itself
// failed (timeout, refused, server failure).
type Error struct {
	Host     string
	NotFound bool
	Timeout  bool
	Reason   string
}

func (e *Error) Error() string {
	return fmt.Sprintf("resolving %s: %s", e.Host, e.Reason)
}

// Resolver looks up host names. The zero Resolver uses the system resolver
// with no overrides.
type Resolver struct {
	static  map[string][]netip.Addr
	servers []string
	timeout time.Duration
	client  *dns.Client

	mu    sync.RWMutex
	cache map[string]cached
}

type cached struct {
	addrs   []netip.Addr
	err     *Error
	expires time.Time
}

// cacheMax bounds the positive and negative cache: a few seconds are enough
// to spare a burst of tunnels to the same host a query each, and short
// enough that a fixed DNS record shows at the next attempt.
const (
	cacheMaxTTL     = 30 * time.Second
	cacheNegTTL     = 5 * time.Second
	cacheMaxEntries = 4096
)

// New returns a resolver. static maps host names (case-insensitive) to
// addresses; servers are DNS servers as host or host:port (port 53 when
// absent), asked in order; with no servers the system resolver is used.
func New(static map[string][]netip.Addr, servers []string, timeout time.Duration) (*Resolver, error) {
	r := &Resolver{
		static:  make(map[string][]netip.Addr, len(static)),
		timeout: timeout,
		cache:   make(map[string]cached),
	}
	if r.timeout <= 0 {
		r.timeout = 5 * time.Second
	}
	for h, a := range static {
		r.static[canonical(h)] = a
	}
	for _, s := range servers {
		addr, err := ServerAddr(s)
		if err != nil {
			return nil, err
		}
		r.servers = append(r.servers, addr)
	}
	if len(r.servers) > 0 {
		r.client = &dns.Client{Timeout: r.timeout}
	}
	return r, nil
}

// ServerAddr checks a DNS server address and adds port 53 when it has none.
func ServerAddr(s string) (string, error) {
	s = strings.TrimSpace(s)
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.String(), nil
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return "", fmt.Errorf("dns server %q: want IP or IP:port", s)
	}
	return netip.AddrPortFrom(a, 53).String(), nil
}

// ParseOverride reads one "HOST=IP" override.
func ParseOverride(s string) (host string, addr netip.Addr, err error) {
	h, ip, ok := strings.Cut(s, "=")
	h = strings.TrimSpace(h)
	if !ok || h == "" {
		return "", netip.Addr{}, fmt.Errorf("resolve %q: want HOST=IP", s)
	}
	addr, err = netip.ParseAddr(strings.Trim(strings.TrimSpace(ip), "[]"))
	if err != nil {
		return "", netip.Addr{}, fmt.Errorf("resolve %q: %q is not an IP address", s, ip)
	}
	return canonical(h), addr, nil
}

// Lookup returns the addresses of host, IPv4 first. An IP literal is
// returned as it is. Failures are *Error.
func (r *Resolver) Lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if a, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return []netip.Addr{a.Unmap()}, nil
	}
	name := canonical(host)
	if r == nil {
		return systemLookup(ctx, name)
	}
	if a, ok := r.static[name]; ok {
		return a, nil
	}
	if len(r.servers) == 0 {
		return systemLookup(ctx, name)
	}

	now := time.Now()
	r.mu.RLock()
	c, hit := r.cache[name]
	r.mu.RUnlock()
	if hit && now.Before(c.expires) {
		if c.err != nil {
			return nil, c.err
		}
		return c.addrs, nil
	}

	addrs, ttl, lerr := r.query(ctx, name)
	entry := cached{addrs: addrs, err: lerr, expires: now.Add(ttl)}
	if lerr != nil {
		if !lerr.NotFound {
			return nil, lerr // do not cache passing failures
		}
		entry.expires = now.Add(cacheNegTTL)
	}
	r.mu.Lock()
	if len(r.cache) >= cacheMaxEntries {
		clear(r.cache)
	}
	r.cache[name] = entry
	r.mu.Unlock()
	if lerr != nil {
		return nil, lerr
	}
	return addrs, nil
}

// query asks the configured servers for A and AAAA records.
func (r *Resolver) query(ctx context.Context, name string) ([]netip.Addr, time.Duration, *Error) {
	// A and AAAA are asked at once, so a server that does not answer
	// costs one timeout, not two.
	type answer struct {
		addrs []netip.Addr
		ttl   time.Duration
		err   *Error
	}
	var answers [2]answer
	var wg sync.WaitGroup
	for i, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := &answers[i]
			a.addrs, a.ttl, a.err = r.ask(ctx, name, qtype)
		}()
	}
	wg.Wait()

	var addrs []netip.Addr
	ttl := cacheMaxTTL
	nx := 0
	var last *Error
	for _, a := range answers {
		got, t, err := a.addrs, a.ttl, a.err
		if err != nil {
			if err.NotFound {
				nx++
			}
			last = err
			continue
		}
		addrs = append(addrs, got...)
		ttl = min(ttl, t)
	}
	if len(addrs) > 0 {
		return addrs, ttl, nil
	}
	if nx > 0 || last == nil {
		return nil, 0, &Error{Host: name, NotFound: true, Reason: "no such host (NXDOMAIN)"}
	}
	return nil, 0, last
}

// ask sends one question to each server in turn until one answers.
func (r *Resolver) ask(ctx context.Context, name string, qtype uint16) ([]netip.Addr, time.Duration, *Error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true

	var last *Error
	for _, srv := range r.servers {
		in, _, err := r.client.ExchangeContext(ctx, m, srv)
		if err == nil && in.Truncated {
			tcp := &dns.Client{Net: "tcp", Timeout: r.timeout}
			in, _, err = tcp.ExchangeContext(ctx, m, srv)
		}
		if err != nil {
			var ne net.Error
			last = &Error{Host: name, Reason: fmt.Sprintf("dns server %s: %v", srv, err)}
			if errors.As(err, &ne) && ne.Timeout() {
				last.Timeout = true
				last.Reason = fmt.Sprintf("dns server %s did not answer in time", srv)
			}
			continue
		}
		switch in.Rcode {
		case dns.RcodeSuccess:
		case dns.RcodeNameError:
			return nil, 0, &Error{Host: name, NotFound: true, Reason: "no such host (NXDOMAIN)"}
		default:
			last = &Error{Host: name, Reason: fmt.Sprintf("dns server %s answered %s",
				srv, dns.RcodeToString[in.Rcode])}
			continue
		}
		var addrs []netip.Addr
		ttl := cacheMaxTTL
		for _, rr := range in.Answer {
			var ip net.IP
			switch v := rr.(type) {
			case *dns.A:
				ip = v.A
			case *dns.AAAA:
				ip = v.AAAA
			default:
				continue
			}
			if a, ok := netip.AddrFromSlice(ip); ok {
				addrs = append(addrs, a.Unmap())
				ttl = min(ttl, time.Duration(rr.Header().Ttl)*time.Second)
			}
		}
		if len(addrs) == 0 {
			return nil, 0, &Error{Host: name, NotFound: true, Reason: "no address records"}
		}
		return addrs, ttl, nil
	}
	return nil, 0, last
}

func systemLookup(ctx context.Context, name string) ([]netip.Addr, error) {
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", name)
	if err == nil && len(addrs) > 0 {
		for i := range addrs {
			addrs[i] = addrs[i].Unmap()
		}
		return addrs, nil
	}
	e := &Error{Host: name, Reason: "no address"}
	var de *net.DNSError
	if errors.As(err, &de) {
		e.NotFound = de.IsNotFound
		e.Timeout = de.IsTimeout
		e.Reason = de.Err
	}
	if e.NotFound {
		e.Reason = "no such host"
	}
	return nil, e
}

func canonical(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
}
