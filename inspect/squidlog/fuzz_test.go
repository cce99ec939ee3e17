package squidlog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fuzzFormats are the formats every fuzz line is parsed with.
var fuzzFormats = []Config{
	{Format: FormatSquid},
	{Format: FormatCommon},
	{Format: FormatCombined},
	{Format: FormatCustom, LogFormat: "%ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt " +
		"%err_code %err_detail %<Hs %>st %ssl::>sni"},
	{Format: FormatCustom, LogFormat: `%tS [%tl] %>a %"un "%rm %ru HTTP/%rv" %>Hs/%<Hs %Ss:%Sh ` +
		`%<st %>st %tr "%{User-Agent}>h" %err_code "%err_detail"`},
}

// addSampleSeeds adds every line of the sample logs as a seed.
func addSampleSeeds(f *testing.F) {
	samples, _ := filepath.Glob("testdata/*.log")
	for _, path := range samples {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(line, "#") {
				f.Add(line)
			}
		}
	}
}

// FuzzParse checks that no line makes Parse panic, that every error is one
// Parse documents, and that every event it returns is valid: a known outcome
// and endpoint, lasterror following from them, no "-" user.
func FuzzParse(f *testing.F) {
	addSampleSeeds(f)
	f.Add(nativeOK)
	f.Add("1. 0 0 / 0 0 ://#@ 0 / 0") // an "@" after the authority is no user
	cat := testCatalog(f)
	var parsers []*Parser
	for _, cfg := range fuzzFormats {
		cfg.Catalog = cat
		parsers = append(parsers, mustParser(f, cfg))
	}
	f.Fuzz(func(t *testing.T, line string) {
		for _, p := range parsers {
			ev, err := p.Parse([]byte(line))
			if err != nil {
				if !isParseError(err) {
					t.Fatalf("%s: undocumented error %T %v", p.Spec(), err, err)
				}
				continue
			}
			checkEvent(t, &ev)
		}
	})
}

// FuzzFormat checks that no format specification makes NewParser panic, and
// that a parser it accepts survives any line.
func FuzzFormat(f *testing.F) {
	for _, cfg := range fuzzFormats {
		spec, _ := formatSpec(cfg.Format, cfg.LogFormat)
		f.Add(spec, nativeOK)
	}
	f.Add("%ts %>a %Ss/%>Hs %ru %{X}>h{Y} %-08.3tr %#un", "1 a b/200 c d e f")
	f.Add(`%"ts %>a %>Hs %ru`, `"1700000000" 1 200 x`)
	f.Fuzz(func(t *testing.T, spec, line string) {
		p, err := NewParser(Config{Format: FormatCustom, LogFormat: spec})
		if err != nil {
			return
		}
		ev, err := p.Parse([]byte(line))
		if err != nil {
			if !isParseError(err) {
				t.Fatalf("undocumented error %T %v", err, err)
			}
			return
		}
		checkEvent(t, &ev)
	})
}
