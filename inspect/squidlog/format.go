// Package squidlog reads Squid access-log lines and turns each into an
// inspect.Event: who asked for what, how Squid tagged the transaction, and
// the outcome tetrascope would give it. It knows Squid's native format, the
// common and combined formats (with Squid's trailing %Ss:%Sh) and custom
// logformat definitions built from Squid's % codes.
//
// A log line says less than an inline proxy sees: no TLS handshake, and,
// without %err_code, no difference between a name that did not resolve and
// a server that refused the connection. Where the line cannot tell, the
// event says so in its detail instead of guessing (outcome "unreachable",
// empty SNI); docs/sidecar.md lists what each Squid tag maps to.
//
// The package imports only the standard library and inspect.
package squidlog

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// The names of the formats NewParser knows.
const (
	FormatSquid    = "squid"
	FormatCommon   = "common"
	FormatCombined = "combined"
	FormatCustom   = "custom"
)

// The built-in formats, as Squid defines them (squid.conf, "logformat").
const (
	LogFormatSquid  = `%ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt`
	LogFormatCommon = `%>a %[ui %[un [%tl] "%rm %ru HTTP/%rv" %>Hs %<st %Ss:%Sh`
	// LogFormatCombined is common plus the Referer and User-Agent headers.
	LogFormatCombined = `%>a %[ui %[un [%tl] "%rm %ru HTTP/%rv" %>Hs %<st ` +
		`"%{Referer}>h" "%{User-Agent}>h" %Ss:%Sh`
)

// Config says how to read a log. The zero Config reads Squid's native
// format and classifies every host as "other".
type Config struct {
	// Format is squid, common, combined or custom; empty means squid.
	Format string
	// LogFormat is the format specification for custom, with Squid's %
	// codes. A whole squid.conf line ("logformat NAME SPEC") is accepted
	// too. It must be empty for the other formats.
	LogFormat string
	// Catalog classifies target hosts; nil classifies all as "other".
	Catalog *inspect.Catalog
	// Location is the time zone of %tl and %tg times that carry no zone
	// (custom strftime arguments without %z); nil means UTC for %tg and
	// the local zone for %tl, as Squid writes them.
	Location *time.Location
}

// code identifies what a % code means to the parser.
type code uint8

// Codes tetrascope reads; every other code is matched and ignored.
const (
	cOpaque code = iota
	cTimeSec
	cTimeSub
	cTimeLocal
	cTimeGMT
	cTimeStart
	cElapsed
	cClient
	cServer
	cUser
	cUserAuth
	cUserExt
	cUserSSL
	cUserIdent
	cTag
	cHier
	cStatus
	cUpstreamStatus
	cBytesDown
	cBytesUp
	cMethod
	cURL
	cDomain
	cPort
	cMIME
	cErrCode
	cErrDetail
	cSNI
	cRequestType
	cCredentials
	numCodes
)

// shape is how far a value may extend in the line.
type shape uint8

const (
	shapeToken  shape = iota // no spaces
	shapeFree                // anything; found by what follows it
	shapeQuoted              // a "..." string with backslash escapes
)

// codeInfo describes one Squid % code.
type codeInfo struct {
	name  string
	code  code
	shape shape
}

