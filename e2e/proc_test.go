package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// healthTimeout bounds the wait for GET /healthz to answer 200.
	healthTimeout = 10 * time.Second
	// stopTimeout bounds the wait for exit after SIGTERM; the binary's
	// default shutdown grace is 10 s and the tests leave nothing open.
	stopTimeout = 15 * time.Second
	// logTail is how much of the log a failed test prints.
	logTail = 64 << 10
)

// serveConfig is the command line of one `tetrascope serve`.
type serveConfig struct {
	Listen, UI   string // host:port of the proxy and of the UI
	DB           string // empty: t.db in the process's directory
	Sensor       string
	DNS          []string // --dns, host:port
	Resolve      []string // --resolve, HOST=IP
	AllowPorts   []int    // --allow-ports
	AllowClients []string // --allow-clients, CIDRs
	Config       string   // --config file; empty: none
}

// args returns the command-line arguments, list flags comma-separated.
func (c serveConfig) args() []string {
	a := []string{"serve", "--listen", c.Listen, "--ui", c.UI, "--db", c.DB, "--sensor", c.Sensor}
	for _, d := range c.DNS {
		a = append(a, "--dns", d)
	}
	for _, r := range c.Resolve {
		a = append(a, "--resolve", r)
	}
	if len(c.AllowPorts) > 0 {
		ps := make([]string, len(c.AllowPorts))
		for i, p := range c.AllowPorts {
			ps[i] = strconv.Itoa(p)
		}
		a = append(a, "--allow-ports", strings.Join(ps, ","))
	}
	if len(c.AllowClients) > 0 {
		a = append(a, "--allow-clients", strings.Join(c.AllowClients, ","))
	}
	if c.Config != "" {
		a = append(a, "--config", c.Config)
	}
	return a
}

// serveProc runs one `serve` process, and again after Restart, with the same
// arguments and database. Its stdout and stderr go to one log file under
// the test's temporary directory; when the test fails, the log is printed
// and kept under e2e/artifacts/<test name>/.
type serveProc struct {
	t           *testing.T
	bin         string
	cfg         serveConfig
	env         []string
	dir         string
	LogPath     string
	stopTimeout time.Duration

	cmd    *exec.Cmd
	logf   *os.File
	exited chan struct{}
	err    error // from Wait, valid once exited is closed
	starts int
}

// newServeProc prepares a process without starting it. Listen and UI
// default to free loopback ports.
func newServeProc(t *testing.T, bin string, cfg serveConfig, extraEnv ...string) *serveProc {
	t.Helper()
	dir := t.TempDir()
	if cfg.Listen == "" {
		cfg.Listen = freeAddr(t)
	}
	if cfg.UI == "" {
		cfg.UI = freeAddr(t)
	}
	if cfg.DB == "" {
		cfg.DB = filepath.Join(dir, "t.db")
	}
	if cfg.Sensor == "" {
		cfg.Sensor = "e2e"
	}
	if len(cfg.DNS) == 0 {
		// Never the system resolver: a name a test did not map fails at
		// once against a loopback port where no DNS server listens.
		cfg.DNS = []string{"127.0.0.1:9"}
	}
	p := &serveProc{
		t: t, bin: bin, cfg: cfg, env: childEnv(extraEnv...), dir: dir,
		LogPath: filepath.Join(dir, "serve.log"), stopTimeout: stopTimeout,
	}
	// Registered after TempDir, so it runs before the directory goes.
	t.Cleanup(p.cleanup)
	return p
}

// startServe starts the binary with cfg and waits until it is healthy.
func startServe(t *testing.T, cfg serveConfig) *serveProc {
	t.Helper()
	p := newServeProc(t, needBinary(t), cfg)
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	return p
}

// ProxyAddr and UIAddr are the loopback addresses the process listens on.
func (p *serveProc) ProxyAddr() string { return p.cfg.Listen }
func (p *serveProc) UIAddr() string    { return p.cfg.UI }

