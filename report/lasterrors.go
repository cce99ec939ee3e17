package report

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/tetrascope/tetrascope/inspect"
)

// Limits of ParseLastErrors.
const (
	// MaxLastErrorsBytes is the largest lasterrors file read; a larger one
	// is refused as a whole.
	MaxLastErrorsBytes = 32 << 20
	// MaxEndpoints is the most endpoint rows used from one file; the rows
	// after it are reported as one error.
	MaxEndpoints = 200_000
)

// Endpoint is one connector machine as it reported itself: one row of a
// lasterrors file. Host or IP, or both, are set; the other fields are
// empty when the file does not give them.
type Endpoint struct {
	// Line is the line of the file the row starts on, counting from 1.
	Line int `json:"line"`
	// Host is the host name as written in the file; IP the address in
	// its canonical form.
	Host string `json:"host"`
	IP   string `json:"ip"`
	// LastError is the value of //tetra/lasterror in the connector's
	// local.xml.
	LastError inspect.LastError `json:"lasterror"`
	// DefVersion (the connector keeps it as "<a>:<version>") and
	// LastUpdate are kept as the text the file gives.
	DefVersion string `json:"defversion"`
	LastUpdate string `json:"last_update"`
}

// RowError is a row of a lasterrors file that was not used, and why.
type RowError struct {
	Line int    `json:"line"`
	Err  string `json:"error"`
}

func (e RowError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Err) }

// The columns of a lasterrors file.
const (
	colHost = iota
	colIP
	colLastError
	colDefVersion
	colLastUpdate
	numCols
)

var colNames = [numCols]string{"host", "ip", "lasterror", "defversion", "last_update"}

// headerAliases maps a header cell, reduced to lower-case letters and
// digits, to its column. The names are those of hand-made sheets and of
// the usual inventory exports.
var headerAliases = map[string]int{
	"host": colHost, "hostname": colHost, "computer": colHost, "computername": colHost,
	"name": colHost, "machine": colHost, "machinename": colHost, "device": colHost,
	"devicename": colHost, "dnsname": colHost, "fqdn": colHost, "endpoint": colHost,

	"ip": colIP, "ipaddress": colIP, "address": colIP, "ipv4": colIP, "ipv4address": colIP,
	"ipv6": colIP, "internalip": colIP, "clientip": colIP, "localip": colIP,

	"lasterror": colLastError, "tetralasterror": colLastError, "lasterrorcode": colLastError,
	"tetraerror": colLastError,

	"defversion": colDefVersion, "definitionversion": colDefVersion, "version": colDefVersion,
	"defversions": colDefVersion, "definitions": colDefVersion, "tetraversion": colDefVersion,
	"tetradefversion": colDefVersion,

	"lastupdate": colLastUpdate, "updated": colLastUpdate, "lastupdated": colLastUpdate,
	"lastupdatetime": colLastUpdate, "updatetime": colLastUpdate,
	"definitionsupdated": colLastUpdate, "lastdefinitionupdate": colLastUpdate,
}

// separators are the field separators recognised, in order of preference
// when a header has as many of one as of another.
var separators = []rune{',', ';', '\t', '|'}