// knownCodes lists the Squid % codes the parser recognises by name (the
// longest name that matches wins). Codes whose value the parser does not
// use keep cOpaque; they are listed so that their extent in a line is right
// (most are single tokens).
var knownCodes = []codeInfo{
	{"ssl::>sni", cSNI, shapeToken},
	{"ssl::bump_mode", cOpaque, shapeToken},
	{"ssl::>cert_subject", cOpaque, shapeFree},
	{"ssl::>cert_issuer", cOpaque, shapeFree},
	{"ssl::<cert_subject", cOpaque, shapeFree},
	{"ssl::<cert_issuer", cOpaque, shapeFree},
	{"ssl::<cert_errors", cOpaque, shapeFree},
	{"ssl::<cert", cOpaque, shapeFree},
	{"ssl::>negotiated_version", cOpaque, shapeToken},
	{"ssl::<negotiated_version", cOpaque, shapeToken},
	{"ssl::>received_hello_version", cOpaque, shapeToken},
	{"ssl::<received_hello_version", cOpaque, shapeToken},
	{"ssl::>received_supported_version", cOpaque, shapeToken},
	{"ssl::<received_supported_version", cOpaque, shapeToken},
	{"ssl::>negotiated_cipher", cOpaque, shapeToken},
	{"ssl::<negotiated_cipher", cOpaque, shapeToken},
	{"err_code", cErrCode, shapeToken},
	{"err_detail", cErrDetail, shapeFree},
	{"master_xaction", cOpaque, shapeToken},
	{"credentials", cCredentials, shapeFree},
	{"busy_time", cOpaque, shapeToken},
	{"note", cOpaque, shapeFree},
	{">handshake", cOpaque, shapeToken},
	{">eui", cOpaque, shapeToken},
	{">qos", cOpaque, shapeToken},
	{"<qos", cOpaque, shapeToken},
	{">nfmark", cOpaque, shapeToken},
	{"<nfmark", cOpaque, shapeToken},
	{">la", cOpaque, shapeToken},
	{">lp", cOpaque, shapeToken},
	{"<la", cOpaque, shapeToken},
	{"<lp", cOpaque, shapeToken},
	{">ha", cOpaque, shapeFree},
	{">Hs", cStatus, shapeToken},
	{"<Hs", cUpstreamStatus, shapeToken},
	{">rm", cMethod, shapeToken},
	{"<rm", cOpaque, shapeToken},
	{">ru", cURL, shapeToken},
	{"<ru", cOpaque, shapeToken},
	{">rs", cOpaque, shapeToken},
	{"<rs", cOpaque, shapeToken},
	{">rd", cDomain, shapeToken},
	{"<rd", cOpaque, shapeToken},
	{">rP", cPort, shapeToken},
	{"<rP", cOpaque, shapeToken},
	{">rp", cOpaque, shapeToken},
	{"<rp", cOpaque, shapeToken},
	{">rv", cOpaque, shapeToken},
	{"<rv", cOpaque, shapeToken},
	{">st", cBytesUp, shapeToken},
	{"<st", cBytesDown, shapeToken},
	{">sh", cOpaque, shapeToken},
	{"<sh", cOpaque, shapeToken},
	{"<sH", cOpaque, shapeToken},
	{"<sS", cOpaque, shapeToken},
	{"<bs", cOpaque, shapeToken},
	{"<pt", cOpaque, shapeToken},
	{"<tt", cOpaque, shapeToken},
	{">a", cClient, shapeToken},
	{">A", cClient, shapeToken},
	{">p", cOpaque, shapeToken},
	{"<a", cServer, shapeToken},
	{"<A", cServer, shapeToken},
	{"<p", cOpaque, shapeToken},
	{">h", cOpaque, shapeFree}, // cRequestType with {Content-Type}
	{"<h", cOpaque, shapeFree},
	{"la", cOpaque, shapeToken},
	{"lp", cOpaque, shapeToken},
	{"ts", cTimeSec, shapeToken},
	{"tu", cTimeSub, shapeToken},
	{"tl", cTimeLocal, shapeFree},
	{"tg", cTimeGMT, shapeFree},
	{"tr", cElapsed, shapeToken},
	{"tS", cTimeStart, shapeToken},
	{"dt", cOpaque, shapeToken},
	{"et", cOpaque, shapeFree},
	{"ea", cOpaque, shapeFree},
	{"un", cUser, shapeToken},
	{"ul", cUserAuth, shapeToken},
	{"ue", cUserExt, shapeToken},
	{"ui", cUserIdent, shapeToken},
	{"us", cUserSSL, shapeToken},
	{"Hs", cStatus, shapeToken},
	{"Ss", cTag, shapeToken},
	{"Sh", cHier, shapeToken},
	{"mt", cMIME, shapeFree},
	{"rm", cMethod, shapeToken},
	{"ru", cURL, shapeToken},
	{"rp", cOpaque, shapeToken},
	{"rv", cOpaque, shapeToken},
	{"st", cOpaque, shapeToken},
	{"sn", cOpaque, shapeToken},
}

// item is one piece of a compiled format: literal text, or a field.
type item struct {
	lit   string // literal text; empty for a field
	name  string // the field's code as written, for errors
	code  code
	shape shape
	arg   string // the {argument}
	frac  int    // the digits of %tu: its maximum width (%.6tu), else 3
	enc   byte   // the encoding modifier, 0 if none
}

// maxFields bounds the fields of one format.
const maxFields = 64

