package inspect

import (
	"fmt"
	"strconv"
	"strings"
)

// LastError is a code a connector records at //tetra/lasterror in
// local.xml: the unsigned 32-bit form of a small negative number. Zero means
// no error.
type LastError uint32

// The documented codes of DOMAIN.md.
const (
	LastErrorNone           LastError = 0
	LastErrorProxyConnect   LastError = 4294965193 // -2103
	LastErrorProxyAuth      LastError = 4294965196 // -2100
	LastErrorDownloadFailed LastError = 4294965187 // -2109
	LastErrorConnectTimeout LastError = 4294965188 // -2108, inferred
)

// Basis says how firmly a lasterror expectation rests on Cisco's documents.
type Basis string

// The two bases of DESIGN.md. The zero Basis means no expectation.
const (
	Documented Basis = "documented"
	Inferred   Basis = "inferred"
)

// LastErrorInfo describes one known code.
type LastErrorInfo struct {
	Code     LastError
	Meaning  string
	Evidence string // what the proxy side shows
	Action   string // what the admin should check
	Basis    Basis  // Documented when Cisco documents the code
}

// Signed returns the code as the signed 32-bit number it stands for.
func (c LastError) Signed() int32 { return int32(c) }

// lastErrors is the table of known codes; extend it here.
var lastErrors = []LastErrorInfo{
	{
		Code:     LastErrorProxyConnect,
		Meaning:  "cannot connect to the proxy",
		Evidence: "the client stopped appearing at this proxy (silent), or was never seen here",
		Action:   "check the network path from the endpoint to its proxy and the proxy setting it uses",
		Basis:    Documented,
	},
	{
		Code:     LastErrorProxyAuth,
		Meaning:  "proxy authentication failed",
		Evidence: "407 answers to credentials (auth_failed), or a 407 challenge never followed by success",
		Action:   "check the proxy credentials the connector uses (for services, often the machine account)",
		Basis:    Documented,
	},
	{
		Code:     LastErrorDownloadFailed,
		Meaning:  "connected to the proxy, download failed",
		Evidence: "the client reached the proxy, then the tunnel or a revocation fetch failed",
		Action:   "check the proxy's log for the download: name resolution, upstream, TLS and revocation",
		Basis:    Documented,
	},
	{
		Code:     LastErrorConnectTimeout,
		Meaning:  "connection timeout",
		Evidence: "connects that time out",
		Action:   "check firewalls between the proxy and the definition servers",
		Basis:    Inferred,
	},
}

// LookupLastError returns what is known of code c. For an unknown code in
// the -2100..-2199 block it returns an entry that names it as an unmapped
// network or proxy class; ok is false for every other unknown code.
func LookupLastError(c LastError) (info LastErrorInfo, ok bool) {
	for _, e := range lastErrors {
		if e.Code == c {
			return e, true
		}
	}
	if s := c.Signed(); s <= -2100 && s >= -2199 {
		return LastErrorInfo{
			Code:    c,
			Meaning: "network or proxy class, unmapped",
			Action:  "compare with the proxy's view of the client; the code is not in Cisco's documents",
			Basis:   Inferred,
		}, true
	}
	return LastErrorInfo{Code: c}, false
}

// ParseLastError reads a code written as an unsigned or signed decimal
// number or as hexadecimal with a 0x prefix. Negative and large values are
// folded into the unsigned 32-bit form.
func ParseLastError(s string) (LastError, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty lasterror value")
	}
	if h, ok := strings.CutPrefix(strings.ToLower(t), "0x"); ok {
		v, err := strconv.ParseUint(h, 16, 32)
		if err != nil {
			return 0, fmt.Errorf("lasterror %q: not a 32-bit hex number", s)
		}
		return LastError(v), nil
	}
	if strings.HasPrefix(t, "-") {
		v, err := strconv.ParseInt(t, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("lasterror %q: not a 32-bit signed number", s)
		}
		return LastError(uint32(int32(v))), nil
	}
	v, err := strconv.ParseUint(t, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("lasterror %q: not a 32-bit number", s)
	}
	return LastError(v), nil
}

// EventLastError returns the code an endpoint would most likely record for
// one event, and its basis (DESIGN.md, "lasterror"). Only tetra and
// revocation traffic carries a code; ok and auth_required give none.
func EventLastError(endpoint Endpoint, outcome Outcome) (LastError, Basis) {
	if !endpoint.Updates() || !outcome.Failure() {
		return LastErrorNone, ""
	}
	if outcome == AuthFailed {
		return LastErrorProxyAuth, Documented
	}
	if endpoint == EndpointTetra {
		return LastErrorDownloadFailed, Documented
	}
	return LastErrorDownloadFailed, Inferred
}