// ParseLastErrors reads a CSV of the lasterror values that admins gathered
// from endpoints. The first row that is not empty names the columns; case,
// spaces, '_', '-' and '.' in names are ignored, and common aliases are
// known (host, hostname, computer, name; ip, ip_address, address;
// lasterror, last_error, tetra_lasterror; defversion, definition_version,
// version; lastupdate, last_update, updated). The file needs a lasterror
// column and a host or an ip column; other columns are ignored.
//
// The separator is the one of , ; tab | that the header uses most, or the
// one an Excel "sep=X" first line names. A UTF-8 or UTF-16 byte order mark
// is understood, fields may be quoted as in RFC 4180, lines starting with
// '#' are comments (PowerShell's "#TYPE" line among them), and rows whose
// cells are all empty are skipped.
//
// Each row that cannot be used (no host nor ip, an address or lasterror
// that does not parse, the same endpoint as an earlier row, broken quoting)
// is returned as a RowError with its line, and the other rows are used. A
// lasterror may be unsigned, signed or 0x hexadecimal
// (inspect.ParseLastError). The error is non-nil only when the file as a
// whole cannot be used: unreadable, too large, not text, without the
// columns needed, or with rows of which none can be used. A header alone
// gives no endpoints and no error.
func ParseLastErrors(r io.Reader) ([]Endpoint, []RowError, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxLastErrorsBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("reading lasterrors: %w", err)
	}
	if len(data) > MaxLastErrorsBytes {
		return nil, nil, fmt.Errorf("lasterrors file larger than %d MiB", MaxLastErrorsBytes>>20)
	}
	text, err := decodeText(data)
	if err != nil {
		return nil, nil, err
	}

	// An Excel hint line names the separator and is not the header.
	offset := 0
	sep, hinted := rune(0), false
	first, rest, _ := strings.Cut(text, "\n")
	if s, found := strings.CutPrefix(strings.ToLower(strings.TrimSuffix(first, "\r")),
		"sep="); found && utf8.RuneCountInString(s) == 1 {
		sep, hinted = []rune(s)[0], true
		text, offset = rest, 1
	}
	if !hinted {
		sep = detectSeparator(text)
	}
	if !validSeparator(sep) {
		return nil, nil, fmt.Errorf("lasterrors: %q cannot separate fields", sep)
	}

	p := csvParser{byHost: map[string]int{}, byIP: map[string]int{}}
	cr := newCSVReader(text, sep)
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			if p.cols == nil {
				return nil, nil, fmt.Errorf("lasterrors: header, line %d: %v",
					pe.StartLine+offset, pe.Err)
			}
			p.bad(pe.StartLine+offset, "%v", pe.Err)
			// A quote left open would swallow every line after it: the
			// record ends with its own line, and reading starts again on
			// the next one.
			text = afterLine(text, pe.StartLine)
			offset += pe.StartLine
			cr = newCSVReader(text, sep)
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("reading lasterrors: %w", err)
		}
		line, _ := cr.FieldPos(0)
		line += offset

		if p.cols == nil {
			if err := p.header(rec, line); err != nil {
				return nil, nil, err
			}
			continue
		}
		if len(p.endpoints) >= MaxEndpoints {
			p.bad(line, "more than %d endpoints: this row and the rest are ignored", MaxEndpoints)
			break
		}
		p.row(rec, line)
	}
	if p.cols == nil {
		return nil, nil, errors.New("lasterrors: no header row (the file is empty)")
	}
	if len(p.endpoints) == 0 && len(p.errors) > 0 {
		return nil, nil, fmt.Errorf("lasterrors: no row can be used (%s)", firstErrors(p.errors))
	}
	return p.endpoints, p.errors, nil
}

// newCSVReader reads text as the lasterrors format has it.
func newCSVReader(text string, sep rune) *csv.Reader {
	cr := csv.NewReader(strings.NewReader(text))
	cr.Comma = sep
	cr.Comment = '#'
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.ReuseRecord = true
	return cr
}

// afterLine returns text after its first n lines.
func afterLine(text string, n int) string {
	for ; n > 0; n-- {
		i := strings.IndexByte(text, '\n')
		if i < 0 {
			return ""
		}
		text = text[i+1:]
	}
	return text
}

// firstErrors names the first rows not used, and how many more there are.
func firstErrors(errs []RowError) string {
	const shown = 3
	var b strings.Builder
	for i, e := range errs[:min(shown, len(errs))] {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Error())
	}
	if len(errs) > shown {
		fmt.Fprintf(&b, "; %d more", len(errs)-shown)
	}
	return b.String()
}

// decodeText turns the file into UTF-8 text, following a byte order mark.
func decodeText(data []byte) (string, error) {
	switch {
	case bytes.HasPrefix(data, []byte{0xEF, 0xBB, 0xBF}):
		data = data[3:]
	case bytes.HasPrefix(data, []byte{0xFF, 0xFE}), bytes.HasPrefix(data, []byte{0xFE, 0xFF}):
		// Excel's "Unicode text" and Windows PowerShell's Out-File write
		// UTF-16 with a byte order mark.
		big := data[0] == 0xFE
		data = data[2:]
		u := make([]uint16, len(data)/2)
		for i := range u {
			if big {
				u[i] = uint16(data[2*i])<<8 | uint16(data[2*i+1])
			} else {
				u[i] = uint16(data[2*i+1])<<8 | uint16(data[2*i])
			}
		}
		return string(utf16.Decode(u)), nil
	}
	if bytes.IndexByte(data, 0) >= 0 {
		return "", errors.New("lasterrors: the file holds NUL bytes, so it is not text " +
			"(UTF-16 without a byte order mark?); save it as CSV UTF-8")
	}
	if !utf8.Valid(data) {
		return "", errors.New("lasterrors: the file is neither UTF-8 nor UTF-16 with a byte " +
			"order mark; save it as CSV UTF-8")
	}
	return string(data), nil
}

// detectSeparator picks the separator the header line uses most, counting
// outside quotes; ',' when it uses none.
func detectSeparator(text string) rune {
	var header string
	for line := range strings.Lines(text) {
		if t := strings.TrimSpace(line); t != "" && !strings.HasPrefix(t, "#") {
			header = line
			break
		}
	}
	best, bestN := ',', 0
	for _, sep := range separators {
		n, quoted := 0, false
		for _, r := range header {
			switch {
			case r == '"':
				quoted = !quoted
			case r == sep && !quoted:
				n++
			}
		}
		if n > bestN {
			best, bestN = sep, n
		}
	}
	return best
}

