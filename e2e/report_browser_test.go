package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/store"
)

// reportEnd is the end of the window of the browser report; the events lie
// in the day before it.
var reportEnd = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

// reportEvents is a day of a small site: one healthy client updating every
// hour, one whose names stop resolving in the afternoon, a machine account
// the proxy refuses, downloads breaking off, a revocation check blocked, a
// client that fell silent and one denied by policy.
func reportEvents() []inspect.Event {
	var evs []inspect.Event
	id := int64(0)
	add := func(ago time.Duration, ip, user string, p inspect.Endpoint, o inspect.Outcome) {
		id++
		e := inspect.Event{ID: id, Time: reportEnd.Add(-ago), DurationMS: 150,
			Source: inspect.SourceProxy, Sensor: "site1", ClientIP: ip, ClientUser: user,
			Endpoint: p, Outcome: o, Detail: string(o)}
		switch p {
		case inspect.EndpointTetra:
			e.Method, e.Host, e.Port = "CONNECT", "tetra-defs.amp.cisco.com", 443
		case inspect.EndpointRevocation:
			e.Method, e.Host, e.Port = "GET", "crl.identrust.com", 80
		default:
			e.Method, e.Host, e.Port = "CONNECT", "mail.example.com", 25
		}
		switch o {
		case inspect.TLSAborted:
			e.Close, e.TLSVersion, e.BytesDown = inspect.ClientFIN, "TLS 1.3", 4000
		case inspect.DownloadAborted:
			e.Close, e.TLSVersion, e.BytesDown = inspect.ServerRST, "TLS 1.3", 900_000
		case inspect.OK:
			e.Close, e.BytesDown = inspect.ClientFIN, 2<<20
		}
		code, _ := inspect.EventLastError(p, o)
		e.LastError = uint32(code)
		evs = append(evs, e)
	}

	for h := 23; h >= 0; h-- {
		at := time.Duration(h)*time.Hour + 10*time.Minute
		add(at, "10.1.0.10", `SITE\WS-010$`, inspect.EndpointTetra, inspect.OK)
		if h < 9 {
			add(at+time.Minute, "10.1.0.11", "", inspect.EndpointTetra, inspect.DNSFailure)
		} else {
			add(at+time.Minute, "10.1.0.11", "", inspect.EndpointTetra, inspect.OK)
		}
		if h%2 == 0 {
			add(at+2*time.Minute, "10.1.0.12", `SITE\WS-012$`, inspect.EndpointTetra,
				inspect.AuthFailed)
		}
		if h < 3 {
			add(at+3*time.Minute, "10.1.0.13", "", inspect.EndpointTetra, inspect.DownloadAborted)
		}
		if h%3 == 0 {
			add(at+4*time.Minute, "10.1.0.14", "", inspect.EndpointRevocation, inspect.HTTPError)
			add(at+4*time.Minute-time.Second, "10.1.0.14", "", inspect.EndpointTetra,
				inspect.TLSAborted)
		}
	}
	add(20*time.Hour, "10.1.0.15", "", inspect.EndpointTetra, inspect.OK)
	add(5*time.Hour, "10.1.0.16", "", inspect.EndpointOther, inspect.Denied)
	slices.SortFunc(evs, func(a, b inspect.Event) int { return a.Time.Compare(b.Time) })
	return evs
}

// reportLastErrors is what the admin gathered from the endpoints; line 6
// is malformed.
const reportLastErrors = "hostname,ip,lasterror,defversion,last_update\r\n" +
	"WS-010,10.1.0.10,0,1:94321,2026-03-02 11:12\r\n" +
	"WS-011,10.1.0.11,4294965196,1:94100,2026-03-02 03:00\r\n" +
	"WS-012,,-2100,1:94000,2026-03-01 09:00\r\n" +
	"WS-099,10.1.0.99,-2103,1:93000,2026-02-27 10:00\r\n" +
	"WS-BAD,10.1.0.300,0,,\r\n"

