package ui

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"html"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"regexp"
	"strings"
	"testing"
	"time"
)

// assetRef finds the page's links to its scripts and styles.
var assetRef = regexp.MustCompile(`(?:src|href)="(static/[^"]+)"`)

func TestPage(t *testing.T) {
	const token = "t&k<n"
	ts := start(t, New(Config{Sensor: "branch <1>", Token: token}, Deps{}))

	resp, err := ts.Client().Get(ts.URL + "/?token=" + "t%26k%3Cn")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	page := string(body)

	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("Content-Security-Policy %q does not confine scripts", csp)
	}
	if strings.Contains(page, "<1>") || !strings.Contains(page, "branch &lt;1&gt;") {
		t.Error("the sensor name is not escaped")
	}
	for _, col := range []string{
		"time", "client", "user", "method", "host:port", "endpoint", "outcome", "status",
		"up / down", "duration", "lasterror", "detail",
	} {
		if !strings.Contains(page, "<th>"+col+"</th>") {
			t.Errorf("the event table lacks the %q column", col)
		}
	}
	for _, id := range []string{
		`id="conn"`, `id="stats"`, `id="clients"`, `id="filters"`, `id="chart"`,
		`id="outcome-counts"`, `id="diagnosis-counts"`, `id="client-view"`, `id="pause"`,
		`id="older"`, `id="export-csv"`, `id="report-html"`,
	} {
		if !strings.Contains(page, id) {
			t.Errorf("the page lacks %s", id)
		}
	}

	// Every asset the page links loads with the token the page was opened
	// with.
	refs := assetRef.FindAllStringSubmatch(page, -1)
	if len(refs) != 5 {
		t.Fatalf("asset links %v; want uPlot's css and js, style.css, model.js, app.js", refs)
	}
	wantType := map[string]string{".js": "text/javascript", ".css": "text/css"}
	for _, ref := range refs {
		link := html.UnescapeString(ref[1])
		resp, err := ts.Client().Get(ts.URL + "/" + link)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		file, _, _ := strings.Cut(link, "?")
		ext := path.Ext(file)
		if resp.StatusCode != 200 ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), wantType[ext]) {
			t.Errorf("GET %s: %d %s", link, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
}

func TestPageWithoutToken(t *testing.T) {
	ts := start(t, New(Config{}, Deps{}))
	status, body := get(t, ts, "/", nil)
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	for _, ref := range assetRef.FindAllStringSubmatch(string(body), -1) {
		if strings.Contains(ref[1], "token") {
			t.Errorf("link %s carries a token none was given", ref[1])
		}
	}
}

// TestVendorFiles checks that the embedded third-party files are the ones
// static/vendor/README names, byte for byte, and that they are served.
func TestVendorFiles(t *testing.T) {
	readme, err := staticFiles.ReadFile("static/vendor/README")
	if err != nil {
		t.Fatal(err)
	}
	sums := regexp.MustCompile(`(?m)^\s+(?:files:\s+)?package/dist/(\S+)\n\s+sha256 ([0-9a-f]{64})$`).
		FindAllStringSubmatch(string(readme), -1)
	if len(sums) != 2 {
		t.Fatalf("README names %d files with sums; want uPlot's js and css", len(sums))
	}
	ts := start(t, New(Config{}, Deps{}))
	for _, m := range sums {
		b, err := staticFiles.ReadFile("static/vendor/" + m[1])
		if err != nil {
			t.Errorf("%s: %v", m[1], err)
			continue
		}
		if got := fmt.Sprintf("%x", sha256.Sum256(b)); got != m[2] {
			t.Errorf("%s: sha256 %s; README says %s", m[1], got, m[2])
		}
		if status, body := get(t, ts, "/static/vendor/"+m[1], nil); status != 200 ||
			!bytes.Equal(body, b) {
			t.Errorf("GET /static/vendor/%s: status %d, %d bytes", m[1], status, len(body))
		}
	}
	for _, p := range []string{"/static/vendor/", "/static/vendor/../page.go",
		"/static/vendor/x/uPlot.min.css", "/static/other/uPlot.min.css"} {
		if status, _ := get(t, ts, p, nil); status != http.StatusNotFound {
			t.Errorf("GET %s: status %d; want 404", p, status)
		}
	}
}

// TestPageScriptsUseNoHTML guards the rule that event data enters the page
// only as text.
func TestPageScriptsUseNoHTML(t *testing.T) {
	for _, name := range []string{"static/app.js", "static/model.js"} {
		src, err := staticFiles.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{
			"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
			"new Function", "http://", "https://",
		} {
			if strings.Contains(string(src), bad) {
				t.Errorf("%s uses %s", name, bad)
			}
		}
	}
}

// TestPageModel runs the page's script tests under Node, when Node is
// there: the model's, and app.js against a minimal document.
func TestPageModel(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node not installed: the page model's tests need it, and CI must run them")
		}
		t.Skip("node not installed: the page model's tests need it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"--check", "static/app.js"},
		{"--test", "testdata/model_test.js", "testdata/app_test.js"},
	} {
		cmd := exec.CommandContext(ctx, node, args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("node %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
