package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// goBenchmarks are the in-process benchmarks of the packages that own the
// code: the store's batched appends, the pipeline's hand-over with a
// stalled store, the stream's fan-out.
// benchtime is their -benchtime in a full run: --benchtime, or a count
// for the pipeline's, whose untimed pauses make a timed run long, and ten
// seconds for the store's, so that its rate is the one it sustains on a
// table of a million events and more, not that of a small one.
var goBenchmarks = []struct{ pkg, pattern, benchtime string }{
	{"store", "^BenchmarkAppend$/^batch=(1000|4096)$/^clients=1000$", "10s"},
	{"pipeline", "^BenchmarkHandOver$", "2000000x"},
	{"ui", "^BenchmarkFanout$", ""},
}

// goBenchWait bounds each package's benchmark run.
const goBenchWait = 5 * time.Minute

// runGoBenchmarks builds each package's test binary and runs its benchmarks
// on the proxy's processor with GOMAXPROCS=1, --rounds times.
func (b *bench) runGoBenchmarks() error {
	if b.root == "" {
		return errors.New("not run from the tetrascope module")
	}
	for _, gb := range goBenchmarks {
		bin := filepath.Join(b.dir, gb.pkg+".test")
		b.logf("go test -c ./%s", gb.pkg)
		build := exec.Command("go", "test", "-c", "-o", bin, "./"+gb.pkg)
		build.Dir = b.root
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("go test -c ./%s: %v\n%s", gb.pkg, err, out)
		}

		benchtime := b.o.benchtime
		if gb.benchtime != "" && !b.o.smoke {
			benchtime = gb.benchtime
		}
		argv := []string{bin, "-test.run", "^$", "-test.bench", gb.pattern,
			"-test.benchtime", benchtime, "-test.count", strconv.Itoa(b.o.rounds),
			"-test.timeout", goBenchWait.String()}
		if b.pin.on {
			argv = append([]string{"taskset", "-c", strconv.Itoa(b.pin.proxy)}, argv...)
		}
		b.logf("%s", strings.Join(argv, " "))
		ctx, cancel := context.WithTimeout(context.Background(), goBenchWait+time.Minute)
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		cmd.Dir = filepath.Join(b.root, gb.pkg)
		cmd.Env = append(childEnv(), "GOMAXPROCS=1")
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			return fmt.Errorf("benchmarks of ./%s: %v\n%s", gb.pkg, err, out)
		}
		if n := b.parseBench(gb.pkg, out); n == 0 {
			return fmt.Errorf("benchmarks of ./%s printed no result:\n%s", gb.pkg, out)
		}
	}
	return nil
}

var procSuffix = regexp.MustCompile(`-\d+$`)

// parseBench reads the result lines of `go test -bench` and returns how
// many it found.
func (b *bench) parseBench(pkg string, out []byte) int {
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue
		}
		name := procSuffix.ReplaceAllString(f[0], "")
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			key := pkg + "/" + name + "/" + f[i+1]
			b.res.gobench[key] = append(b.res.gobench[key], v)
		}
		n++
	}
	return n
}