// start runs the process and waits for GET /healthz to answer 200. On an
// error the process is not running.
func (p *serveProc) start() error {
	if p.running() {
		return errors.New("serve: already running")
	}
	if p.logf == nil {
		f, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("serve: opening log: %w", err)
		}
		p.logf = f
	}
	p.starts++
	args := p.cfg.args()
	fmt.Fprintf(p.logf, "=== e2e: start %d: %s %s\n", p.starts, p.bin, strings.Join(args, " "))

	cmd := exec.Command(p.bin, args...)
	cmd.Dir = p.dir // so that no config file in the e2e directory is picked up
	cmd.Env = p.env
	cmd.Stdout = p.logf
	cmd.Stderr = p.logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("serve: starting %s: %w", p.bin, err)
	}
	p.cmd = cmd
	exited := make(chan struct{})
	p.exited = exited
	go func() {
		p.err = cmd.Wait()
		close(exited)
	}()

	if err := p.waitHealthy(); err != nil {
		p.kill()
		return fmt.Errorf("serve: %w; log: %s", err, p.LogPath)
	}
	return nil
}

// waitHealthy polls GET /healthz until it answers 200, the process exits,
// or healthTimeout passes.
func (p *serveProc) waitHealthy() error {
	c := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: time.Second}
	u := "http://" + p.cfg.UI + "/healthz"
	deadline := time.Now().Add(healthTimeout)
	last := "no answer"
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("exited before it was healthy: %v", p.err)
		default:
		}
		resp, err := c.Get(u)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s %q", resp.Status, b)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("GET %s not 200 within %v (last: %s)", u, healthTimeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *serveProc) running() bool {
	if p.exited == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits for the exit. It returns an error when the
// process did not exit within stopTimeout (it is then killed) or exited
// with a non-zero status.
func (p *serveProc) stop() error {
	if !p.running() {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("serve: sending SIGTERM: %w", err)
	}
	select {
	case <-p.exited:
	case <-time.After(p.stopTimeout):
		p.kill()
		return fmt.Errorf("serve: did not exit within %v of SIGTERM; killed", p.stopTimeout)
	}
	if p.err != nil {
		return fmt.Errorf("serve: after SIGTERM: %w", p.err)
	}
	return nil
}

// kill ends the process (this test's own child, by its id) and waits.
func (p *serveProc) kill() {
	if !p.running() {
		return
	}
	p.cmd.Process.Kill()
	<-p.exited
}

// Stop stops the process, failing the test when it does not exit cleanly.
func (p *serveProc) Stop() {
	p.t.Helper()
	if err := p.stop(); err != nil {
		p.t.Fatal(err)
	}
}

// Restart stops the process and starts it again with the same arguments
// and database.
func (p *serveProc) Restart() {
	p.t.Helper()
	p.Stop()
	if err := p.start(); err != nil {
		p.t.Fatal(err)
	}
}

func (p *serveProc) cleanup() {
	p.kill()
	if p.logf != nil {
		p.logf.Close()
	}
	if !p.t.Failed() {
		return
	}
	p.t.Logf("serve log (%s), last %d KiB:\n%s", p.LogPath, logTail>>10, tailFile(p.LogPath, logTail))
	files := []string{p.LogPath}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if _, err := os.Stat(p.cfg.DB + suffix); err == nil {
			files = append(files, p.cfg.DB+suffix)
		}
	}
	if dir, err := keepArtifacts(artifactsDir, p.t.Name(), files...); err != nil {
		p.t.Log(err)
	} else {
		p.t.Logf("serve log and database kept in e2e/%s", dir)
	}
}

// tailFile returns up to the last n bytes of a file, or a note why not.
func tailFile(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		f.Seek(st.Size()-n, io.SeekStart)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", freePort(t))
}

// freePort returns a loopback TCP port that was free a moment ago; nothing
// listens on it after the call.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
