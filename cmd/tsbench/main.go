// Command tsbench measures tetrascope against the least a forward proxy can
// do and against Squid, on one machine, in one run, and checks the targets
// of issue 8.
//
// It starts its own loopback origin, then, round after round, each
// candidate: direct (no proxy), the bare relay (this program as `tsbench
// relay`: CONNECT, dial, 200, two io.Copy between TCP connections, which
// the kernel splices), `tetrascope serve` with a fresh database and full
// inspection and recording, and Squid when it is installed. The proxy runs
// on one processor and this program, load and origin, on the other. Each
// candidate goes through the same scenarios: idle memory, idle tunnels,
// one bulk download, CONNECT cycles, plain-HTTP GETs; tetrascope also
// through a stalled store and websocket viewers. The in-process Go
// benchmarks of the store, the pipeline and the stream run last, on the
// proxy's processor. The table shows the median and the range over the
// rounds, the ratios the issue names and whether each target holds.
//
// docs/performance.md describes the method and shows a run.
//
// Usage:
//
//	go run ./cmd/tsbench [flags]      # the full run, a few minutes
//	go run ./cmd/tsbench --smoke      # every scenario, tiny, under 30 s
//
// All traffic stays on 127.0.0.1; every child process runs in its own
// process group and is killed when tsbench exits.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	rounds      int
	bulk        int64
	duration    time.Duration // of the cycle and GET runs
	clients     int
	idle        int
	settle      time.Duration // wait with the idle tunnels open before sampling
	viewers     int
	viewRate    float64
	viewDur     time.Duration
	candidates  []string
	tetrascope  string
	squid       string
	jsonOut     string
	smoke       bool
	pin         bool
	proxyCPU    int
	loadCPU     int
	goBench     bool
	benchtime   string
	keep        bool
	verbose     bool
	perfDir     string
	withStalled bool
	withViewers bool
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "relay" {
		fs := flag.NewFlagSet("relay", flag.ExitOnError)
		addr := fs.String("listen", "127.0.0.1:0", "address of the bare relay")
		_ = fs.Parse(os.Args[2:])
		if err := runRelay(*addr); err != nil {
			fmt.Fprintln(os.Stderr, "tsbench relay:", err)
			os.Exit(1)
		}
		return
	}

	o, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "tsbench:", err)
		os.Exit(2)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		killChildren()
		fmt.Fprintln(os.Stderr, "tsbench: interrupted")
		os.Exit(1)
	}()

	err = run(o)
	killChildren()
	if err != nil {
		fmt.Fprintln(os.Stderr, "tsbench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("tsbench", flag.ContinueOnError)
	o := &options{}
	bulk := fs.String("bulk", "2GiB", "size of the bulk download (KiB, MiB, GiB suffixes)")
	cands := fs.String("candidates", strings.Join(allCandidates, ","),
		"candidates to run, comma-separated")
	fs.IntVar(&o.rounds, "rounds", 3, "rounds; each figure is shown as median [min-max]")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "length of the cycle and GET runs")
	fs.IntVar(&o.clients, "clients", 32, "concurrent clients of the cycle and GET runs")
	fs.IntVar(&o.idle, "idle-tunnels", 3000, "idle tunnels opened for the memory figure")
	fs.IntVar(&o.viewers, "viewers", 20, "websocket viewers of the stream scenario")
	fs.Float64Var(&o.viewRate, "view-rate", 2000, "events per second during the stream scenario")
	fs.DurationVar(&o.viewDur, "view-duration", 3*time.Second,
		"length of each half of the stream scenario")
	fs.StringVar(&o.tetrascope, "tetrascope", "",
		"tetrascope binary (default: built from this module)")
	fs.StringVar(&o.squid, "squid", "", "squid binary (default: squid on PATH or /usr/sbin/squid)")
	fs.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to this file (- for stdout)")
	fs.BoolVar(&o.smoke, "smoke", false, "run every scenario tiny and once (a test of the harness)")
	fs.BoolVar(&o.pin, "pin", true, "pin the proxy and the load to one processor each")
	fs.IntVar(&o.proxyCPU, "proxy-cpu", 0, "processor of the proxy under test")
	fs.IntVar(&o.loadCPU, "load-cpu", 1, "processor of the load and the origin")
	fs.BoolVar(&o.goBench, "gobench", true,
		"run the Go benchmarks of store, pipeline and ui (needs the go tool)")
	fs.StringVar(&o.benchtime, "benchtime", "2s",
		"-benchtime of the Go benchmarks (the pipeline's runs 2000000 hand-overs)")
	fs.BoolVar(&o.withStalled, "stalled", true,
		"measure tetrascope with its store stalled (needs the sqlite3 program)")
	fs.BoolVar(&o.withViewers, "stream", true, "measure tetrascope with websocket viewers")
	fs.StringVar(&o.perfDir, "perf", "",
		"record each proxy with perf during bulk, cycles and GET into this directory "+
			"(profiling only: perf slows the proxy)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs, databases)")
	fs.BoolVar(&o.verbose, "v", false, "log each step on stderr")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if o.bulk, err = parseSize(*bulk); err != nil {
		return nil, fmt.Errorf("--bulk: %w", err)
	}
	for _, c := range strings.Split(*cands, ",") {
		c = strings.TrimSpace(c)
		if !slices.Contains(allCandidates, c) {
			return nil, fmt.Errorf("--candidates: unknown %q (want %s)", c,
				strings.Join(allCandidates, ","))
		}
		o.candidates = append(o.candidates, c)
	}
	if o.smoke {
		o.rounds = 1
		o.bulk = 16 << 20
		o.duration = 500 * time.Millisecond
		o.idle = 50
		o.viewers = 3
		o.viewRate = 200
		o.viewDur = 500 * time.Millisecond
		o.benchtime = "10x"
	}
	o.settle = 1500 * time.Millisecond
	if o.smoke {
		o.settle = 300 * time.Millisecond
	}
	if o.rounds < 1 || o.clients < 1 || o.idle < 1 || o.bulk < 1 {
		return nil, errors.New("--rounds, --clients, --idle-tunnels and --bulk must be positive")
	}
	return o, nil
}