// TestReportBrowser writes the HTML report of a stored day with the
// binary, opens the file in headless Chromium and checks what an admin
// relies on: the client table with every client, the chart with its bars
// and legend, sorting by a column, no request beyond the file itself (the
// page's policy forbids them, and the sort working shows the script is
// allowed), the table fitting the window, and a landscape PDF. Screenshots
// and the PDF are kept under e2e/artifacts/browser/TestReportBrowser/.
func TestReportBrowser(t *testing.T) {
	exe := requireChromium(t)
	bin := needBinary(t)
	dir := t.TempDir()

	// A database and the endpoints' file.
	db := filepath.Join(dir, "site.db")
	st, err := store.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	events := reportEvents()
	if err := st.Append(context.Background(), events); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	csvPath := filepath.Join(dir, "endpoints.csv")
	if err := os.WriteFile(csvPath, []byte(reportLastErrors), 0o644); err != nil {
		t.Fatal(err)
	}

	// The report, as an admin would make it.
	out := filepath.Join(dir, "report.html")
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "report", "--db", db, "--lasterrors", csvPath, "-o", out,
		"--since", reportEnd.Add(-24*time.Hour).Format(time.RFC3339),
		"--until", reportEnd.Format(time.RFC3339))
	cmd.Env = childEnv()
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("tetrascope report: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "line 6") {
		t.Errorf("stderr does not name the bad row's line:\n%s", stderr.String())
	}

	b := startBrowser(t, exe)
	var (
		mu       sync.Mutex
		requests []string
		problems []string
	)
	fileURL := "file://" + out
	if err := chromedp.Listen(b.ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			requests = append(requests, e.Request.URL)
		case *log.EventEntryAdded:
			if e.Entry.Level == log.EntryLevelError {
				problems = append(problems, fmt.Sprintf("%s: %s", e.Entry.Source, e.Entry.Text))
			}
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			problems = append(problems, fmt.Sprintf("exception at line %d: %s", d.LineNumber, d.Text))
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.do(chromedp.Navigate(fileURL)); err != nil {
		t.Fatalf("opening the report: %v", err)
	}
	b.waitJS(t, "the client table",
		`document.querySelectorAll('#client-table tbody.client').length > 0`)
	b.shot(t, "report-top")

	// The table: one group per client seen in the window.
	clients := map[string]bool{}
	for _, e := range events {
		if !e.Time.Before(reportEnd.Add(-24*time.Hour)) && !strings.HasPrefix(e.ClientIP, "x") {
			clients[e.ClientIP] = true
		}
	}
	rows := eval[[]string](t, b, `Array.from(document.querySelectorAll(
		'#client-table tbody.client tr.facts td:first-child .mono')).map(e => e.textContent)`)
	if len(rows) != len(clients) {
		t.Errorf("client table has %d rows %v, want %d", len(rows), rows, len(clients))
	}
	for _, ip := range rows {
		if !clients[ip] {
			t.Errorf("row for %s, which sent no event", ip)
		}
	}
	first := `document.querySelector('#client-table tbody.client .badge').textContent`
	if got := eval[string](t, b, first); got != "failing" {
		t.Errorf("first row's state %q: failing clients come first", got)
	}
	if n := eval[int](t, b, `document.querySelectorAll('#not-seen-table tbody tr').length`); n != 1 {
		t.Errorf("%d endpoints listed as never seen, want 1 (WS-099)", n)
	}

	// The chart: bars of non-zero height, a legend entry per outcome drawn.
	bars := eval[int](t, b, `Array.from(document.querySelectorAll('#failure-chart g.bars rect'))
		.filter(r => r.getBoundingClientRect().height > 0).length`)
	if bars == 0 {
		t.Error("the chart has no visible bars")
	}
	legend := eval[[]string](t, b, `Array.from(document.querySelectorAll('#chart-legend li'))
		.map(li => li.textContent.split(':')[0].trim())`)
	for _, want := range []string{"dns_failure", "auth_failed", "download_aborted",
		"http_error", "tls_aborted", "denied"} {
		if !slices.Contains(legend, want) {
			t.Errorf("legend %v lacks %s", legend, want)
		}
	}
	chartWidth := `document.querySelector('#failure-chart').getBoundingClientRect().width`
	if w := eval[float64](t, b, chartWidth); w < 600 {
		t.Errorf("chart is %.0f px wide", w)
	}

	// Sorting by failures, up then down.
	const failures = `Array.from(document.querySelectorAll('#client-table tbody.client tr.facts'))
		.map(tr => parseInt(tr.cells[7].dataset.sort, 10))`
	sortBy := `#client-table thead th:nth-child(8) button`
	if err := b.do(chromedp.Click(chromedp.CSS(sortBy))); err != nil {
		t.Fatal(err)
	}
	up := eval[[]int](t, b, failures)
	if !slices.IsSorted(up) {
		t.Errorf("after one click, failures %v are not ascending", up)
	}
	if err := b.do(chromedp.Click(chromedp.CSS(sortBy))); err != nil {
		t.Fatal(err)
	}
	down := eval[[]int](t, b, failures)
	slices.Reverse(down)
	if !slices.IsSorted(down) || len(down) != len(rows) {
		t.Errorf("after two clicks, failures %v are not descending", down)
	}
	ariaSort := `document.querySelector('#client-table thead th:nth-child(8)')
		.getAttribute('aria-sort')`
	if got := eval[string](t, b, ariaSort); got != "descending" {
		t.Errorf("aria-sort %q after two clicks", got)
	}

	// Readable in the window: the table does not need sideways scrolling.
	tw := eval[float64](t, b, `document.querySelector('#client-table').scrollWidth`)
	vw := eval[float64](t, b, `document.documentElement.clientWidth`)
	t.Logf("client table %.0f px wide in a %.0f px window", tw, vw)
	if tw > vw {
		t.Errorf("the client table (%.0f px) is wider than the window (%.0f px)", tw, vw)
	}

	full, err := browserBytes(b, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("full screenshot: %v", err)
	}
	keepBrowserFile(t, b, "report-full.png", full)
	pdf, err := browserBytes(b, chromedp.PrintToPDF(chromedp.PDFLandscape(),
		chromedp.PDFPrintBackground(), chromedp.PDFPreferCSSPageSize()))
	if err != nil {
		t.Fatalf("printing: %v", err)
	}
	if !bytes.HasPrefix(pdf, []byte("%PDF")) {
		t.Error("printing gave no PDF")
	}
	keepBrowserFile(t, b, "report.pdf", pdf)

	// The print stylesheet, seen at the width that an A4 landscape page
	// with the stylesheet's 10 mm margins leaves (277 mm at 96 px per
	// inch): the client table must fit, as paper does not scroll.
	if err := b.do(chromedp.EmulateViewport(1047, 740), chromedp.Func(
		func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia,
				emulation.SetEmulatedMediaParams{Media: "print"})
			return err
		})); err != nil {
		t.Fatalf("emulating print: %v", err)
	}
	printed, err := browserBytes(b, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("print screenshot: %v", err)
	}
	keepBrowserFile(t, b, "report-print.png", printed)
	tw = eval[float64](t, b, `document.querySelector('#client-table').scrollWidth`)
	t.Logf("printed, the client table is %.0f px wide on a 1047 px page", tw)
	if tw > 1047 {
		t.Errorf("printed, the client table (%.0f px) is wider than the page (1047 px)", tw)
	}

	mu.Lock()
	defer mu.Unlock()
	for _, u := range requests {
		if u != fileURL {
			t.Errorf("the report fetched %s", u)
		}
	}
	for _, p := range problems {
		t.Errorf("browser error: %s", p)
	}
}

// browserBytes runs an action that returns bytes within pageWait.
func browserBytes(b *browser, a chromedp.Action[[]byte]) ([]byte, error) {
	ctx, cancel := context.WithTimeout(b.ctx, pageWait)
	defer cancel()
	return chromedp.Run(ctx, a)
}

// keepBrowserFile saves data in the test's screenshot directory.
func keepBrowserFile(t *testing.T, b *browser, name string, data []byte) {
	t.Helper()
	path := filepath.Join(b.shots, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("kept e2e/%s", path)
}
