package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./report -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := range max(len(gl), len(wl)) {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("%s differs from the golden file at line %d:\n got: %s\nwant: %s\n"+
					"(run go test ./report -update if the change is meant)", name, i+1, g, w)
			}
		}
	}
}

// TestGolden renders the fixture in every format, without and with the
// endpoints' own values, and compares each with its golden file.
func TestGolden(t *testing.T) {
	eps, rowErrs := fixtureEndpoints(t)
	variants := map[string]Options{"report": fixtureOptions()}
	withImport := fixtureOptions()
	withImport.Endpoints, withImport.ImportErrors = eps, rowErrs
	variants["report-lasterrors"] = withImport

	for name, opts := range variants {
		rep := build(t, fixtureEvents(), opts)
		for _, format := range Formats {
			t.Run(name+"."+format, func(t *testing.T) {
				var buf bytes.Buffer
				if err := Write(&buf, rep, format); err != nil {
					t.Fatal(err)
				}
				golden(t, name+"."+format, buf.Bytes())
				checkWellFormed(t, format, buf.Bytes(), rep)
			})
		}
	}
}

// checkWellFormed checks what a golden file alone would not: the output
// parses back, and carries the rows of the report.
func checkWellFormed(t *testing.T, format string, out []byte, rep *Report) {
	t.Helper()
	switch format {
	case "csv":
		// No field holds a line break, so every line ends in CRLF.
		if n := bytes.Count(out, []byte("\n")); n == 0 || n != bytes.Count(out, []byte("\r\n")) {
			t.Error("csv lines do not all end in CRLF")
		}
		recs, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
		if err != nil {
			t.Fatalf("csv does not parse back: %v", err)
		}
		if !slices.Equal(recs[0], CSVHeader()) {
			t.Errorf("header %v", recs[0])
		}
		if want := 1 + len(rep.Clients) + len(rep.NotSeen); len(recs) != want {
			t.Errorf("%d csv records, want %d", len(recs), want)
		}
	case "json":
		var back Report
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("json does not parse back: %v", err)
		}
		if len(back.Clients) != len(rep.Clients) || back.Summary.Clients != rep.Summary.Clients {
			t.Errorf("json round trip lost rows or counts")
		}
	case "html":
		s := string(out)
		for _, want := range []string{`<table class="sortable clients" id="client-table">`,
			`<svg class="chart" id="failure-chart"`, "Content-Security-Policy"} {
			if !strings.Contains(s, want) {
				t.Errorf("html lacks %s", want)
			}
		}
		if n := strings.Count(s, `<tbody class="client">`); n != len(rep.Clients) {
			t.Errorf("html has %d client rows, want %d", n, len(rep.Clients))
		}
		// Markup that would fetch something. Text may quote URLs (a
		// revocation target) and the SVG names its namespace, so URLs as
		// such are not looked for.
		for _, bad := range []string{" src=", " href=", "<link", "@import", "url(http",
			"url(//"} {
			if strings.Contains(s, bad) {
				t.Errorf("html refers to something outside itself: %s", bad)
			}
		}
	}
}

// TestJSONDocumented keeps docs/report.md in step with the JSON: every
// field name of a full report (with an import) must appear there as code.
// Maps keyed by outcome or diagnosis are data, not fields.
func TestJSONDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/report.md")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("testdata/report-lasterrors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	maps := map[string]bool{"counts": true, "failures_by_outcome": true,
		"failures_by_diagnosis": true, "clients_by_diagnosis": true, "series": true}
	seen := map[string]bool{}
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, sub := range x {
				if !seen[k] {
					seen[k] = true
					// `name`, `parent.name`, `name.child` or "name" in a
					// JSON example.
					if !bytes.Contains(doc, []byte("`"+k+"`")) &&
						!bytes.Contains(doc, []byte("."+k+"`")) &&
						!bytes.Contains(doc, []byte("`"+k+".")) &&
						!bytes.Contains(doc, []byte(`"`+k+`"`)) {
						t.Errorf("JSON field %q is not in docs/report.md", k)
					}
				}
				if !maps[k] {
					walk(sub)
				}
			}
		case []any:
			for _, sub := range x {
				walk(sub)
			}
		}
	}
	walk(v)
	if len(seen) < 40 {
		t.Errorf("only %d fields seen: the walk is broken", len(seen))
	}
}