// Parser turns log lines of one format into events. It is safe for
// concurrent use; Parse keeps no state between lines.
type Parser struct {
	items   []item
	fields  int
	has     [numCodes]bool
	catalog *inspect.Catalog
	local   *time.Location // for %tl without a zone
	gmt     *time.Location // for %tg without a zone
	layout  [numCodes]string
	spec    string
}

// NewParser compiles cfg into a Parser. The format must name a time
// (%ts, %tl, %tg or %tS), the client (%>a), the request URL (%ru) or
// domain (%>rd), and a status (%>Hs or %Ss); two codes must be separated by
// some literal text.
func NewParser(cfg Config) (*Parser, error) {
	spec, err := formatSpec(cfg.Format, cfg.LogFormat)
	if err != nil {
		return nil, err
	}
	p := &Parser{catalog: cfg.Catalog, spec: spec, local: time.Local, gmt: time.UTC}
	if cfg.Location != nil {
		p.local, p.gmt = cfg.Location, cfg.Location
	}
	if err := p.compile(spec); err != nil {
		return nil, fmt.Errorf("logformat %q: %w", spec, err)
	}
	return p, nil
}

// Spec returns the format specification the parser reads.
func (p *Parser) Spec() string { return p.spec }

func formatSpec(name, custom string) (string, error) {
	switch name {
	case "", FormatSquid, FormatCommon, FormatCombined:
		if custom != "" {
			return "", fmt.Errorf("a logformat is only taken with format %q, not %q",
				FormatCustom, name)
		}
	}
	switch name {
	case "", FormatSquid:
		return LogFormatSquid, nil
	case FormatCommon:
		return LogFormatCommon, nil
	case FormatCombined:
		return LogFormatCombined, nil
	case FormatCustom:
		spec := strings.TrimSpace(custom)
		// Accept a squid.conf line as it stands.
		if rest, ok := strings.CutPrefix(spec, "logformat "); ok {
			_, spec, _ = strings.Cut(strings.TrimSpace(rest), " ")
			spec = strings.TrimSpace(spec)
		}
		if spec == "" {
			return "", errors.New("format custom needs a logformat specification")
		}
		return spec, nil
	}
	return "", fmt.Errorf("unknown log format %q: want squid, common, combined or custom", name)
}

