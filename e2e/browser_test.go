package e2e

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tetrascope/tetrascope/inspect"
)

// The live page in a real browser: headless Chromium, driven with chromedp,
// against `tetrascope serve`, with curl traffic through the proxy. Waits are
// bounded; nothing here asserts how fast the page is (BenchmarkBrowserFeed
// measures it). Screenshots of each step are kept under
// e2e/artifacts/browser/<test name>/, passing or not.

const (
	// chromiumPath is where Debian puts Chromium; scripts/deps installs it.
	chromiumPath = "/usr/bin/chromium"
	// pageWait bounds each wait for the page to show something; a reconnect
	// after a restart takes a backoff of a few seconds.
	pageWait = 30 * time.Second
	// browserShots is where the screenshots go, below artifactsDir.
	browserShots = "browser"
)

// requireChromium returns the Chromium binary, skipping the test when it is
// missing on a developer machine and failing it in CI.
func requireChromium(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err == nil {
		return chromiumPath
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if inCI() {
		t.Fatalf("chromium is required in CI and was not found at %s", chromiumPath)
	}
	t.Skipf("chromium not found at %s; install it to run the browser tests", chromiumPath)
	return ""
}

// browser is one headless Chromium with one tab.
type browser struct {
	ctx   context.Context // the tab's chromedp context
	shots string          // screenshot directory
	n     int             // screenshots taken, for their order
}

// startBrowser starts Chromium with a profile of its own, no sandbox (the
// tests run as root in CI), no GPU, no background traffic and no proxy: the
// page is fetched from loopback directly. It stops when the test ends.
func startBrowser(t testing.TB, exe string) *browser {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1600, 1000),
	}
	actx, stopAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, stopTab := chromedp.NewContext(actx)
	t.Cleanup(func() {
		stopTab()
		stopAlloc()
	})
	// The first run starts the browser; it must not have a timeout, which
	// would stop the browser with it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	dir := filepath.Join(artifactsDir, browserShots, unsafeName.ReplaceAllString(t.Name(), "_"))
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return &browser{ctx: ctx, shots: dir}
}

// do runs steps within pageWait.
func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.ctx, pageWait)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

// eval evaluates a JavaScript expression and decodes its value.
func eval[T any](t testing.TB, b *browser, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, pageWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.shot(t, "failed")
		t.Fatalf("evaluating %s: %v", expr, err)
	}
	return v
}

// waitJS waits until the expression is truthy, checking every 50 ms for at
// most pageWait; it fails the test, with a screenshot, when it never is.
func (b *browser) waitJS(t testing.TB, what, expr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, pageWait+5*time.Second)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(pageWait)))
	if err != nil {
		b.shot(t, "failed")
		t.Fatalf("the page never showed %s within %v (%s): %v", what, pageWait, expr, err)
	}
}

// shot saves a screenshot of the viewport as NN-name.png.
func (b *browser) shot(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, pageWait)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	b.n++
	path := filepath.Join(b.shots, fmt.Sprintf("%02d-%s.png", b.n, name))
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	t.Logf("screenshot: e2e/%s", path)
}

// feedRow is one row of the page's event table as the admin reads it.
type feedRow struct {
	ID      string `json:"id"`
	Client  string `json:"client"`
	Host    string `json:"host"`
	Outcome string `json:"outcome"`
}

// jsFeedRows reads the event table.
const jsFeedRows = `Array.from(document.querySelectorAll('#events tbody tr')).map(tr => ({
  id: tr.dataset.id, client: tr.children[1].textContent, host: tr.children[4].textContent,
  outcome: tr.children[6].textContent.replace(/^\W+/, '').trim()}))`

func feedRows(t testing.TB, b *browser) []feedRow {
	t.Helper()
	return eval[[]feedRow](t, b, jsFeedRows)
}

// rowShown is an expression true once the row of event id shows outcome.
func rowShown(id int64, outcome inspect.Outcome) string {
	return fmt.Sprintf(`(() => { const tr = document.querySelector('#events tbody tr[data-id="%d"]');
  return !!tr && tr.children[6].textContent.includes(%q); })()`, id, outcome)
}

// duplicates returns the ids that show in more than one row.
func duplicates(rows []feedRow) []string {
	seen := map[string]int{}
	var dup []string
	for _, r := range rows {
		seen[r.ID]++
		if seen[r.ID] == 2 {
			dup = append(dup, r.ID)
		}
	}
	return dup
}

// browserWorld is what the browser tests run against: a TLS download server
// for the tetra name, a DNS server that does not know the EU name, and serve.
type browserWorld struct {
	pki      *testPKI
	download *tlsServer
	serve    *serveProc
	api      *apiClient
}

