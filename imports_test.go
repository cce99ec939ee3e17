package tetrascope

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/tetrascope/tetrascope"

// allowedProject lists, per package, the project packages it may import:
// dependencies point inward, to inspect (DESIGN.md, STYLE.md habit 1).
var allowedProject = map[string][]string{
	"inspect":          {"inspect/tlsrec"},
	"inspect/tlsrec":   {},
	"inspect/squidlog": {"inspect"},
	"resolve":          {},
	"store":            {"inspect"},
	"pipeline":         {"inspect"},
	"ui":               {"inspect"},
	"metrics":          {"inspect"},
	"proxy":            {"inspect", "inspect/tlsrec", "resolve"},
	"sidecar":          {"inspect", "inspect/squidlog"},
	"probe":            {"inspect", "resolve"},
	"report":           {"inspect"},
	"probe/probetest":  {"inspect", "resolve"},
	"cmd/tetrascope":   nil, // cmd wires everything
	"cmd/tsbench":      nil, // the benchmark harness drives the whole binary
	"cmd/tssoak":       nil, // the soak harness drives the whole binary
	"":                 {},
	"e2e":              nil,
}

// thirdParty pins each third-party library to the one package that may use
// it (STYLE.md habit 2).
var thirdParty = map[string]string{
	"github.com/elazarl/goproxy":   "proxy",
	"github.com/mattn/go-sqlite3":  "store",
	"github.com/gorilla/websocket": "ui",
	"github.com/spf13/viper":       "cmd/tetrascope",
	"github.com/spf13/cobra":       "cmd/tetrascope",
	"github.com/prometheus":        "metrics",
}

// stdOnly lists the packages that may import no third-party module at all:
// the domain core and the parsers on the hot paths.
var stdOnly = map[string]bool{
	"inspect": true, "inspect/tlsrec": true, "inspect/squidlog": true, "sidecar": true,
	"pipeline": true,
}

func TestImportRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-f",
		`{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.TrimPrefix(strings.TrimPrefix(fields[0], module), "/")
		allowed, known := allowedProject[pkg]
		if !known {
			t.Errorf("package %q has no import rule: add it to allowedProject", pkg)
			continue
		}
		for _, imp := range fields[1:] {
			if rest, ok := strings.CutPrefix(imp, module+"/"); ok {
				if allowed != nil && !slices.Contains(allowed, rest) {
					t.Errorf("%s imports %s: dependencies must point inward", fields[0], imp)
				}
				continue
			}
			if first, _, _ := strings.Cut(imp, "/"); stdOnly[pkg] && strings.Contains(first, ".") {
				t.Errorf("%s imports %s: it may use the standard library only", fields[0], imp)
			}
			for lib, owner := range thirdParty {
				if (imp == lib || strings.HasPrefix(imp, lib+"/")) && pkg != owner &&
					pkg != "e2e" {
					t.Errorf("%s imports %s, which belongs to %s only", fields[0], imp, owner)
				}
			}
		}
	}
}
