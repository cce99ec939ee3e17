package e2e

import (
	"context"
	"fmt"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tetrascope/tetrascope/inspect"
)

// BenchmarkBrowserFeed measures how long a download takes to show in the
// page's feed: from the end of curl to the moment its row shows the outcome
// (a MutationObserver in the page notes the time; the page and this process
// read the same clock, in milliseconds). It reports the median and the worst case
// as ms/row and max-ms/row. The path is the whole program's: the proxy, the
// pipeline, the websocket and the page's own rendering.
//
// Run it with `go test -run '^$' -bench BrowserFeed ./e2e/`.
func BenchmarkBrowserFeed(b *testing.B) {
	exe := requireChromium(b)
	curl, err := exec.LookPath("curl")
	if err != nil {
		b.Skipf("curl not found: %v", err)
	}
	if buildErr != nil {
		b.Fatalf("the tetrascope binary did not build:\n%v", buildErr)
	}

	pki := newPKI(b, b.TempDir())
	download := startTLSServer(b, pki, tlsServerOptions{})
	dir := b.TempDir()
	p := &serveProc{
		bin: binPath, env: childEnv(), dir: dir, LogPath: filepath.Join(dir, "serve.log"),
		stopTimeout: stopTimeout,
		cfg: serveConfig{
			Listen: freeAddr(b), UI: freeAddr(b), DB: filepath.Join(dir, "t.db"), Sensor: "bench",
			Resolve:      []string{hostTetra + "=127.0.0.1"},
			AllowPorts:   []int{download.Port},
			AllowClients: []string{"127.0.0.1/32"},
		},
	}
	if err := p.start(); err != nil {
		b.Fatal(err)
	}
	defer p.kill()
	api := newAPIClient(p.UIAddr())

	br := startBrowser(b, exe)
	if err := br.do(chromedp.Navigate("http://" + p.UIAddr() + "/")); err != nil {
		b.Fatal(err)
	}
	br.waitJS(b, "connected", `document.getElementById('conn').classList.contains('conn-connected')`)
	// A row shows when its tunnel opens, before curl ends; what counts is
	// the row completed with its outcome.
	eval[chromedp.Void](b, br, `window.__done = {};
  new MutationObserver(ms => { const now = Date.now();
    for (const m of ms) { const tr = m.target.closest && m.target.closest('tr');
      for (const r of [tr, ...m.addedNodes]) if (r && r.dataset && r.dataset.id &&
        r.classList.contains('state-done') && !(r.dataset.id in window.__done))
        window.__done[r.dataset.id] = now; } })
  .observe(document.querySelector('#events tbody'), {childList: true, subtree: true});
  undefined`)

	var lat []float64
	var last int64
	b.ResetTimer()
	for b.Loop() {
		ctx, cancel := context.WithTimeout(context.Background(), curlTimeout)
		out, err := exec.CommandContext(ctx, curl, "-q", "-sS", "--http1.1", "-o", "/dev/null",
			"-x", "http://"+p.ProxyAddr(), "--cacert", pki.CAFile,
			tetraURL(hostTetra, download.Port)).CombinedOutput()
		cancel()
		end := time.Now()
		if err != nil {
			b.Fatalf("curl: %v: %s", err, out)
		}
		e, err := api.WaitEvent(url.Values{"host": {hostTetra}, "limit": {"10"}},
			func(e *inspect.Event) bool { return e.ID > last }, eventWait)
		if err != nil {
			b.Fatal(err)
		}
		last = e.ID
		expr := fmt.Sprintf(`window.__done[%q]`, fmt.Sprint(e.ID))
		br.waitJS(b, "the row of the download", expr)
		at := eval[int64](b, br, expr)
		lat = append(lat, float64(at-end.UnixMilli()))
	}
	b.StopTimer()

	slices.Sort(lat)
	b.ReportMetric(lat[len(lat)/2], "ms/row")
	b.ReportMetric(lat[len(lat)-1], "max-ms/row")
}