func newBrowserWorld(t *testing.T) *browserWorld {
	t.Helper()
	w := &browserWorld{pki: newPKI(t, t.TempDir())}
	dns := startDNS(t, []string{hostTetraAPJC}, []string{hostTetraEU})
	w.download = startTLSServer(t, w.pki, tlsServerOptions{})
	w.serve = startServe(t, serveConfig{
		DNS:          []string{dns.Addr},
		Resolve:      []string{hostTetra + "=127.0.0.1"},
		AllowPorts:   []int{w.download.Port},
		AllowClients: []string{"127.0.0.1/32"},
	})
	w.api = newAPIClient(w.serve.UIAddr())
	return w
}

// fetch runs curl through the proxy for host's definitions and returns the
// event the proxy recorded for it.
func (w *browserWorld) fetch(t *testing.T, host string, after int64) inspect.Event {
	t.Helper()
	r := runCurl(t, "-x", "http://"+w.serve.ProxyAddr(), "--cacert", w.pki.CAFile,
		tetraURL(host, w.download.Port))
	if host == hostTetra && r.Exit != 0 {
		t.Fatalf("%v; want a download", r)
	}
	e, err := w.api.WaitEvent(url.Values{"host": {host}, "limit": {"100"}},
		func(e *inspect.Event) bool { return e.ID > after }, eventWait)
	if err != nil {
		t.Fatal(err)
	}
	return e.Event
}

