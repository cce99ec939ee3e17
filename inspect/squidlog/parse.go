package squidlog

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// ErrNoRequest is returned for a line that records no request: a blank
// line, or a connection that closed before sending one (Squid logs those as
// error:transaction-end-before-headers, often for idle keep-alive
// connections). Such lines are skipped, not counted as malformed.
var ErrNoRequest = errors.New("squidlog: the line records no request")

// The kinds of SyntaxError.
const (
	KindFormat = "format" // the line does not have the format's shape
	KindTime   = "time"   // a time field is not a time
	KindNumber = "number" // a status, size or duration is not a number
)

// SyntaxError says why a line could not be read. Kind is one of KindFormat,
// KindTime and KindNumber; callers count malformed lines by it.
type SyntaxError struct {
	Kind  string
	Field string // the % code concerned, empty for KindFormat
	Value string // the offending text, cut to 64 bytes
}

// Error says what is wrong with the line, quoting the bad value.
func (e *SyntaxError) Error() string {
	if e.Field == "" {
		return "squidlog: line does not match the log format"
	}
	return fmt.Sprintf("squidlog: %%%s: %s %q", e.Field, kindText(e.Kind), e.Value)
}

func kindText(kind string) string {
	switch kind {
	case KindTime:
		return "not a time:"
	case KindNumber:
		return "not a number:"
	}
	return "bad value"
}

func syntaxError(kind string, it *item, v []byte) error {
	return &SyntaxError{Kind: kind, Field: it.name, Value: truncate(string(v), 64)}
}

// matchBudget bounds the backtracking over free-text fields, so that a
// hostile line costs no more than a few hundred steps.
const matchBudget = 256

type span struct{ from, to int32 }

// record holds a line's values as slices of the line.
type record struct {
	sec, sub     int64
	subDigits    int
	haveSec      bool
	wall, start  time.Time
	haveWall     bool
	haveStart    bool
	elapsed      int64 // milliseconds
	client       []byte
	server       []byte
	users        [5][]byte // un, ul, ue, us, ui: first non-empty wins
	unescaped    [5]bool   // the user name came from a %"code, already unescaped
	tag, hier    []byte
	status, up   int
	bytesDown    int64
	bytesUp      int64
	method, url  []byte
	domain       []byte
	port         int
	mime         []byte
	errCode      []byte
	errDetail    []byte
	sni, reqType []byte
}

// Parse reads one line (with or without its line ending) and returns its
// event: source squidlog, the time the transaction started (Squid logs it
// when it ends: end minus %tr), outcome, detail and lasterror. Sensor and
// ID are left for the caller. A line that records no request gives
// ErrNoRequest; a line that cannot be read gives a *SyntaxError.
func (p *Parser) Parse(line []byte) (inspect.Event, error) {
	var ev inspect.Event
	err := p.parse(line, &ev)
	return ev, err
}

func (p *Parser) parse(line []byte, ev *inspect.Event) error {
	line = bytes.TrimRight(line, " \t\r\n")
	line = bytes.TrimLeft(line, " \t")
	if len(line) == 0 {
		return ErrNoRequest
	}
	if len(line) > 1<<20 {
		return &SyntaxError{Kind: KindFormat}
	}

	m := matcher{items: p.items, line: line, budget: matchBudget}
	if !m.match(0, 0) {
		return &SyntaxError{Kind: KindFormat}
	}
	var r record
	if err := p.decode(&m, &r); err != nil {
		return err
	}
	return p.event(&r, ev)
}

// matcher finds where each field of a format lies in one line.
type matcher struct {
	items  []item
	line   []byte
	spans  [2*maxFields + 1]span
	budget int
}