// parseSize reads a byte count such as 2GiB, 16MiB or 1048576.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = v, u.m
			break
		}
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return int64(n * float64(mult)), nil
}

// bench is one run of the harness.
type bench struct {
	o          *options
	pin        pinning
	dir        string
	self       string // this program, for the bare relay
	tetrascope string
	squid      string // empty: not installed
	root       string // module root, empty when not run from the module
	origin     *origin
	res        *results
}

func (b *bench) logf(format string, a ...any) {
	if b.o.verbose {
		fmt.Fprintf(os.Stderr, "tsbench: %s "+format+"\n",
			append([]any{time.Now().Format("15:04:05.000")}, a...)...)
	}
}

func run(o *options) error {
	b := &bench{o: o, res: newResults(o)}
	var err error
	b.dir, err = os.MkdirTemp("", "tsbench-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintln(os.Stderr, "tsbench: keeping", b.dir)
	} else {
		defer os.RemoveAll(b.dir)
	}
	if err := os.Chmod(b.dir, 0o755); err != nil {
		return err
	}

	if err := b.setup(); err != nil {
		return err
	}
	b.res.machine = machineInfo(b)

	tr, err := recordTranscript(hostCycle)
	if err != nil {
		return err
	}
	b.origin, err = startOrigin(tr)
	if err != nil {
		return err
	}
	defer b.origin.close()

	for round := range o.rounds {
		// Rotate the order so that no candidate always runs first, on a
		// machine that warms up or gets busier.
		order := slices.Clone(o.candidates)
		k := round % len(order)
		order = append(order[k:], order[:k]...)
		for _, name := range order {
			if name == candSquid && b.squid == "" {
				continue
			}
			if err := b.runCandidate(name, round); err != nil {
				return fmt.Errorf("round %d, %s: %w", round+1, name, err)
			}
		}
	}

	if o.goBench {
		if err := b.runGoBenchmarks(); err != nil {
			b.res.note("Go benchmarks not run: %v", err)
		}
	}
	b.res.machine.LoadAfter = loadAverage()
	b.res.finish()

	out := os.Stdout
	if o.jsonOut == "-" {
		out = os.Stderr
	}
	b.res.printText(out)
	if o.jsonOut != "" {
		if err := b.res.writeJSON(o.jsonOut); err != nil {
			return err
		}
	}
	return nil
}

