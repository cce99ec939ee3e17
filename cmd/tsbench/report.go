package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// metricInfo names a figure of the table.
type metricInfo struct {
	key, label, format string
}

// metrics are the figures per candidate, in the order of the table.
var metrics = []metricInfo{
	{"bulk_mb_s", "tunnel bulk, MB/s", "%.0f"},
	{"bulk_cpu_s_gib", "  proxy CPU per GiB, s", "%.3f"},
	{"cycles_s", "CONNECT cycles/s", "%.0f"},
	{"cycle_cpu_us", "  proxy CPU per cycle, us", "%.1f"},
	{"setup_p50_ms", "  setup p50, ms", "%.3f"},
	{"setup_p99_ms", "  setup p99, ms", "%.3f"},
	{"cycle_errors", "  failed cycles", "%.0f"},
	{"cycles_stored_pct", "  cycles stored, %", "%.2f"},
	{"cycles_ok_pct", "  cycles stored as ok, %", "%.2f"},
	{"get_s", "plain GET/s", "%.0f"},
	{"get_cpu_us", "  proxy CPU per GET, us", "%.1f"},
	{"idle_rss_mib", "idle RSS, MiB", "%.1f"},
	{"tunnel_rss_kib", "RSS per idle tunnel, KiB", "%.1f"},
	{"tunnels_rss_mib", "  RSS with the idle tunnels, MiB", "%.1f"},
	{"tunnels_idle_cpu_pct", "  CPU with the idle tunnels, %", "%.1f"},
	{"stalled_cycles_s", "CONNECT cycles/s, store stalled", "%.0f"},
	{"stream_rate", "cycles/s watched by the viewers", "%.0f"},
	{"stream_cpu_us_0", "  proxy CPU per cycle, no viewer, us", "%.1f"},
	{"stream_cpu_us_n", "  proxy CPU per cycle, viewers, us", "%.1f"},
	{"stream_cost_pct", "  viewers' cost at the rate, % of a core", "%.1f"},
	{"stream_p99_ms", "  connection end to viewer p99, ms", "%.1f"},
	{"stream_events_per_viewer", "  events per viewer", "%.0f"},
}

// results collects the figures of a run.
type results struct {
	o       *options
	machine machine
	// vals[candidate][metric][round]; NaN where not measured.
	vals    map[string]map[string][]float64
	gobench map[string][]float64 // "package/Benchmark.../metric" -> one value per -count
	notes   []string
	checks  []checkResult
}

