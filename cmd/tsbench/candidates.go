package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The candidates, in the order of the table.
const (
	candDirect     = "direct"
	candRelay      = "relay"
	candTetrascope = "tetrascope"
	candSquid      = "squid"
)

var allCandidates = []string{candDirect, candRelay, candTetrascope, candSquid}

// readyWait bounds the start of a proxy.
const readyWait = 30 * time.Second

// proxyProc is a running proxy under test.
type proxyProc struct {
	name  string
	addr  string // the proxy's host:port
	ui    string // tetrascope only: the UI's host:port
	db    string // tetrascope only
	dir   string
	child *child
}

func (p *proxyProc) target() target { return target{proxy: p.addr} }

func (p *proxyProc) sample() (procStat, error) { return sampleTree(p.child.pid()) }

func (p *proxyProc) stop() {
	switch p.name {
	case candTetrascope:
		p.child.stop(syscall.SIGTERM, 20*time.Second)
	case candSquid:
		// Squid's shutdown waits shutdown_lifetime and more; nothing
		// of it is measured.
		p.child.stop(syscall.SIGKILL, 5*time.Second)
	default:
		p.child.stop(syscall.SIGTERM, 5*time.Second)
	}
}

// freePort returns a loopback port nobody listens on now. It never returns
// 3128, the port of any proxy the machine may run for real.
func freePort() (int, error) {
	for range 10 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if p != 3128 {
			return p, nil
		}
	}
	return 0, errors.New("no free port")
}

// childEnv is this process's environment without proxy settings and
// without tetrascope's own variables, which would change what is measured.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		u := strings.ToUpper(k)
		if strings.HasSuffix(u, "_PROXY") || strings.HasPrefix(u, "TETRASCOPE_") ||
			u == "GOMAXPROCS" || u == "GOGC" || u == "GOMEMLIMIT" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// waitReady polls until check succeeds, the child exits or readyWait