// setup finds the programs and pins this process to the load processor.
func (b *bench) setup() error {
	var err error
	if b.self, err = os.Executable(); err != nil {
		return fmt.Errorf("finding this program: %w", err)
	}
	b.root = moduleRoot()

	b.tetrascope = b.o.tetrascope
	if b.tetrascope == "" && slices.Contains(b.o.candidates, candTetrascope) {
		if b.root == "" {
			return errors.New("not in the tetrascope module: build it and pass --tetrascope")
		}
		b.tetrascope = filepath.Join(b.dir, "tetrascope")
		b.logf("building ./cmd/tetrascope")
		cmd := exec.Command("go", "build", "-o", b.tetrascope, "./cmd/tetrascope")
		cmd.Dir = b.root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/tetrascope: %v\n%s", err, out)
		}
	}

	if slices.Contains(b.o.candidates, candSquid) {
		b.squid = b.o.squid
		if b.squid == "" {
			if p, err := exec.LookPath("squid"); err == nil {
				b.squid = p
			} else if _, err := os.Stat("/usr/sbin/squid"); err == nil {
				b.squid = "/usr/sbin/squid"
			}
		}
		if b.squid == "" {
			b.res.note("Squid is not installed: its column and the ratios to it are left out")
		}
	}
	if b.o.withStalled {
		if _, err := exec.LookPath("sqlite3"); err != nil {
			b.o.withStalled = false
			b.res.note("the sqlite3 program is missing: the stalled-store scenario is left out")
		}
	}

	b.pin = pinning{on: b.o.pin, proxy: b.o.proxyCPU, load: b.o.loadCPU}
	if b.pin.on {
		if _, err := exec.LookPath("taskset"); err != nil {
			b.pin.on = false
			b.pin.note = "taskset is missing: nothing pinned"
		} else if runtime.NumCPU() < 2 || b.o.proxyCPU == b.o.loadCPU {
			b.pin.on = false
			b.pin.note = "fewer than two processors: nothing pinned"
		} else if err := pinSelf(b.o.loadCPU); err != nil {
			b.pin.on = false
			b.pin.note = "pinning failed: " + err.Error()
		}
	}
	if b.pin.note != "" {
		b.res.note("%s", b.pin.note)
	}
	return nil
}

// moduleRoot returns the directory of this module's go.mod, found from the
// working directory, or "" when the working directory is elsewhere.
func moduleRoot() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			if strings.Contains(string(data), "module github.com/tetrascope/tetrascope\n") {
				return dir
			}
			return ""
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// runCandidate starts one candidate, runs its scenarios and stops it.
func (b *bench) runCandidate(name string, round int) error {
	b.logf("round %d: %s", round+1, name)
	put := func(metric string, v float64) { b.res.put(name, metric, round, v) }

	if name == candDirect {
		return b.runLoad(target{}, nil, round, put)
	}

	dir := filepath.Join(b.dir, fmt.Sprintf("%s-%d", name, round+1))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var p *proxyProc
	var err error
	switch name {
	case candRelay:
		p, err = b.startRelay(dir)
	case candTetrascope:
		p, err = b.startTetrascope(dir)
	case candSquid:
		p, err = b.startSquid(dir)
	}
	if err != nil {
		return err
	}
	defer func() {
		b.logf("%s: stopping", name)
		p.stop()
	}()

	// Idle memory: started and answered once, nothing else.
	time.Sleep(b.o.settle / 2)
	s, err := p.sample()
	if err != nil {
		return err
	}
	put("idle_rss_mib", float64(s.rss)/(1<<20))

	b.logf("%s: idle tunnels", name)
	if err := b.runIdleTunnels(p, put); err != nil {
		return err
	}
	if err := b.runLoad(p.target(), p, round, put); err != nil {
		return err
	}
	if name != candTetrascope {
		return nil
	}
	if b.o.withStalled {
		b.logf("%s: stalled store", name)
		if err := b.runStalled(p, put); err != nil {
			return err
		}
	}
	if b.o.withViewers {
		b.logf("%s: stream viewers", name)
		if err := b.runViewers(p, round, put); err != nil {
			return err
		}
	}
	return nil
}

// measure runs scenario f and returns the proxy's processor time during
// it (zero without a proxy). With --perf, perf records the proxy meanwhile.
func (b *bench) measure(p *proxyProc, scenario string, round int,
	f func() error) (time.Duration, error) {
	var before procStat
	if p != nil {
		var err error
		if before, err = p.sample(); err != nil {
			return 0, err
		}
		if b.o.perfDir != "" {
			stop, err := b.startPerf(p, fmt.Sprintf("%s-%s-%d", p.name, scenario, round+1))
			if err != nil {
				return 0, err
			}
			defer stop()
		}
	}
	if err := f(); err != nil {
		return 0, err
	}
	if p == nil {
		return 0, nil
	}
	after, err := p.sample()
	if err != nil {
		return 0, err
	}
	return after.cpu - before.cpu, nil
}