type machine struct {
	CPUs       int    `json:"cpus"`
	Model      string `json:"model"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	Squid      string `json:"squid,omitempty"`
	Pinned     string `json:"pinned"`
	LoadBefore string `json:"load_before"`
	LoadAfter  string `json:"load_after"`
	Busy       bool   `json:"busy"`
}

func newResults(o *options) *results {
	return &results{o: o, vals: map[string]map[string][]float64{},
		gobench: map[string][]float64{}}
}

func (r *results) note(format string, a ...any) {
	n := fmt.Sprintf(format, a...)
	if !slices.Contains(r.notes, n) {
		r.notes = append(r.notes, n)
	}
}

func (r *results) put(cand, metric string, round int, v float64) {
	m := r.vals[cand]
	if m == nil {
		m = map[string][]float64{}
		r.vals[cand] = m
	}
	s := m[metric]
	if s == nil {
		s = make([]float64, r.o.rounds)
		for i := range s {
			s[i] = math.NaN()
		}
		m[metric] = s
	}
	s[round] = v
}

func (r *results) get(cand, metric string, round int) float64 {
	if s := r.vals[cand][metric]; s != nil {
		return s[round]
	}
	return math.NaN()
}

// summary is min, median and max of the values measured.
type summary struct {
	Values []float64 `json:"values"`
	Min    float64   `json:"min"`
	Median float64   `json:"median"`
	Max    float64   `json:"max"`
}

func summarize(vs []float64) (summary, bool) {
	var s summary
	for _, v := range vs {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			s.Values = append(s.Values, v)
		}
	}
	if len(s.Values) == 0 {
		return s, false
	}
	sorted := slices.Sorted(slices.Values(s.Values))
	s.Min, s.Max = sorted[0], sorted[len(sorted)-1]
	if n := len(sorted); n%2 == 1 {
		s.Median = sorted[n/2]
	} else {
		s.Median = (sorted[n/2-1] + sorted[n/2]) / 2
	}
	return s, true
}

// check is one target of the issue.
type check struct {
	id, label, goal string
	// value computes the figure for one round from the candidates'
	// figures; NaN when a figure is missing.
	value func(r *results, round int) float64
	// gobench names a Go benchmark figure instead of value.
	gobench string
	pass    func(v float64) bool
	format  string
}

type checkResult struct {
	ID      string   `json:"id"`
	Label   string   `json:"label"`
	Goal    string   `json:"goal"`
	Summary *summary `json:"summary,omitempty"`
	Result  string   `json:"result"` // pass, FAIL, or n/a
}

func ratio(a, am, b, bm string) func(*results, int) float64 {
	return func(r *results, i int) float64 { return r.get(a, am, i) / r.get(b, bm, i) }
}

func diff(a, am, b, bm string) func(*results, int) float64 {
	return func(r *results, i int) float64 { return r.get(a, am, i) - r.get(b, bm, i) }
}

func value(a, am string) func(*results, int) float64 {
	return func(r *results, i int) float64 { return r.get(a, am, i) }
}

const (
	// Under sustained load the pipeline's batches are full: 4096 events.
	gbStoreRate  = "store/BenchmarkAppend/batch=4096/clients=1000/events/s"
	gbHandOK     = "pipeline/BenchmarkHandOver/store=ok/ns/op"
	gbHandStall  = "pipeline/BenchmarkHandOver/store=stalled/ns/op"
	gbFanP99     = "ui/BenchmarkFanout/viewers=20/p99-ms"
	gbFanSlowP99 = "ui/BenchmarkFanout/viewers=20+slow/p99-ms"
)

var checks = []check{
	{id: "bulk_vs_relay", label: "bulk throughput, tetrascope / relay", goal: ">= 0.95",
		value: ratio(candTetrascope, "bulk_mb_s", candRelay, "bulk_mb_s"),
		pass:  func(v float64) bool { return v >= 0.95 }, format: "%.3f"},
	{id: "bulk_cpu_vs_relay", label: "bulk CPU per GiB, tetrascope / relay", goal: "<= 1.1",
		value: ratio(candTetrascope, "bulk_cpu_s_gib", candRelay, "bulk_cpu_s_gib"),
		pass:  func(v float64) bool { return v <= 1.1 }, format: "%.3f"},
	{id: "bulk_vs_squid", label: "bulk throughput, tetrascope / squid", goal: ">= 1.3",
		value: ratio(candTetrascope, "bulk_mb_s", candSquid, "bulk_mb_s"),
		pass:  func(v float64) bool { return v >= 1.3 }, format: "%.3f"},
	{id: "bulk_cpu_vs_squid", label: "bulk CPU per GiB, tetrascope / squid", goal: "< 0.5",
		value: ratio(candTetrascope, "bulk_cpu_s_gib", candSquid, "bulk_cpu_s_gib"),
		pass:  func(v float64) bool { return v < 0.5 }, format: "%.3f"},
	{id: "cycles_vs_relay", label: "CONNECT cycles/s, tetrascope / relay", goal: ">= 0.9",
		value: ratio(candTetrascope, "cycles_s", candRelay, "cycles_s"),
		pass:  func(v float64) bool { return v >= 0.9 }, format: "%.3f"},
	{id: "cycles_vs_squid", label: "CONNECT cycles/s, tetrascope / squid", goal: ">= 1.0",
		value: ratio(candTetrascope, "cycles_s", candSquid, "cycles_s"),
		pass:  func(v float64) bool { return v >= 1.0 }, format: "%.3f"},
	{id: "cycles_stored", label: "cycles classified and stored, %", goal: "= 100",
		value: value(candTetrascope, "cycles_stored_pct"),
		pass:  func(v float64) bool { return v >= 100 }, format: "%.2f"},
	{id: "setup_p99_vs_relay", label: "setup p99, tetrascope - relay, ms", goal: "<= 1",
		value: diff(candTetrascope, "setup_p99_ms", candRelay, "setup_p99_ms"),
		pass:  func(v float64) bool { return v <= 1 }, format: "%.3f"},
	{id: "get_vs_squid", label: "plain GET/s, tetrascope / squid", goal: ">= 1.1",
		value: ratio(candTetrascope, "get_s", candSquid, "get_s"),
		pass:  func(v float64) bool { return v >= 1.1 }, format: "%.3f"},
	{id: "tunnel_rss", label: "RSS per idle tunnel, KiB", goal: "<= 48",
		value: value(candTetrascope, "tunnel_rss_kib"),
		pass:  func(v float64) bool { return v <= 48 }, format: "%.1f"},
	{id: "idle_rss_vs_squid", label: "idle RSS, tetrascope / squid", goal: "< 1",
		value: ratio(candTetrascope, "idle_rss_mib", candSquid, "idle_rss_mib"),
		pass:  func(v float64) bool { return v < 1 }, format: "%.3f"},
	{id: "store_events_s", label: "events/s into SQLite, one core, full batches (Go benchmark)",
		goal: ">= 100000", gobench: gbStoreRate,
		pass: func(v float64) bool { return v >= 100000 }, format: "%.0f"},
	{id: "stalled_vs_normal", label: "cycles/s, store stalled / not stalled", goal: ">= 0.95",
		value: ratio(candTetrascope, "stalled_cycles_s", candTetrascope, "cycles_s"),
		pass:  func(v float64) bool { return v >= 0.95 }, format: "%.3f"},
	{id: "stream_cost", label: "viewers' cost, % of the proxy's core (= of its throughput)",
		goal:  "< 5",
		value: value(candTetrascope, "stream_cost_pct"),
		pass:  func(v float64) bool { return v < 5 }, format: "%.1f"},
	{id: "stream_p99", label: "connection end to viewer p99, ms", goal: "<= 50",
		value: value(candTetrascope, "stream_p99_ms"),
		pass:  func(v float64) bool { return v <= 50 }, format: "%.1f"},
	{id: "fanout_slow_p99", label: "publish to viewer p99 beside a stuck viewer, ms (Go benchmark)",
		goal: "<= 50", gobench: gbFanSlowP99,
		pass: func(v float64) bool { return v <= 50 }, format: "%.2f"},
}

// finish evaluates the targets on the medians.
func (r *results) finish() {
	r.checks = nil
	for _, c := range checks {
		var vs []float64
		if c.gobench != "" {
			vs = r.gobench[c.gobench]
		} else {
			for i := range r.o.rounds {
				vs = append(vs, c.value(r, i))
			}
		}
		cr := checkResult{ID: c.id, Label: c.label, Goal: c.goal, Result: "n/a"}
		if s, ok := summarize(vs); ok {
			cr.Summary = &s
			cr.Result = "pass"
			if !c.pass(s.Median) {
				cr.Result = "FAIL"
			}
		}
		r.checks = append(r.checks, cr)
	}
}

func machineInfo(b *bench) machine {
	m := machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), LoadBefore: loadAverage()}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	if b.squid != "" {
		if out, err := exec.Command(b.squid, "-v").Output(); err == nil {
			m.Squid, _, _ = strings.Cut(string(out), "\n")
		}
	}
	if b.pin.on {
		m.Pinned = fmt.Sprintf("proxy on cpu %d, load and origin on cpu %d", b.pin.proxy, b.pin.load)
	} else {
		m.Pinned = "not pinned: " + b.pin.note
	}
	// A load average above half a processor before the run means someone
	// else is using the machine.
	if f := strings.Fields(m.LoadBefore); len(f) > 0 {
		if l, err := strconv.ParseFloat(f[0], 64); err == nil && l > 0.5 {
			m.Busy = true
		}
	}
	return m
}

func fmtSummary(s summary, format string) string {
	if s.Min == s.Max {
		return fmt.Sprintf(format, s.Median)
	}
	return fmt.Sprintf(format+" ["+format+"-"+format+"]", s.Median, s.Min, s.Max)
}

// candidatesShown are the candidates with at least one figure.
func (r *results) candidatesShown() []string {
	var out []string
	for _, c := range allCandidates {
		if len(r.vals[c]) > 0 {
			out = append(out, c)
		}
	}
	return out
}

func (r *results) printText(w io.Writer) {
	o := r.o
	fmt.Fprintf(w, "tsbench: %d round(s); bulk %s; cycles and GETs %s x %d clients; "+
		"%d idle tunnels; stream %d viewers at %.0f events/s\n",
		o.rounds, sizeString(o.bulk), o.duration, o.clients, o.idle, o.viewers, o.viewRate)
	m := r.machine
	fmt.Fprintf(w, "machine: %d cpus (%s), linux %s, %s; %s\n", m.CPUs, m.Model, m.Kernel,
		m.Go, m.Pinned)
	busy := ""
	if m.Busy {
		busy = "  BUSY: other work was running; rerun on a quiet machine"
	}
	fmt.Fprintf(w, "load average before %s, after %s%s\n", m.LoadBefore, m.LoadAfter, busy)
	if m.Squid != "" {
		fmt.Fprintf(w, "squid: %s\n", m.Squid)
	}
	fmt.Fprintln(w, "figures: median [min-max] over the rounds")
	fmt.Fprintln(w)

	cands := r.candidatesShown()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "figure")
	for _, c := range cands {
		fmt.Fprint(tw, "\t", c)
	}
	fmt.Fprintln(tw, "\t")
	for _, mi := range metrics {
		row := mi.label
		any := false
		for _, c := range cands {
			cell := "-"
			if s, ok := summarize(r.vals[c][mi.key]); ok {
				cell = fmtSummary(s, mi.format)
				any = true
			}
			row += "\t" + cell
		}
		if any {
			fmt.Fprintln(tw, row+"\t")
		}
	}
	tw.Flush()

	if len(r.gobench) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Go benchmarks (on the proxy's processor, GOMAXPROCS=1)")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range r.gobench {
				if !yield(k) {
					return
				}
			}
		})
		for _, k := range keys {
			if s, ok := summarize(r.gobench[k]); ok {
				fmt.Fprintf(tw, "%s\t%s\t\n", k, fmtSummary(s, "%.4g"))
			}
		}
		tw.Flush()
	}

	fmt.Fprintln(w)
	fmt.Fprintln(w, "targets (judged on the median)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tmeasured\tgoal\tresult\t")
	for i, c := range r.checks {
		cell := "-"
		if c.Summary != nil {
			cell = fmtSummary(*c.Summary, checks[i].format)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", c.Label, cell, c.Goal, c.Result)
	}
	tw.Flush()

	if len(r.notes) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "notes:")
		for _, n := range r.notes {
			fmt.Fprintln(w, "  -", n)
		}
	}
}

func sizeString(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// jsonReport is the shape of --json.
type jsonReport struct {
	Config     map[string]any                `json:"config"`
	Machine    machine                       `json:"machine"`
	Candidates map[string]map[string]summary `json:"candidates"`
	GoBench    map[string]summary            `json:"gobench"`
	Targets    []checkResult                 `json:"targets"`
	Notes      []string                      `json:"notes"`
}

func (r *results) report() jsonReport {
	o := r.o
	rep := jsonReport{
		Config: map[string]any{
			"rounds": o.rounds, "bulk_bytes": o.bulk, "duration_s": o.duration.Seconds(),
			"clients": o.clients, "idle_tunnels": o.idle, "viewers": o.viewers,
			"view_rate": o.viewRate, "smoke": o.smoke, "benchtime": o.benchtime,
		},
		Machine:    r.machine,
		Candidates: map[string]map[string]summary{},
		GoBench:    map[string]summary{},
		Targets:    r.checks,
		Notes:      r.notes,
	}
	for c, ms := range r.vals {
		out := map[string]summary{}
		for k, vs := range ms {
			if s, ok := summarize(vs); ok {
				out[k] = s
			}
		}
		rep.Candidates[c] = out
	}
	for k, vs := range r.gobench {
		if s, ok := summarize(vs); ok {
			rep.GoBench[k] = s
		}
	}
	if rep.Notes == nil {
		rep.Notes = []string{}
	}
	return rep
}

func (r *results) writeJSON(path string) error {
	data, err := json.MarshalIndent(r.report(), "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if path == "-" {
		_, err = os.Stdout.Write(data)
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
