package inspect

import (
	"math"
	"strings"
	"time"
)

// Defaults of the correlation keys (DESIGN.md, "Configuration").
const (
	DefaultUpdateInterval   = time.Hour
	DefaultRevocationWindow = 30 * time.Second
	DefaultAuthWindow       = 60 * time.Second

	// DefaultMaxClients bounds the clients a Clients keeps; past it, the
	// client heard from least recently is forgotten.
	DefaultMaxClients = 100_000

	// DefaultMaxEvents bounds the recent update events kept per client.
	DefaultMaxEvents = 256
)

// DefaultExpectedIssuers are the certificate authorities expected to issue
// the definition servers' certificates.
var DefaultExpectedIssuers = []string{"IdenTrust", "HydrantID"}

// Correlation holds the settings of the per-client correlation (the
// correlation.* keys). Every zero or negative field takes its default.
type Correlation struct {
	// UpdateInterval is how often a connector tries to update (default
	// one hour); the state window is twice this.
	UpdateInterval time.Duration

	// RevocationWindow is how long after a failed revocation fetch a tetra
	// tunnel the client abandons is blamed on it (default 30 s).
	RevocationWindow time.Duration

	// AuthWindow is how long a client has to follow a 407 challenge with
	// a request the proxy accepts before the challenge counts as a
	// failure (default 60 s).
	AuthWindow time.Duration

	// ExpectedIssuers are matched, case-insensitively, as substrings of the
	// O and CN attributes of a certificate's issuer; empty means
	// DefaultExpectedIssuers.
	ExpectedIssuers []string

	// MaxClients bounds the number of clients kept (default
	// DefaultMaxClients); MaxEvents bounds the update events kept per
	// client (default DefaultMaxEvents). Together they bound memory.
	MaxClients int
	MaxEvents  int
}

// maxWindow caps configured durations so that time arithmetic on
// nanosecond counts cannot overflow.
const maxWindow = time.Duration(1 << 56)

// withDefaults returns c with every zero field set to its default.
func (c Correlation) withDefaults() Correlation {
	dur := func(d, def time.Duration) time.Duration {
		if d <= 0 {
			return def
		}
		return min(d, maxWindow)
	}
	c.UpdateInterval = dur(c.UpdateInterval, DefaultUpdateInterval)
	c.RevocationWindow = dur(c.RevocationWindow, DefaultRevocationWindow)
	c.AuthWindow = dur(c.AuthWindow, DefaultAuthWindow)

	var issuers []string
	for _, s := range c.ExpectedIssuers {
		if s = strings.TrimSpace(s); s != "" {
			issuers = append(issuers, s)
		}
	}
	if len(issuers) == 0 {
		issuers = DefaultExpectedIssuers
	}
	c.ExpectedIssuers = issuers

	if c.MaxClients <= 0 {
		c.MaxClients = DefaultMaxClients
	}
	if c.MaxEvents <= 0 {
		c.MaxEvents = DefaultMaxEvents
	}
	c.MaxEvents = min(c.MaxEvents, math.MaxInt32)
	return c
}

// StateWindow returns the window over which a client's state is judged:
// twice the update interval, after defaults.
func (c Correlation) StateWindow() time.Duration {
	return 2 * c.withDefaults().UpdateInterval
}

// IssuerExpected reports whether a certificate issuer, written as an RFC
// 2253 distinguished name ("CN=...,O=...,C=US"), names one of the expected
// issuers in its O or CN attribute. An issuer with neither attribute is
// not expected.
func (c Correlation) IssuerExpected(issuer string) bool {
	return issuerMatches(issuer, c.withDefaults().ExpectedIssuers)
}

func issuerMatches(issuer string, expected []string) bool {
	for _, attr := range splitDN(issuer) {
		if !strings.EqualFold(attr.key, "CN") && !strings.EqualFold(attr.key, "O") {
			continue
		}
		v := strings.ToLower(attr.value)
		for _, want := range expected {
			if strings.Contains(v, strings.ToLower(want)) {
				return true
			}
		}
	}
	return false
}

type dnAttr struct{ key, value string }

// splitDN reads the attributes of an RFC 2253 (RFC 4514) distinguished
// name, undoing backslash escapes, whether an attribute stands alone in its
// RDN or is joined to others with '+'. Malformed parts are skipped.
func splitDN(dn string) []dnAttr {
	var (
		attrs []dnAttr
		part  strings.Builder
		key   string
		inKey = true
	)
	flush := func() {
		if !inKey {
			attrs = append(attrs, dnAttr{strings.TrimSpace(key), strings.TrimSpace(part.String())})
		}
		part.Reset()
		key, inKey = "", true
	}
	for i := 0; i < len(dn); i++ {
		ch := dn[i]
		switch {
		case ch == '\\' && i+1 < len(dn):
			if i+2 < len(dn) && isHex(dn[i+1]) && isHex(dn[i+2]) {
				part.WriteByte(unhex(dn[i+1])<<4 | unhex(dn[i+2]))
				i += 2
			} else {
				part.WriteByte(dn[i+1])
				i++
			}
		case ch == '=' && inKey:
			key, inKey = part.String(), false
			part.Reset()
		case ch == ',' || ch == '+' || ch == ';':
			flush()
		default:
			part.WriteByte(ch)
		}
	}
	flush()
	return attrs
}

func isHex(b byte) bool {
	return '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
}

func unhex(b byte) byte {
	switch {
	case b >= 'a':
		return b - 'a' + 10
	case b >= 'A':
		return b - 'A' + 10
	}
	return b - '0'
}