// validSeparator reports whether r can separate fields: not a quote, the
// comment mark, a line end, a letter, a digit or a space.
func validSeparator(r rune) bool {
	return r != '"' && r != '#' && r != '\r' && r != '\n' && r != utf8.RuneError &&
		!unicode.IsLetter(r) && !unicode.IsDigit(r) && r != ' '
}

// csvParser holds the state of one ParseLastErrors.
type csvParser struct {
	cols      []int // column of each header cell, -1 for ignored cells
	endpoints []Endpoint
	errors    []RowError
	byHost    map[string]int // matching key to the line that has it
	byIP      map[string]int
}

func (p *csvParser) bad(line int, format string, a ...any) {
	p.errors = append(p.errors, RowError{Line: line, Err: fmt.Sprintf(format, a...)})
}

// header maps the cells of the header row to columns; the first cell
// naming a column wins.
func (p *csvParser) header(rec []string, line int) error {
	var have [numCols]bool
	p.cols = make([]int, len(rec))
	for i, cell := range rec {
		p.cols[i] = -1
		col, ok := headerAliases[headerKey(cell)]
		if ok && !have[col] {
			p.cols[i], have[col] = col, true
		}
	}
	switch {
	case !have[colLastError]:
		return fmt.Errorf("lasterrors: the header (line %d) has no lasterror column "+
			"(lasterror, last_error or tetra_lasterror)", line)
	case !have[colHost] && !have[colIP]:
		return fmt.Errorf("lasterrors: the header (line %d) has neither a host column "+
			"(host, hostname, computer, name) nor an ip column (ip, ip_address, address)", line)
	}
	return nil
}

// headerKey reduces a header cell to lower-case letters and digits.
func headerKey(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// row reads one data row.
func (p *csvParser) row(rec []string, line int) {
	var cell [numCols]string
	empty := true
	for i, v := range rec {
		v = strings.TrimSpace(v)
		if v != "" {
			empty = false
		}
		if i < len(p.cols) && p.cols[i] >= 0 {
			cell[p.cols[i]] = v
		}
	}
	if empty {
		return
	}
	for i, v := range cell {
		if strings.ContainsFunc(v, unicode.IsControl) {
			p.bad(line, "%s holds control characters", colNames[i])
			return
		}
	}

	ep := Endpoint{Line: line, Host: cell[colHost], DefVersion: cell[colDefVersion],
		LastUpdate: cell[colLastUpdate]}
	ipText := cell[colIP]
	if ipText == "" {
		// A host column holding an address is an address.
		if a, err := netip.ParseAddr(ep.Host); err == nil {
			ipText, ep.Host = a.String(), ""
		}
	}
	if ipText != "" {
		a, err := netip.ParseAddr(ipText)
		if err != nil {
			p.bad(line, "ip %q is not an IP address", ipText)
			return
		}
		ep.IP = a.WithZone("").Unmap().String()
	}
	if ep.Host != "" && hostKey(ep.Host) == "" {
		p.bad(line, "host %q is not a host name", ep.Host)
		return
	}
	if ep.Host == "" && ep.IP == "" {
		p.bad(line, "neither host nor ip given")
		return
	}
	if cell[colLastError] == "" {
		p.bad(line, "lasterror is empty (write 0 for none)")
		return
	}
	code, err := inspect.ParseLastError(cell[colLastError])
	if err != nil {
		p.bad(line, "%v", err)
		return
	}
	ep.LastError = code

	// The same machine twice would make its comparison depend on the
	// order of the rows: the first is used.
	if ep.IP != "" {
		if prev, dup := p.byIP[ep.IP]; dup {
			p.bad(line, "ip %s already given on line %d, which is used", ep.IP, prev)
			return
		}
	}
	if k := hostKey(ep.Host); k != "" {
		if prev, dup := p.byHost[k]; dup {
			p.bad(line, "host %s already given on line %d, which is used", ep.Host, prev)
			return
		}
		p.byHost[k] = line
	}
	if ep.IP != "" {
		p.byIP[ep.IP] = line
	}
	p.endpoints = append(p.endpoints, ep)
}

// hostKey is the name a host is matched by: the first label of the name,
// lower-cased, without a DOMAIN\ prefix or a trailing '$'. It is empty
// for text that cannot be a host name.
func hostKey(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\\'); i >= 0 {
		s = s[i+1:]
	}
	s = strings.TrimSuffix(s, "$")
	if i := strings.IndexByte(s, '.'); i >= 0 {
		s = s[:i]
	}
	if s == "" || strings.ContainsAny(s, " \t/@:,;\"'") {
		return ""
	}
	return strings.ToLower(s)
}