// passes.
func waitReady(c *child, logPath string, check func() error) error {
	deadline := time.Now().Add(readyWait)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if c.exited() || time.Now().After(deadline) {
			return fmt.Errorf("%s did not start (%v); log:\n%s", c.name, err, tail(c, logPath))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(c *child, logPath string) string {
	out := c.output()
	if logPath != "" {
		b, _ := os.ReadFile(logPath)
		out = string(b)
	}
	if len(out) > 4000 {
		out = out[len(out)-4000:]
	}
	return out
}

func dialCheck(addr string) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// startRelay starts the bare relay: this program again, as `tsbench relay`.
func (b *bench) startRelay(dir string) (*proxyProc, error) {
	p, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	c, err := startChild(candRelay, b.pin, childEnv(), "", b.self, "relay", "-listen", addr)
	if err != nil {
		return nil, err
	}
	pp := &proxyProc{name: candRelay, addr: addr, dir: dir, child: c}
	if err := waitReady(c, "", dialCheck(addr)); err != nil {
		pp.stop()
		return nil, err
	}
	return pp, nil
}

// startTetrascope starts `tetrascope serve` with a fresh database, the
// origin's ports allowed for CONNECT and the scenario names resolved to
// loopback. --dns points at a loopback port where nothing answers, so that
// no lookup can leave the machine.
func (b *bench) startTetrascope(dir string) (*proxyProc, error) {
	p, err := freePort()
	if err != nil {
		return nil, err
	}
	u, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	ui := net.JoinHostPort("127.0.0.1", strconv.Itoa(u))
	db := filepath.Join(dir, "tetrascope.db")
	logPath := filepath.Join(dir, "tetrascope.log")
	o := b.origin
	args := []string{b.tetrascope, "serve",
		"--listen", addr, "--ui", ui, "--db", db, "--sensor", "tsbench",
		"--allow-clients", "127.0.0.0/8",
		"--allow-ports", fmt.Sprintf("%d,%d,%d", port(o.bulk), port(o.cycle), port(o.idle)),
		"--dns", "127.0.0.1:9",
		"--log-level", "warn",
	}
	for _, h := range []string{hostBulk, hostCycle, hostIdle, hostGet} {
		args = append(args, "--resolve", h+"=127.0.0.1")
	}
	c, err := startChild(candTetrascope, b.pin, childEnv(), logPath, args...)
	if err != nil {
		return nil, err
	}
	pp := &proxyProc{name: candTetrascope, addr: addr, ui: ui, db: db, dir: dir, child: c}
	err = waitReady(c, logPath, func() error {
		if err := dialCheck(addr)(); err != nil {
			return err
		}
		resp, err := http.Get("http://" + ui + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("healthz answered %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		pp.stop()
		return nil, err
	}
	return pp, nil
}

// squidConf is Squid's configuration for the benchmark: loopback only, no
// cache, the access log written to a file as Squid records its own
// traffic, names from our hosts file, DNS to a loopback address.
const squidConf = `http_port 127.0.0.1:%d
http_access allow all
cache deny all
access_log stdio:%[2]s/access.log
cache_log %[2]s/cache.log
cache_store_log none
pid_filename %[2]s/squid.pid
coredump_dir %[2]s
netdb_filename none
cache_effective_user proxy
hosts_file %[2]s/hosts
dns_nameservers 127.0.0.1
pinger_enable off
shutdown_lifetime 1 seconds
max_filedescriptors 20000
logfile_rotate 0
`

// startSquid starts Squid in the foreground (-N) with a generated
// configuration in dir, which is given to the proxy user that Squid runs as.
func (b *bench) startSquid(dir string) (*proxyProc, error) {
	p, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
	conf := filepath.Join(dir, "squid.conf")
	names := []string{"localhost", hostBulk, hostCycle, hostIdle, hostGet}
	hosts := "127.0.0.1 " + strings.Join(names, " ") + "\n"
	if err := os.WriteFile(filepath.Join(dir, "hosts"), []byte(hosts), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(squidConf, p, dir)), 0o644); err != nil {
		return nil, err
	}
	if err := chownTo(dir, "proxy"); err != nil {
		return nil, err
	}
	c, err := startChild(candSquid, b.pin, childEnv(), filepath.Join(dir, "squid.out"),
		b.squid, "-N", "-f", conf)
	if err != nil {
		return nil, err
	}
	pp := &proxyProc{name: candSquid, addr: addr, dir: dir, child: c}
	if err := waitReady(c, filepath.Join(dir, "cache.log"), dialCheck(addr)); err != nil {
		pp.stop()
		return nil, err
	}
	return pp, nil
}

// chownTo gives dir and what it holds to user name, when running as root
// (Squid drops to that user and must write its logs there).
func chownTo(dir, name string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("squid runs as %q: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(p, uid, gid)
	})
}

// lastEventID returns the id of the newest stored event, 0 when none.
func lastEventID(ui string) (int64, error) {
	evs, err := queryEvents(ui, url.Values{"limit": {"1"}})
	if err != nil || len(evs) == 0 {
		return 0, err
	}
	return evs[0].ID, nil
}

type storedEvent struct {
	ID      int64  `json:"id"`
	Outcome string `json:"outcome"`
	Close   string `json:"close"`
}

func queryEvents(ui string, q url.Values) ([]storedEvent, error) {
	resp, err := http.Get("http://" + ui + "/api/v1/events?" + q.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 500))
		return nil, fmt.Errorf("/api/v1/events answered %s: %s", resp.Status, b)
	}
	var out struct {
		Events []storedEvent `json:"events"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("decoding /api/v1/events: %w", err)
	}
	return out.Events, nil
}

// storedCount pages through the events of host newer than after, newest
// first, and counts them and their outcomes.
func storedCount(ui, host string, after int64) (total int, outcomes map[string]int, err error) {
	outcomes = map[string]int{}
	before := int64(0)
	for range 10000 {
		q := url.Values{"host": {host}, "after": {strconv.FormatInt(after, 10)},
			"limit": {"10000"}}
		if before > 0 {
			q.Set("before", strconv.FormatInt(before, 10))
		}
		evs, err := queryEvents(ui, q)
		if err != nil {
			return total, outcomes, err
		}
		if len(evs) == 0 {
			return total, outcomes, nil
		}
		for _, e := range evs {
			total++
			outcomes[e.Outcome]++
			if before == 0 || e.ID < before {
				before = e.ID
			}
		}
	}
	return total, outcomes, errors.New("too many pages of events")
}

// waitStored waits until the count of stored events of host stops growing
// (the pipeline has flushed), then returns it.
func waitStored(ui, host string, after int64, want int) (int, map[string]int, error) {
	last := -1
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, outcomes, err := storedCount(ui, host, after)
		if err != nil {
			return n, outcomes, err
		}
		if n >= want || n == last || time.Now().After(deadline) {
			return n, outcomes, nil
		}
		last = n
		time.Sleep(500 * time.Millisecond)
	}
}

// writeLock holds SQLite's write lock on a database through the sqlite3
// program, which stalls every writer of it: tetrascope's store.
type writeLock struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

func lockDatabase(db string) (*writeLock, error) {
	cmd := exec.Command("sqlite3", db)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting sqlite3: %w", err)
	}
	l := &writeLock{cmd: cmd, stdin: in}
	if _, err := io.WriteString(in,
		".timeout 10000\nBEGIN IMMEDIATE;\nSELECT 'locked';\n"); err != nil {
		l.release()
		return nil, err
	}
	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		got <- strings.TrimSpace(line)
	}()
	select {
	case line := <-got:
		if line != "locked" {
			l.release()
			return nil, fmt.Errorf("sqlite3 could not lock the database: %q", line)
		}
	case <-time.After(15 * time.Second):
		l.release()
		return nil, errors.New("sqlite3 did not lock the database in time")
	}
	return l, nil
}

func (l *writeLock) release() {
	_, _ = io.WriteString(l.stdin, "ROLLBACK;\n.quit\n")
	_ = l.stdin.Close()
	done := make(chan struct{})
	go func() { _ = l.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-l.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}