func (p *Parser) compile(spec string) error {
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			p.items = append(p.items, item{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(spec); {
		c := spec[i]
		if c != '%' {
			lit.WriteByte(c)
			i++
			continue
		}
		if i+1 < len(spec) && spec[i+1] == '%' {
			lit.WriteByte('%')
			i += 2
			continue
		}
		it, n, err := parseCode(spec[i:])
		if err != nil {
			return err
		}
		i += n
		flush()
		if len(p.items) > 0 && p.items[len(p.items)-1].lit == "" {
			return fmt.Errorf("%%%s follows %%%s with nothing between them",
				it.name, p.items[len(p.items)-1].name)
		}
		if p.fields++; p.fields > maxFields {
			return fmt.Errorf("more than %d codes", maxFields)
		}
		p.has[it.code] = true
		p.items = append(p.items, it)
	}
	flush()

	for _, it := range p.items {
		if it.code == cTimeLocal || it.code == cTimeGMT {
			layout, err := strftimeLayout(it.arg, it.code == cTimeLocal)
			if err != nil {
				return fmt.Errorf("%%%s: %w", it.name, err)
			}
			p.layout[it.code] = layout
		}
	}

	switch {
	case !p.has[cTimeSec] && !p.has[cTimeLocal] && !p.has[cTimeGMT] && !p.has[cTimeStart]:
		return errors.New("no time code (%ts, %tl, %tg or %tS): events need a time")
	case p.has[cTimeSub] && !p.has[cTimeSec]:
		return errors.New("%tu without %ts")
	case !p.has[cClient]:
		return errors.New("no client code (%>a): events are kept per client")
	case !p.has[cURL] && !p.has[cDomain]:
		return errors.New("no request URL code (%ru or %>rd)")
	case !p.has[cStatus] && !p.has[cTag]:
		return errors.New("no status code (%>Hs or %Ss)")
	}
	return nil
}

// parseCode reads one "%..." code at the start of s and returns it with
// the number of bytes it took.
func parseCode(s string) (item, int, error) {
	var it item
	i := 1
	if i < len(s) && strings.IndexByte(`"['#/`, s[i]) >= 0 {
		it.enc = s[i]
		i++
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	// [[0]width][.max]: only the maximum matters, as the digits of %tu.
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i < len(s) && s[i] == '.' {
		j := i + 1
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		it.frac = atoiSmall(s[i+1 : j])
		i = j
	}
	if i < len(s) && s[i] == '{' {
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return it, 0, fmt.Errorf("unclosed { in %q", s)
		}
		it.arg = s[i+1 : i+end]
		i += end + 1
	}
	rest := strings.TrimPrefix(s[i:], "http::")
	skipped := len(s[i:]) - len(rest)
	name, info, ok := lookupCode(rest)
	if !ok {
		return it, 0, fmt.Errorf("unknown code at %q", truncate(s, 24))
	}
	i += skipped + len(name)
	if it.arg == "" && i < len(s) && s[i] == '{' {
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return it, 0, fmt.Errorf("unclosed { in %q", s)
		}
		it.arg = s[i+1 : i+end]
		i += end + 1
	}
	it.name, it.code, it.shape = name, info.code, info.shape
	if it.enc == '"' {
		it.shape = shapeQuoted
	}
	if name == ">h" && strings.EqualFold(it.arg, "Content-Type") {
		it.code = cRequestType
	}
	if it.code == cTimeSub && (it.frac == 0 || it.frac > 9) {
		it.frac = 3 // Squid's %tu is in milliseconds unless .max says otherwise
	}
	return it, i, nil
}

// lookupCode finds the longest known code at the start of s. Codes Squid
// knows and this table does not (adaptation, ICAP, PROXY protocol) are
// taken as opaque free-text fields when they look like a code.
func lookupCode(s string) (string, codeInfo, bool) {
	best := -1
	for k, c := range knownCodes {
		if strings.HasPrefix(s, c.name) && (best < 0 || len(c.name) > len(knownCodes[best].name)) {
			best = k
		}
	}
	if best >= 0 {
		return knownCodes[best].name, knownCodes[best], true
	}
	for _, prefix := range []string{"adapt::", "icap::", "proxy_protocol::"} {
		if strings.HasPrefix(s, prefix) {
			n := len(prefix)
			for n < len(s) && isCodeByte(s[n]) {
				n++
			}
			return s[:n], codeInfo{code: cOpaque, shape: shapeFree}, true
		}
	}
	return "", codeInfo{}, false
}

func isCodeByte(c byte) bool {
	return c == '_' || c == '<' || c == '>' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// strftimeLayout turns a strftime specification (Squid's {arg} of %tl and
// %tg) into a Go time layout. An empty spec gives Squid's defaults.
func strftimeLayout(spec string, local bool) (string, error) {
	if spec == "" {
		if local {
			spec = "%d/%b/%Y:%H:%M:%S %z"
		} else {
			spec = "%d/%b/%Y:%H:%M:%S"
		}
	}
	var b strings.Builder
	for i := 0; i < len(spec); i++ {
		if spec[i] != '%' || i+1 == len(spec) {
			b.WriteByte(spec[i])
			continue
		}
		i++
		switch spec[i] {
		case 'd':
			b.WriteString("02")
		case 'e':
			b.WriteString("_2")
		case 'b', 'h':
			b.WriteString("Jan")
		case 'B':
			b.WriteString("January")
		case 'm':
			b.WriteString("01")
		case 'Y':
			b.WriteString("2006")
		case 'y':
			b.WriteString("06")
		case 'H':
			b.WriteString("15")
		case 'I':
			b.WriteString("03")
		case 'p':
			b.WriteString("PM")
		case 'M':
			b.WriteString("04")
		case 'S':
			b.WriteString("05")
		case 'z':
			b.WriteString("-0700")
		case 'Z':
			b.WriteString("MST")
		case 'a':
			b.WriteString("Mon")
		case 'A':
			b.WriteString("Monday")
		case 'T':
			b.WriteString("15:04:05")
		case 'F':
			b.WriteString("2006-01-02")
		case 'D':
			b.WriteString("01/02/06")
		case '%':
			b.WriteByte('%')
		default:
			return "", fmt.Errorf("strftime %%%c is not supported", spec[i])
		}
	}
	return b.String(), nil
}

func atoiSmall(s string) int {
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' || n > 1000 {
			return n
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