// TestBrowserPage follows an admin's hour at the page: traffic appears
// without a reload, a filter narrows the feed, a click on the client shows
// its diagnosis, after the server restarts the page reconnects and catches
// up without duplicate rows, and a page opened after a restart lists the
// clients from the server's restored state.
func TestBrowserPage(t *testing.T) {
	exe := requireChromium(t)
	needBinary(t)
	requireTool(t, "curl")
	w := newBrowserWorld(t)
	b := startBrowser(t, exe)
	page := "http://" + w.serve.UIAddr() + "/"

	if err := b.do(chromedp.Navigate(page)); err != nil {
		t.Fatalf("opening %s: %v", page, err)
	}
	b.waitJS(t, "the connection indicator saying connected",
		`document.getElementById('conn').classList.contains('conn-connected')`)
	// A marker that a reload would wipe, and a record of the indicator.
	eval[chromedp.Void](t, b, `window.__noReload = true; window.__conn = [];
  new MutationObserver(() => window.__conn.push(document.getElementById('conn').className))
    .observe(document.getElementById('conn'), {attributes: true}); undefined`)
	b.shot(t, "empty")

	t.Run("live rows", func(t *testing.T) {
		ok := w.fetch(t, hostTetra, 0)
		dns := w.fetch(t, hostTetraEU, ok.ID)
		if ok.Outcome != inspect.OK || dns.Outcome != inspect.DNSFailure {
			t.Fatalf("outcomes %s, %s; want ok, dns_failure", ok.Outcome, dns.Outcome)
		}
		b.waitJS(t, "the download's row", rowShown(ok.ID, inspect.OK))
		b.waitJS(t, "the DNS failure's row", rowShown(dns.ID, inspect.DNSFailure))
		b.waitJS(t, "the overview counting both", `document.querySelector(
  '#outcome-counts .counter.total .n').textContent === '2'`)
		b.waitJS(t, "the client in the clients table", `!!document.querySelector(
  '#clients tbody tr[data-client="127.0.0.1"]')`)
		if !eval[bool](t, b, `window.__noReload === true`) {
			t.Error("the page was reloaded")
		}
		b.shot(t, "live")
	})

	t.Run("filter narrows", func(t *testing.T) {
		before := len(feedRows(t, b))
		eval[chromedp.Void](t, b, `(() => { const f = document.getElementById('filters');
  f.elements.outcome.value = 'dns_failure'; f.requestSubmit(); })()`)
		b.waitJS(t, "only dns_failure rows", `(() => {
  const rows = Array.from(document.querySelectorAll('#events tbody tr'));
  return rows.length > 0 && rows.every(tr => tr.children[6].textContent.includes('dns_failure'));
})()`)
		rows := feedRows(t, b)
		if len(rows) >= before {
			t.Errorf("%d rows after the filter, %d before; want fewer", len(rows), before)
		}
		if u := eval[string](t, b, `location.search`); !strings.Contains(u, "outcome=dns_failure") {
			t.Errorf("address %q does not carry the filter", u)
		}
		href := eval[string](t, b, `document.getElementById('export-csv').href`)
		if !strings.Contains(href, "outcome=dns_failure") || !strings.Contains(href, "format=csv") {
			t.Errorf("CSV export %q does not follow the filter", href)
		}
		b.shot(t, "filtered")
		eval[chromedp.Void](t, b, `document.getElementById('clear').click()`)
		b.waitJS(t, "the unfiltered feed again", fmt.Sprintf(
			`document.querySelectorAll('#events tbody tr').length >= %d`, before))
	})

	t.Run("client view", func(t *testing.T) {
		eval[chromedp.Void](t, b,
			`document.querySelector('#clients tbody tr[data-client="127.0.0.1"] td').click()`)
		b.waitJS(t, "the client view with the dns diagnosis", `(() => {
  const cv = document.getElementById('client-view');
  return !cv.hidden && !!cv.querySelector('#cv-diagnoses li[data-name="dns"]');
})()`)
		b.waitJS(t, "the evidence marked in the timeline",
			`document.querySelectorAll('#cv-timeline tbody tr.evidence').length > 0`)
		le := eval[string](t, b, `document.getElementById('cv-lasterror').textContent`)
		if !strings.Contains(le, "4294965187") || !strings.Contains(le, "documented") {
			t.Errorf("lasterror panel %q; want 4294965187, documented", le)
		}
		advice := eval[string](t, b,
			`document.querySelector('#cv-diagnoses li[data-name="dns"] .advice').textContent`)
		if advice != inspect.Advice(inspect.DiagnosisDNS) {
			t.Errorf("advice %q; want the dns advice", advice)
		}
		b.shot(t, "client-view")
	})

	// The endpoints' own values, uploaded from the page: the client shows
	// its endpoint's code beside the expected one, and keeps it after the
	// restarts below (the upload is in the store).
	t.Run("endpoints upload", func(t *testing.T) {
		csv := filepath.Join(t.TempDir(), "endpoints.csv")
		data := "Hostname;IP;LastError\nPC-7;127.0.0.1;4294965187\nPC-8;;not a code\n"
		if err := os.WriteFile(csv, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		b.waitJS(t, "the upload control", `!document.getElementById('upload').hidden`)
		if err := b.do(chromedp.SetUploadFiles(chromedp.CSS(`#upload-file`),
			[]string{csv})); err != nil {
			t.Fatalf("choosing the file: %v", err)
		}
		b.waitJS(t, "the upload's result", `document.getElementById('upload-note').textContent
  .includes('1 endpoint in use; 1 row not used (line 3:')`)
		b.waitJS(t, "the reported code in the clients table", reportedShown)
		b.shot(t, "uploaded")
	})

	t.Run("restart and catch up", func(t *testing.T) {
		old := feedRows(t, b)
		w.serve.Restart()

		b.waitJS(t, "the page reconnected", `window.__conn.some(c => c.includes('reconnecting'))
  && document.getElementById('conn').classList.contains('conn-connected')`)
		// Only the catch-up has run: the clients come from the server's
		// state restored from the store, not from new traffic.
		b.waitJS(t, "the clients table filled after the restart", `!!document.querySelector(
  '#clients tbody tr[data-client="127.0.0.1"]') &&
  document.getElementById('clients-empty').hidden`)
		b.shot(t, "reconnected")

		newer := w.fetch(t, hostTetra, maxID(old))
		b.waitJS(t, "the row of a download after the restart", rowShown(newer.ID, inspect.OK))
		rows := feedRows(t, b)
		if dup := duplicates(rows); len(dup) > 0 {
			t.Errorf("rows shown twice after the catch-up: %v", dup)
		}
		for _, r := range old {
			if !slices.ContainsFunc(rows, func(n feedRow) bool { return n.ID == r.ID }) {
				t.Errorf("row %s (%s %s) is gone after the restart", r.ID, r.Host, r.Outcome)
			}
		}
		if !eval[bool](t, b, `window.__noReload === true`) {
			t.Error("the page was reloaded")
		}
		b.shot(t, "caught-up")
	})

	// A page opened after a restart, whose rows all come from the
	// backfill, still lists the clients (they once showed as "No clients
	// yet" when the panel was computed from new events only).
	t.Run("fresh page after restart", func(t *testing.T) {
		w.serve.Restart()
		if err := b.do(chromedp.Navigate(page)); err != nil {
			t.Fatalf("opening %s: %v", page, err)
		}
		b.waitJS(t, "the backfilled rows and the clients", `document.querySelectorAll(
  '#events tbody tr').length >= 3 && !!document.querySelector(
  '#clients tbody tr[data-client="127.0.0.1"]') &&
  document.getElementById('clients-empty').hidden`)
		b.waitJS(t, "the endpoint's uploaded code, kept across restarts", reportedShown)
		if dup := duplicates(feedRows(t, b)); len(dup) > 0 {
			t.Errorf("rows shown twice: %v", dup)
		}
		b.shot(t, "fresh-after-restart")
	})
}

// reportedShown is true when the clients table shows the code the endpoint
// of 127.0.0.1 reported, agreeing with the expected one.
const reportedShown = `(() => {
  const td = document.querySelector('#clients tbody tr[data-client="127.0.0.1"] td.reported');
  return !!td && td.textContent.includes('4294965187') && td.textContent.includes('agree');
})()`

// maxID returns the highest id among rows.
func maxID(rows []feedRow) int64 {
	var m int64
	for _, r := range rows {
		var id int64
		fmt.Sscan(r.ID, &id)
		m = max(m, id)
	}
	return m
}