// match reports whether items[i:] match line[pos:], recording the fields'
// spans. A token field ends at the first place where the literal after it
// matches and never spans a space; a free-text field may, and is tried at
// each place where the literal matches until the rest of the line fits.
func (m *matcher) match(i, pos int) bool {
	for i < len(m.items) {
		it := &m.items[i]
		if it.lit != "" {
			np, ok := matchLit(m.line, pos, it.lit)
			if !ok {
				return false
			}
			pos, i = np, i+1
			continue
		}
		if it.shape == shapeQuoted {
			end, ok := quotedEnd(m.line, pos)
			if !ok {
				return false
			}
			m.spans[i] = span{int32(pos), int32(end)}
			pos, i = end, i+1
			continue
		}
		if i+1 == len(m.items) {
			end := len(m.line)
			if it.shape == shapeToken {
				if sp := bytes.IndexByte(m.line[pos:], ' '); sp >= 0 {
					// log_mime_hdrs appends " [request headers] [reply
					// headers]" to the built-in formats.
					if !bytes.HasPrefix(m.line[pos+sp:], []byte(" [")) {
						return false
					}
					end = pos + sp
				}
			}
			m.spans[i] = span{int32(pos), int32(end)}
			return true
		}
		next := m.items[i+1].lit
		for q := pos; q < len(m.line); q++ {
			c := m.line[q]
			if c == next[0] {
				if m.budget--; m.budget < 0 {
					return false
				}
				m.spans[i] = span{int32(pos), int32(q)}
				if m.match(i+1, q) {
					return true
				}
			}
			if c == ' ' && it.shape == shapeToken {
				return false
			}
		}
		return false
	}
	return pos == len(m.line)
}

// matchLit matches literal text at line[pos:]; a run of spaces in the
// literal matches a run of one or more spaces in the line, since Squid pads
// some fields (%6tr) with spaces.
func matchLit(line []byte, pos int, lit string) (int, bool) {
	for j := 0; j < len(lit); {
		if lit[j] == ' ' {
			for j < len(lit) && lit[j] == ' ' {
				j++
			}
			if pos >= len(line) || line[pos] != ' ' {
				return 0, false
			}
			for pos < len(line) && line[pos] == ' ' {
				pos++
			}
			continue
		}
		if pos >= len(line) || line[pos] != lit[j] {
			return 0, false
		}
		pos, j = pos+1, j+1
	}
	return pos, true
}

// quotedEnd returns the end of the "..." string at line[pos:], or "-" for
// an empty value.
func quotedEnd(line []byte, pos int) (int, bool) {
	if pos < len(line) && line[pos] == '-' {
		return pos + 1, true
	}
	if pos >= len(line) || line[pos] != '"' {
		return 0, false
	}
	for q := pos + 1; q < len(line); q++ {
		switch line[q] {
		case '\\':
			q++
		case '"':
			return q + 1, true
		}
	}
	return 0, false
}

