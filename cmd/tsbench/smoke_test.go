package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSmoke builds tsbench and runs it in --smoke mode, every scenario tiny
// and once, so that the harness keeps working as the code changes. It
// checks the shape of the report, never a speed: the figures of a smoke
// run mean nothing.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("the smoke run starts tetrascope, the relay and Squid: not in -short")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "tsbench")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out := filepath.Join(dir, "report.json")
	cmd := exec.CommandContext(ctx, bin, "--smoke", "--json", out)
	cmd.Dir = filepath.Join("..", "..") // the module root: tsbench builds tetrascope
	text, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tsbench --smoke: %v\n%s", err, text)
	}
	for _, want := range []string{"figure", "targets", "tetrascope", "relay", "direct"} {
		if !strings.Contains(string(text), want) {
			t.Errorf("the table has no %q:\n%s", want, text)
		}
	}

	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rep jsonReport
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatalf("decoding the report: %v\n%s", err, data)
	}

	_, squidErr := exec.LookPath("squid")
	_, sbinErr := os.Stat("/usr/sbin/squid")
	cands := []string{candDirect, candRelay, candTetrascope}
	if squidErr == nil || sbinErr == nil {
		cands = append(cands, candSquid)
	}
	common := []string{"bulk_mb_s", "cycles_s", "setup_p50_ms", "setup_p99_ms", "get_s"}
	proxied := []string{"bulk_cpu_s_gib", "cycle_cpu_us", "get_cpu_us", "idle_rss_mib",
		"tunnel_rss_kib", "tunnels_idle_cpu_pct"}
	own := []string{"cycles_stored_pct", "cycles_ok_pct", "stream_cost_pct", "stream_p99_ms"}
	for _, c := range cands {
		want := slices.Clone(common)
		if c != candDirect {
			want = append(want, proxied...)
		}
		if c == candTetrascope {
			want = append(want, own...)
		}
		for _, m := range want {
			s, ok := rep.Candidates[c][m]
			if !ok {
				t.Errorf("%s has no %s: %v", c, m, rep.Candidates[c])
				continue
			}
			if len(s.Values) != 1 || s.Min != s.Median || s.Median != s.Max {
				t.Errorf("%s %s = %+v; want one round", c, m, s)
			}
		}
	}

	// Not a speed: every cycle through tetrascope must be recorded.
	if s := rep.Candidates[candTetrascope]["cycles_stored_pct"]; s.Median != 100 {
		t.Errorf("tetrascope stored %.2f%% of the cycles; want all", s.Median)
	}

	if len(rep.Targets) != len(checks) {
		t.Errorf("%d targets in the report, want %d", len(rep.Targets), len(checks))
	}
	for _, c := range rep.Targets {
		if !slices.Contains([]string{"pass", "FAIL", "n/a"}, c.Result) {
			t.Errorf("target %s: result %q", c.ID, c.Result)
		}
		if c.Result != "n/a" && c.Summary == nil {
			t.Errorf("target %s judged without a figure", c.ID)
		}
	}
	if len(rep.GoBench) == 0 {
		t.Errorf("no Go benchmark figures; notes: %v", rep.Notes)
	}
	if t.Failed() {
		t.Logf("tsbench output:\n%s", text)
	}
}
