package report

import (
	"bytes"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/tetrascope/tetrascope/inspect"
)

func TestParseLastErrors(t *testing.T) {
	const (
		auth     = inspect.LastErrorProxyAuth
		connect  = inspect.LastErrorProxyConnect
		download = inspect.LastErrorDownloadFailed
	)
	cases := []struct {
		name string
		in   string
		want []Endpoint
		errs []RowError
	}{
		{
			name: "comma, plain names",
			in:   "host,ip,lasterror\nPC1,10.0.0.1,4294965196\n",
			want: []Endpoint{{Line: 2, Host: "PC1", IP: "10.0.0.1", LastError: auth}},
		},
		{
			name: "semicolon and aliases, every column",
			in: "Computer Name;IP Address;Last_Error;Definition Version;Last Update\n" +
				"pc1.corp.example;10.0.0.1;-2103;1:94321;2026-03-02 10:00\n",
			want: []Endpoint{{Line: 2, Host: "pc1.corp.example", IP: "10.0.0.1",
				LastError: connect, DefVersion: "1:94321", LastUpdate: "2026-03-02 10:00"}},
		},
		{
			name: "tab",
			in:   "hostname\tlasterror\nPC1\t0xFFFFF7C3\n",
			want: []Endpoint{{Line: 2, Host: "PC1", LastError: download}},
		},
		{
			name: "pipe, ip only",
			in:   "address|tetra_lasterror|updated\n10.0.0.9|0|yesterday\n",
			want: []Endpoint{{Line: 2, IP: "10.0.0.9", LastUpdate: "yesterday"}},
		},
		{
			name: "BOM, CRLF, quoted fields with separators, quotes and a newline",
			in: "\ufeff\"name\",\"lasterror\",\"version\"\r\n" +
				"\"PC1\",\"-2100\",\"1:9,\"\"4\"\"\"\r\n" +
				"\"PC2\",\"0\",\"multi\nline\"\r\n" +
				"PC3,0,x\r\n",
			want: []Endpoint{
				{Line: 2, Host: "PC1", LastError: auth, DefVersion: `1:9,"4"`},
				{Line: 5, Host: "PC3", DefVersion: "x"},
			},
			errs: []RowError{{3, "defversion holds control characters"}},
		},
		{
			name: "Excel sep line, comments, blank rows, extra columns",
			in: "sep=;\n#TYPE System.Management.Automation.PSCustomObject\n" +
				"Owner;Host;LastError;Site\n\n;;;\nbob;PC1;4294965187;HQ\n",
			want: []Endpoint{{Line: 6, Host: "PC1", LastError: download}},
		},
		{
			name: "Excel sep line naming a tab",
			in:   "sep=\t\r\nHost\tLastError\r\nPC1\t0\r\n",
			want: []Endpoint{{Line: 3, Host: "PC1"}},
		},
		{
			name: "a host column holding an address, IPv6 and mapped IPv4",
			in:   "name,lasterror\n10.0.0.7,0\n2001:DB8::1,0\n::ffff:10.0.0.8,0\n",
			want: []Endpoint{{Line: 2, IP: "10.0.0.7"}, {Line: 3, IP: "2001:db8::1"},
				{Line: 4, IP: "10.0.0.8"}},
		},
		{
			name: "bad rows keep their line numbers, the rest is used",
			in: "host,ip,lasterror\n" +
				"PC1,10.0.0.1,0\n" + // 2 ok
				",,0\n" + // 3 no host nor ip
				"PC3,10.0.0.300,0\n" + // 4 bad ip
				"PC4,,\n" + // 5 empty lasterror
				"PC5,,abc\n" + // 6 not a number
				"PC6,,4294967296\n" + // 7 too large
				"PC7,10.0.0.1,0\n" + // 8 same ip as line 2
				"pc1.corp,,0\n" + // 9 same host as line 2
				"PC 9,,0\n" + // 10 not a host name
				"PC10,,\"-2100\"x\n" + // 11 broken quoting
				"PC11,10.0.0.11,-2109\n", // 12 ok
			want: []Endpoint{
				{Line: 2, Host: "PC1", IP: "10.0.0.1"},
				{Line: 12, Host: "PC11", IP: "10.0.0.11", LastError: download},
			},
			errs: []RowError{
				{3, "neither host nor ip given"},
				{4, `ip "10.0.0.300" is not an IP address`},
				{5, "lasterror is empty (write 0 for none)"},
				{6, `lasterror "abc": not a 32-bit number`},
				{7, `lasterror "4294967296": not a 32-bit number`},
				{8, "ip 10.0.0.1 already given on line 2, which is used"},
				{9, "host pc1.corp already given on line 2, which is used"},
				{10, `host "PC 9" is not a host name`},
				{11, `extraneous or missing " in quoted-field`},
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, errs, err := ParseLastErrors(strings.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("endpoints\n got %+v\nwant %+v", got, tc.want)
			}
			if !reflect.DeepEqual(errs, tc.errs) {
				t.Errorf("row errors\n got %+v\nwant %+v", errs, tc.errs)
			}
		})
	}
}

func TestParseLastErrorsUTF16(t *testing.T) {
	text := "Computer\tLastError\r\nPC1\t-2100\r\n"
	for _, big := range []bool{false, true} {
		var b bytes.Buffer
		if big {
			b.Write([]byte{0xFE, 0xFF})
		} else {
			b.Write([]byte{0xFF, 0xFE})
		}
		for _, u := range utf16.Encode([]rune(text)) {
			if big {
				b.Write([]byte{byte(u >> 8), byte(u)})
			} else {
				b.Write([]byte{byte(u), byte(u >> 8)})
			}
		}
		got, errs, err := ParseLastErrors(&b)
		want := []Endpoint{{Line: 2, Host: "PC1", LastError: inspect.LastErrorProxyAuth}}
		if err != nil || len(errs) != 0 || !reflect.DeepEqual(got, want) {
			t.Errorf("big endian %v: %+v %v %v", big, got, errs, err)
		}
	}
}