// startPerf runs `perf record` on the proxy, with call graphs from frame
// pointers (Go keeps them), until the returned function is called.
func (b *bench) startPerf(p *proxyProc, name string) (func(), error) {
	if err := os.MkdirAll(b.o.perfDir, 0o755); err != nil {
		return nil, err
	}
	out := filepath.Join(b.o.perfDir, name+".data")
	argv := []string{"perf", "record", "-q", "-F", "1999", "--call-graph", "fp",
		"-p", strconv.Itoa(p.child.pid()), "-o", out}
	if b.pin.on {
		argv = append([]string{"taskset", "-c", strconv.Itoa(b.pin.load)}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting perf: %w", err)
	}
	time.Sleep(200 * time.Millisecond) // perf attaches
	b.logf("perf recording %s", out)
	return func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		_ = cmd.Wait()
	}, nil
}

// runIdleTunnels opens the idle tunnels and takes the growth of the proxy's
// memory per tunnel, and its processor use while they sit idle.
func (b *bench) runIdleTunnels(p *proxyProc, put func(string, float64)) error {
	before, err := p.sample()
	if err != nil {
		return err
	}
	conns, errs, first := openIdle(p.target(), b.origin, b.o.idle, 64)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
		time.Sleep(b.o.settle / 2) // let the proxy see the closes
	}()
	if len(conns) < b.o.idle {
		return fmt.Errorf("opened %d of %d idle tunnels (%d failed, first: %v)",
			len(conns), b.o.idle, errs, first)
	}
	// The proxy's own timers of the last bytes moved run out within a
	// second or two; the processor figure is taken after them.
	time.Sleep(b.o.settle)
	mid, err := p.sample()
	if err != nil {
		return err
	}
	time.Sleep(b.o.settle)
	after, err := p.sample()
	if err != nil {
		return err
	}
	put("tunnel_rss_kib", float64(after.rss-before.rss)/1024/float64(len(conns)))
	put("tunnels_rss_mib", float64(after.rss)/(1<<20))
	put("tunnels_idle_cpu_pct", 100*(after.cpu-mid.cpu).Seconds()/b.o.settle.Seconds())
	return nil
}

// runLoad runs bulk, cycles and GETs against t; p is nil for direct.
func (b *bench) runLoad(t target, p *proxyProc, round int, put func(string, float64)) error {
	// Bulk.
	b.logf("%s: bulk", nameOf(p))
	var br bulkResult
	cpu, err := b.measure(p, "bulk", round, func() error {
		var err error
		br, err = runBulk(t, b.origin, b.o.bulk, time.Time{})
		return err
	})
	if err != nil {
		return fmt.Errorf("bulk: %w", err)
	}
	put("bulk_mb_s", float64(br.bytes)/1e6/br.dur.Seconds())
	if p != nil {
		put("bulk_cpu_s_gib", cpu.Seconds()/(float64(br.bytes)/(1<<30)))
	}

	// CONNECT cycles.
	var after int64
	if p != nil && p.ui != "" {
		if after, err = lastEventID(p.ui); err != nil {
			return err
		}
	}
	b.logf("%s: cycles", nameOf(p))
	var cr cycleResult
	cpu, err = b.measure(p, "cycles", round, func() error {
		cr = runCycles(t, b.origin, b.o.clients, b.o.duration, 0)
		return nil
	})
	if err != nil {
		return err
	}
	if cr.n == 0 {
		return fmt.Errorf("cycles: none completed (%d errors, first: %v)", cr.errs, cr.first)
	}
	if cr.errs > 0 {
		b.res.note("%s: %d cycles failed (first: %v)", nameOf(p), cr.errs, cr.first)
	}
	sortDurations(cr.setup)
	put("cycles_s", float64(cr.n)/cr.elapsed.Seconds())
	put("cycle_errors", float64(cr.errs))
	put("setup_p50_ms", ms(percentile(cr.setup, 50)))
	put("setup_p99_ms", ms(percentile(cr.setup, 99)))
	if p != nil {
		put("cycle_cpu_us", float64(cpu.Microseconds())/float64(cr.n+cr.errs))
	}
	if p != nil && p.ui != "" {
		b.logf("%s: counting stored events", nameOf(p))
		n, outcomes, err := waitStored(p.ui, hostCycle, after, cr.n+cr.errs)
		if err != nil {
			return fmt.Errorf("counting stored cycles: %w", err)
		}
		put("cycles_stored_pct", 100*float64(n)/float64(cr.n+cr.errs))
		put("cycles_ok_pct", 100*float64(outcomes["ok"])/float64(cr.n+cr.errs))
		if outcomes[""] > 0 {
			b.res.note("tetrascope: %d cycle events stored without an outcome", outcomes[""])
		}
		if outcomes["ok"] != n {
			b.res.note("tetrascope: cycle outcomes %v", outcomes)
		}
	}

	// Plain-HTTP GETs.
	b.logf("%s: GET", nameOf(p))
	var gr getResult
	cpu, err = b.measure(p, "get", round, func() error {
		gr = runGets(t, b.origin, b.o.clients, b.o.duration)
		return nil
	})
	if err != nil {
		return err
	}
	if gr.n == 0 {
		return fmt.Errorf("GET: none completed (%d errors, first: %v)", gr.errs, gr.first)
	}
	if gr.errs > 0 {
		b.res.note("%s: %d GETs failed (first: %v)", nameOf(p), gr.errs, gr.first)
	}
	put("get_s", float64(gr.n)/gr.elapsed.Seconds())
	if p != nil {
		put("get_cpu_us", float64(cpu.Microseconds())/float64(gr.n))
	}
	return nil
}