// decode reads the matched fields into r.
func (p *Parser) decode(m *matcher, r *record) error {
	for i := range p.items {
		it := &p.items[i]
		if it.lit != "" || it.code == cOpaque || it.code == cCredentials {
			continue
		}
		v := m.line[m.spans[i].from:m.spans[i].to]
		if it.shape == shapeQuoted {
			v = unquote(v)
		}
		v = bytes.TrimSpace(v)
		if len(v) == 1 && v[0] == '-' {
			v = nil
		}

		var err error
		switch it.code {
		case cTimeSec:
			r.sec, err = number(it, v)
			r.haveSec = true
		case cTimeSub:
			r.sub, err = number(it, v)
			r.subDigits = it.frac
		case cTimeLocal, cTimeGMT:
			loc := p.local
			if it.code == cTimeGMT {
				loc = p.gmt
			}
			r.wall, err = time.ParseInLocation(p.layout[it.code], string(v), loc)
			if err != nil {
				return syntaxError(KindTime, it, v)
			}
			r.haveWall = true
		case cTimeStart:
			r.start, err = epochTime(v)
			if err != nil {
				return syntaxError(KindTime, it, v)
			}
			r.haveStart = true
		case cElapsed:
			r.elapsed, err = number(it, v)
		case cClient:
			r.client = v
		case cServer:
			r.server = v
		case cUser, cUserAuth, cUserExt, cUserSSL, cUserIdent:
			r.users[it.code-cUser] = v
			r.unescaped[it.code-cUser] = it.shape == shapeQuoted
		case cTag:
			r.tag = v
		case cHier:
			r.hier = v
		case cStatus:
			var n int64
			n, err = number(it, v)
			r.status = int(n)
		case cUpstreamStatus:
			var n int64
			n, err = number(it, v)
			r.up = int(n)
		case cBytesDown:
			r.bytesDown, err = number(it, v)
		case cBytesUp:
			r.bytesUp, err = number(it, v)
		case cMethod:
			r.method = v
		case cURL:
			r.url = v
		case cDomain:
			r.domain = v
		case cPort:
			var n int64
			n, err = number(it, v)
			r.port = int(n)
		case cMIME:
			r.mime = v
		case cErrCode:
			r.errCode = v
		case cErrDetail:
			r.errDetail = v
		case cSNI:
			r.sni = v
		case cRequestType:
			r.reqType = v
		}
		if err != nil {
			return err
		}
	}
	if (p.has[cTimeSec] && !r.haveSec) || (r.haveSec && (r.sec <= 0 || r.sec > maxEpoch)) {
		return &SyntaxError{Kind: KindTime, Field: "ts"}
	}
	if r.elapsed > maxElapsedMS {
		return &SyntaxError{Kind: KindNumber, Field: "tr"}
	}
	return nil
}

// Bounds of times: an event must be stored and shown, which needs a year
// of four digits, so a time past 9999 is not a time (it would otherwise
// reach the client state and break every answer that shows the client).
// A tunnel is not open for more than a few years either.
const (
	maxEpoch     = 253402300799 // 9999-12-31T23:59:59Z
	maxElapsedMS = 10 * 366 * 24 * 3600 * 1000
)

// maxNumber bounds numeric fields (sizes, durations, statuses): larger
// values are not from Squid.
const maxNumber = 1 << 53

// number reads a non-negative decimal number; "-" (nil) is zero.
func number(it *item, v []byte) (int64, error) {
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' || n > maxNumber/10 {
			kind := KindNumber
			if it.code == cTimeSec || it.code == cTimeSub {
				kind = KindTime
			}
			return 0, syntaxError(kind, it, v)
		}
		n = n*10 + int64(c-'0')
	}
	if it.code == cStatus || it.code == cUpstreamStatus {
		if n > 999 {
			return 0, syntaxError(KindNumber, it, v)
		}
	}
	return n, nil
}

// epochTime reads "seconds.fraction" (%tS).
func epochTime(v []byte) (time.Time, error) {
	sec, frac, _ := bytes.Cut(v, []byte("."))
	var s, ns int64
	if len(sec) == 0 || len(sec) > 12 || len(frac) > 9 {
		return time.Time{}, errors.New("bad time")
	}
	for _, c := range sec {
		if c < '0' || c > '9' {
			return time.Time{}, errors.New("bad time")
		}
		s = s*10 + int64(c-'0')
	}
	if s > maxEpoch {
		return time.Time{}, errors.New("bad time")
	}
	scale := int64(1e9)
	for _, c := range frac {
		if c < '0' || c > '9' {
			return time.Time{}, errors.New("bad time")
		}
		scale /= 10
		ns += int64(c-'0') * scale
	}
	return time.Unix(s, ns), nil
}

// unquote removes the quotes and backslash escapes of a %"code value.
func unquote(v []byte) []byte {
	if len(v) < 2 || v[0] != '"' {
		return v
	}
	v = v[1 : len(v)-1]
	if bytes.IndexByte(v, '\\') < 0 {
		return v
	}
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\\' && i+1 < len(v) {
			i++
			switch v[i] {
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case 't':
				c = '\t'
			default:
				c = v[i]
			}
		}
		out = append(out, c)
	}
	return out
}