// TestParseLastErrorsUnusable covers files that cannot be used at all: the
// whole file is refused with a reason naming what is missing.
func TestParseLastErrorsUnusable(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"empty", "", "no header row"},
		{"only comments", "# nothing\n\n", "no header row"},
		{"no lasterror column", "host,ip,version\nPC1,10.0.0.1,1\n", "no lasterror column"},
		{"no host or ip column", "owner,lasterror\nbob,0\n", "neither a host column"},
		{"not UTF-8", "host,lasterror\nPC\xff,0\n", "neither UTF-8 nor UTF-16"},
		{"broken header", "\"host,lasterror\n", "header, line 1"},
		{"too large", strings.Repeat("x", MaxLastErrorsBytes+1), "larger than"},
		{"sep line naming a quote", "sep=\"\nhost\"lasterror\n", "cannot separate fields"},
		{"UTF-16 without a byte order mark", "i\x00p\x00,\x00l\x00a\x00\n\x00",
			"NUL bytes"},
		{"no row usable", "ip,lasterror\n10.0.0.300,0\n,5\n10.0.0.1,what\n10.0.0.2,x\n",
			"no row can be used (line 2: ip"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eps, errs, err := ParseLastErrors(strings.NewReader(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v; want one containing %q", err, tc.want)
			}
			if eps != nil || errs != nil {
				t.Errorf("a refused file gave rows: %v %v", eps, errs)
			}
		})
	}
}

func TestParseLastErrorsTooManyRows(t *testing.T) {
	var b strings.Builder
	b.WriteString("ip,lasterror\n")
	for i := range MaxEndpoints + 5 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		b.WriteString(a.String() + ",0\n")
	}
	eps, errs, err := ParseLastErrors(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != MaxEndpoints || len(errs) != 1 || errs[0].Line != MaxEndpoints+2 ||
		!strings.Contains(errs[0].Err, "the rest are ignored") {
		t.Fatalf("%d endpoints, errors %v", len(eps), errs)
	}
}

// FuzzParseLastErrors checks that no input makes the parser fail in a way
// other than a row error or a refusal, and that what it returns holds up:
// every endpoint names a host or a valid address, lines increase, and no
// two endpoints share an address.
func FuzzParseLastErrors(f *testing.F) {
	for _, s := range []string{
		"host,ip,lasterror\nPC1,10.0.0.1,0\n",
		"\ufeffname;address;last_error;version;updated\r\n\"a;b\";::1;-2103;1:2;x\r\n",
		"sep=|\nhost|lasterror\nPC|0x10\n",
		"ip\tlasterror\n10.0.0.1\t-1\n10.0.0.1\t0\n\"\t\n",
		"#TYPE x\nhost,lasterror\n,\n\"PC\"x,0\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		eps, errs, err := ParseLastErrors(bytes.NewReader(data))
		if err != nil {
			if eps != nil || errs != nil {
				t.Fatalf("refusal %v came with rows", err)
			}
			return
		}
		last := 0
		ips := map[string]bool{}
		for _, ep := range eps {
			if ep.Line <= last {
				t.Fatalf("line %d after %d", ep.Line, last)
			}
			last = ep.Line
			if ep.Host == "" && ep.IP == "" {
				t.Fatalf("endpoint on line %d without host or ip", ep.Line)
			}
			if ep.IP != "" {
				a, perr := netip.ParseAddr(ep.IP)
				if perr != nil || a.String() != ep.IP {
					t.Fatalf("ip %q is not canonical", ep.IP)
				}
				if ips[ep.IP] {
					t.Fatalf("ip %s twice", ep.IP)
				}
				ips[ep.IP] = true
			}
			if ep.Host != "" && hostKey(ep.Host) == "" {
				t.Fatalf("host %q has no matching key", ep.Host)
			}
		}
		for _, re := range errs {
			if re.Line < 1 || re.Err == "" {
				t.Fatalf("row error %+v", re)
			}
		}
	})
}

// A quote left open costs its own row only: the rows after it are read.
func TestParseLastErrorsOpenQuote(t *testing.T) {
	for _, row := range []string{"\"127.0.0.6,0", "127.0.0.6,\"0"} {
		in := "ip,lasterror\n127.0.0.5,-2100\n" + row + "\n127.0.0.7,-2103\n127.0.0.8,0\n"
		eps, errs, err := ParseLastErrors(strings.NewReader(in))
		if err != nil {
			t.Fatalf("%q: %v", row, err)
		}
		var ips []string
		for _, e := range eps {
			ips = append(ips, e.IP)
		}
		if want := []string{"127.0.0.5", "127.0.0.7", "127.0.0.8"}; !reflect.DeepEqual(ips, want) {
			t.Errorf("%q: endpoints %v, want %v", row, ips, want)
		}
		if len(errs) != 1 || errs[0].Line != 3 {
			t.Errorf("%q: rows not used %v, want line 3 alone", row, errs)
		}
		if eps[1].Line != 4 || eps[2].Line != 5 {
			t.Errorf("%q: lines %d, %d after the broken row, want 4, 5", row, eps[1].Line, eps[2].Line)
		}
	}
}

// A header alone is a file without endpoints, which clears an upload.
func TestParseLastErrorsHeaderOnly(t *testing.T) {
	eps, errs, err := ParseLastErrors(strings.NewReader("host;lasterror\n"))
	if err != nil || len(eps) != 0 || len(errs) != 0 {
		t.Errorf("header alone: %v, %v, %v; want nothing and no error", eps, errs, err)
	}
}