func nameOf(p *proxyProc) string {
	if p == nil {
		return candDirect
	}
	return p.name
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// runStalled runs the cycles again while another process holds the
// database's write lock: the store stalls, and the proxy must not notice.
func (b *bench) runStalled(p *proxyProc, put func(string, float64)) error {
	lock, err := lockDatabase(p.db)
	if err != nil {
		return fmt.Errorf("stalling the store: %w", err)
	}
	cr := runCycles(p.target(), b.origin, b.o.clients, b.o.duration, 0)
	lock.release()
	if cr.n == 0 {
		return fmt.Errorf("stalled store: no cycle completed (%d errors, first: %v)",
			cr.errs, cr.first)
	}
	put("stalled_cycles_s", float64(cr.n)/cr.elapsed.Seconds())
	return nil
}

// runViewers runs CONNECT cycles at viewRate for viewDur, first with no
// viewer of the stream, then with the viewers, and takes the proxy's
// processor time per cycle in each. The difference, at viewRate events per
// second, is the share of its processor the viewers take: the share of its
// throughput a saturated proxy loses to them. Per cycle, the figure holds
// even when this machine cannot reach viewRate.
func (b *bench) runViewers(p *proxyProc, round int, put func(string, float64)) error {
	phase := func(n int) (perCycle time.Duration, rate float64, vs []*wsViewer, err error) {
		for range n {
			v, err := dialViewer(p.ui, "")
			if err != nil {
				return 0, 0, vs, err
			}
			vs = append(vs, v)
			go v.run()
		}
		time.Sleep(200 * time.Millisecond) // catch-up and first stats sent
		var cr cycleResult
		cpu, err := b.measure(p, fmt.Sprintf("stream%d", n), round, func() error {
			cr = runCycles(p.target(), b.origin, b.o.clients, b.o.viewDur, b.o.viewRate)
			time.Sleep(100 * time.Millisecond) // the last events reach the viewers
			return nil
		})
		if err != nil {
			return 0, 0, vs, err
		}
		if cr.n == 0 {
			return 0, 0, vs, fmt.Errorf("no cycle completed (%d errors, first: %v)",
				cr.errs, cr.first)
		}
		return cpu / time.Duration(cr.n+cr.errs), float64(cr.n) / cr.elapsed.Seconds(), vs, nil
	}

	base, rate0, _, err := phase(0)
	if err != nil {
		return fmt.Errorf("stream, no viewers: %w", err)
	}
	with, rate, vs, err := phase(b.o.viewers)
	defer func() {
		for _, v := range vs {
			v.close()
		}
	}()
	if err != nil {
		return fmt.Errorf("stream, %d viewers: %w", b.o.viewers, err)
	}
	if rate0 < 0.95*b.o.viewRate || rate < 0.95*b.o.viewRate {
		b.res.note("tetrascope: the stream scenario reached %.0f (no viewer) and %.0f "+
			"(viewers) cycles/s of %.0f: the proxy's core was full", rate0, rate, b.o.viewRate)
	}

	var lat []time.Duration
	events := 0
	for _, v := range vs {
		v.mu.Lock()
		lat = append(lat, v.lat...)
		events += v.events
		if v.err != nil {
			b.res.note("tetrascope: a stream viewer failed: %v", v.err)
		}
		v.mu.Unlock()
	}
	sortDurations(lat)
	put("stream_rate", rate)
	put("stream_cpu_us_0", float64(base.Microseconds()))
	put("stream_cpu_us_n", float64(with.Microseconds()))
	put("stream_cost_pct", 100*(with-base).Seconds()*b.o.viewRate)
	put("stream_p99_ms", ms(percentile(lat, 99)))
	put("stream_events_per_viewer", float64(events)/float64(len(vs)))
	return nil
}
