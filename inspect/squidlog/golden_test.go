package squidlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tetrascope/tetrascope/inspect"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// testCatalog is the catalog of DESIGN.md's default hosts that the golden
// files are classified with.
func testCatalog(t testing.TB) *inspect.Catalog {
	t.Helper()
	c, err := inspect.NewCatalog(inspect.DefaultTetraHosts,
		[]string{"crl.identrust.com", "validation.identrust.com", "*.ocsp.identrust.com"},
		[]string{"*.amp.cisco.com", "*.amp.sourcefire.com"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// goldenLine is one line of a sample log and what Parse made of it.
type goldenLine struct {
	Line  int            `json:"line"`
	Text  string         `json:"text"`
	Event *inspect.Event `json:"event,omitempty"`
	Error string         `json:"error,omitempty"`
}

// readSample reads a sample log: lines starting with # are comments, and
// "# format:" and "# logformat:" comments say how to parse the rest.
func readSample(t *testing.T, path string) (Config, []goldenLine) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cfg Config
	var lines []goldenLine
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		text := sc.Text()
		if c, ok := strings.CutPrefix(text, "#"); ok {
			c = strings.TrimSpace(c)
			if v, ok := strings.CutPrefix(c, "format:"); ok {
				cfg.Format = strings.TrimSpace(v)
			}
			if v, ok := strings.CutPrefix(c, "logformat:"); ok {
				cfg.LogFormat = strings.TrimSpace(v)
			}
			continue
		}
		lines = append(lines, goldenLine{Line: n, Text: text})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if cfg.Format == "" {
		t.Fatalf("%s: no \"# format:\" comment", path)
	}
	return cfg, lines
}

// TestGolden parses every sample log in testdata/ and compares the events
// with the .golden.json file next to it; -update rewrites those.
func TestGolden(t *testing.T) {
	samples, err := filepath.Glob("testdata/*.log")
	if err != nil || len(samples) == 0 {
		t.Fatalf("no samples in testdata/ (%v)", err)
	}
	for _, path := range samples {
		name := strings.TrimSuffix(filepath.Base(path), ".log")
		t.Run(name, func(t *testing.T) {
			cfg, lines := readSample(t, path)
			cfg.Catalog = testCatalog(t)
			p, err := NewParser(cfg)
			if err != nil {
				t.Fatalf("NewParser: %v", err)
			}
			for i := range lines {
				ev, err := p.Parse([]byte(lines[i].Text))
				switch {
				case err != nil:
					lines[i].Error = err.Error()
				default:
					checkEvent(t, &ev)
					lines[i].Event = &ev
				}
			}
			got, err := json.MarshalIndent(lines, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')

			golden := strings.TrimSuffix(path, ".log") + ".golden.json"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				diffGolden(t, want, got)
			}
		})
	}
}

// diffGolden reports the first lines where got and want differ.
func diffGolden(t *testing.T, want, got []byte) {
	t.Helper()
	var w, g []goldenLine
	if json.Unmarshal(want, &w) != nil || json.Unmarshal(got, &g) != nil || len(w) != len(g) {
		t.Fatalf("golden file differs; got:\n%s", got)
	}
	for i := range w {
		wb, _ := json.Marshal(w[i])
		gb, _ := json.Marshal(g[i])
		if !bytes.Equal(wb, gb) {
			t.Errorf("line %d (%s):\n got %s\nwant %s", g[i].Line, g[i].Text, gb, wb)
		}
	}
}

// checkEvent checks what every parsed event must satisfy.
func checkEvent(t testing.TB, ev *inspect.Event) {
	t.Helper()
	var problems []string
	if ev.Source != inspect.SourceSquidLog {
		problems = append(problems, "source "+ev.Source)
	}
	if !ev.Outcome.Valid() {
		problems = append(problems, "outcome "+string(ev.Outcome))
	}
	if !ev.Endpoint.Valid() {
		problems = append(problems, "endpoint "+string(ev.Endpoint))
	}
	if ev.ClientUser == "-" {
		problems = append(problems, "client_user is -")
	}
	if ev.Status < 0 || ev.Status > 999 || ev.UpstreamStatus < 0 || ev.UpstreamStatus > 999 {
		problems = append(problems, "status out of range")
	}
	if ev.DurationMS < 0 || ev.BytesDown < 0 || ev.BytesUp < 0 || ev.Port < 0 || ev.Port > 65535 {
		problems = append(problems, "negative or out-of-range number")
	}
	if ev.Time.Location() != nil && ev.Time.Location().String() != "UTC" {
		problems = append(problems, "time not in UTC")
	}
	if code, _ := inspect.EventLastError(ev.Endpoint, ev.Outcome); uint32(code) != ev.LastError {
		problems = append(problems, "lasterror does not follow from endpoint and outcome")
	}
	if ev.Method == "CONNECT" && ev.URL != "" {
		problems = append(problems, "url on a CONNECT")
	}
	if _, rest, ok := strings.Cut(ev.URL, "://"); ok {
		if authority, _, _ := strings.Cut(rest, "/"); strings.ContainsAny(authority, "@") &&
			!strings.ContainsAny(authority[:strings.IndexByte(authority, '@')], "?#") {
			problems = append(problems, "url keeps user information")
		}
	}
	if !strings.HasPrefix(ev.Detail, "squid: ") {
		problems = append(problems, "detail does not quote the tags")
	}
	if ev.ID != 0 || ev.Sensor != "" {
		problems = append(problems, "parser set id or sensor")
	}
	if len(problems) > 0 {
		t.Errorf("event %+v: %s", *ev, strings.Join(problems, "; "))
	}
}

// isParseError reports whether err is one of the errors Parse documents.
func isParseError(err error) bool {
	var se *SyntaxError
	return errors.Is(err, ErrNoRequest) || errors.As(err, &se)
}
