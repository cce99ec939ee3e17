package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// clockTick is USER_HZ, the unit of the times in /proc/PID/stat; Linux
// fixes it at 100 for user space on every architecture.
const clockTick = 100

// pinning says which processor the proxies and the load run on.
type pinning struct {
	on    bool
	proxy int // processor of the proxy under test (and the Go benchmarks)
	load  int // processor of this process: load and origin
	note  string
}

// pinSelf moves every thread of this process to one processor and sizes the
// Go scheduler to it. Threads created later inherit the mask of the thread
// that creates them, so pinning the ones there are now is enough.
func pinSelf(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("listing threads: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return fmt.Errorf("pinning thread %d to cpu %d: %w", tid, cpu, err)
		}
	}
	runtime.GOMAXPROCS(1)
	return nil
}

// child is a process this program started, in its own process group, so
// that it and everything it forks can be killed at once.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  *bytes.Buffer // stdout and stderr, when not sent to a file
}

var (
	childrenMu sync.Mutex
	children   = map[*child]bool{}
)

// startChild starts argv pinned to cpu (when pin.on) with output to logPath
// (empty: kept in memory).
func startChild(name string, pin pinning, env []string, logPath string,
	argv ...string) (*child, error) {
	if pin.on {
		argv = append([]string{"taskset", "-c", strconv.Itoa(pin.proxy)}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	if logPath != "" {
		f, err := os.Create(logPath)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		cmd.Stdout, cmd.Stderr = f, f
	} else {
		c.log = &bytes.Buffer{}
		cmd.Stdout = &lockedWriter{w: c.log}
		cmd.Stderr = cmd.Stdout
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	childrenMu.Lock()
	children[c] = true
	childrenMu.Unlock()
	go func() {
		_ = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// output returns what the child wrote, when it went to memory.
func (c *child) output() string {
	if lw, ok := c.cmd.Stdout.(*lockedWriter); ok {
		return lw.String()
	}
	return ""
}

// stop sends sig to the child's group, waits up to wait, then kills the
// group.
func (c *child) stop(sig syscall.Signal, wait time.Duration) {
	_ = syscall.Kill(-c.pid(), sig)
	select {
	case <-c.done:
	case <-time.After(wait):
		_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
		<-c.done
	}
	// Anything the child left in its group goes too.
	_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
	childrenMu.Lock()
	delete(children, c)
	childrenMu.Unlock()
}

// killChildren kills every child still running; it is safe to call from a
// signal handler goroutine and at exit.
func killChildren() {
	childrenMu.Lock()
	defer childrenMu.Unlock()
	for c := range children {
		_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
	}
}

// procStat is one sample of a process tree.
type procStat struct {
	cpu time.Duration // user + system of the tree, the reaped children included
	rss int64         // resident set of the tree, bytes
	hwm int64         // peak resident set of the root, bytes
}

// sampleTree reads the processor time and memory of pid and of every
// process descended from it (Squid may fork helpers).
func sampleTree(pid int) (procStat, error) {
	var s procStat
	pids := append([]int{pid}, descendants(pid)...)
	for i, p := range pids {
		f, err := readStat(p)
		if err != nil {
			if i == 0 {
				return s, err
			}
			continue // a helper that just exited
		}
		s.cpu += ticks(f[11] + f[12])
		if i == 0 {
			s.cpu += ticks(f[13] + f[14])
		}
		rss, hwm := readStatus(p)
		s.rss += rss
		if i == 0 {
			s.hwm = hwm
		}
	}
	return s, nil
}

func ticks(n int64) time.Duration { return time.Duration(n) * time.Second / clockTick }

// readStat returns the numeric fields of /proc/PID/stat after the command
// name: index 0 is field 3 (state, read as 0), 1 is ppid, 11 utime, 12
// stime, 13 cutime, 14 cstime.
func readStat(pid int) ([]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 15 {
		return nil, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	out := make([]int64, 15)
	for k := 1; k < 15; k++ {
		out[k], _ = strconv.ParseInt(fields[k], 10, 64)
	}
	return out, nil
}

// readStatus returns VmRSS and VmHWM of pid in bytes.
func readStatus(pid int) (rss, hwm int64) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &rss
		case "VmHWM":
			dst = &hwm
		default:
			continue
		}
		fs := strings.Fields(v)
		if len(fs) > 0 {
			kb, _ := strconv.ParseInt(fs[0], 10, 64)
			*dst = kb << 10
		}
	}
	return rss, hwm
}

// descendants lists the processes below pid.
func descendants(pid int) []int {
	entries, _ := filepath.Glob("/proc/[0-9]*/stat")
	parent := map[int]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(filepath.Base(filepath.Dir(e)))
		if err != nil {
			continue
		}
		f, err := readStat(p)
		if err != nil {
			continue
		}
		parent[p] = int(f[1])
	}
	var out []int
	frontier := []int{pid}
	for len(frontier) > 0 {
		var next []int
		for p, pp := range parent {
			for _, f := range frontier {
				if pp == f {
					out = append(out, p)
					next = append(next, p)
				}
			}
		}
		frontier = next
	}
	return out
}
