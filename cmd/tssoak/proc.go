package main

import (
	"bufio"
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
	"time"
)

// proc is the running `tetrascope serve`.
type proc struct {
	cmd       *exec.Cmd
	proxy, ui string
	log       string
	done      chan struct{}
	hc        *http.Client
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startServe runs the binary on loopback with a fresh database in dir and
// waits until /healthz answers.
func startServe(bin, dir string, originPort int, idle time.Duration) (*proc, error) {
	proxyAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	uiAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "serve.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "--listen", proxyAddr, "--ui", uiAddr,
		"--db", filepath.Join(dir, "soak.db"), "--sensor", "soak",
		"--resolve", host+"=127.0.0.1", "--allow-ports", strconv.Itoa(originPort))
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Only this program's settings, and no proxy for anything.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir,
		"TETRASCOPE_TIMEOUTS_IDLE=" + idle.String()}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	p := &proc{cmd: cmd, proxy: proxyAddr, ui: uiAddr, log: logPath, done: make(chan struct{}),
		hc: &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}}
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()

	healthy := waitFor(15*time.Second, func() bool {
		select {
		case <-p.done:
			return true
		default:
		}
		resp, err := p.hc.Get("http://" + uiAddr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	select {
	case <-p.done:
		return nil, fmt.Errorf("tetrascope exited at start; see %s", logPath)
	default:
	}
	if !healthy {
		p.stop()
		return nil, fmt.Errorf("tetrascope not healthy within 15s; see %s", logPath)
	}
	return p, nil
}

// stop ends the process with SIGTERM, or SIGKILL after 30 s.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// metrics returns every sample of GET /metrics, labelled ones summed under
// their name.
func (p *proc) metrics() map[string]float64 {
	out := map[string]float64{}
	resp, err := p.hc.Get("http://" + p.ui + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name = name[:j]
		}
		out[name] += v
	}
	return out
}

func (p *proc) metric(name string) float64 { return p.metrics()[name] }

// sample is the state of the process at one moment.
type sample struct {
	phase               string
	at                  time.Time
	goroutines, threads int
	rss, heap           float64 // bytes
	tunnels, viewers    int
	connections         float64 // connections and requests ended so far
	stored, dropped     float64
	viewersDropped      float64
	// From /proc, beside the process's own figures: descriptors by kind.
	// Pipes are the splice buffers of tunnels, which Go keeps in a pool
	// that the garbage collector empties.
	sockets, pipes, others int
	procThreads            int
	procRSS                float64
}

func (p *proc) sample(phase string) sample {
	m := p.metrics()
	s := sample{
		phase:          phase,
		at:             time.Now(),
		goroutines:     int(m["go_goroutines"]),
		threads:        int(m["go_threads"]),
		rss:            m["process_resident_memory_bytes"],
		heap:           m["go_memstats_heap_inuse_bytes"],
		tunnels:        int(m["tetrascope_open_tunnels"]),
		viewers:        int(m["tetrascope_viewers"]),
		connections:    m["tetrascope_connections_total"],
		stored:         m["tetrascope_events_stored_total"],
		dropped:        m["tetrascope_events_dropped_total"],
		viewersDropped: m["tetrascope_viewers_dropped_total"],
	}
	pid := p.cmd.Process.Pid
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			target, _ := os.Readlink(filepath.Join(dir, e.Name()))
			switch {
			case strings.HasPrefix(target, "socket:"):
				s.sockets++
			case strings.HasPrefix(target, "pipe:"):
				s.pipes++
			default:
				s.others++
			}
		}
	}
	if f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ":")
			fields := strings.Fields(v)
			if len(fields) == 0 {
				continue
			}
			n, _ := strconv.Atoi(fields[0])
			switch k {
			case "Threads":
				s.procThreads = n
			case "VmRSS":
				s.procRSS = float64(n) * 1024
			}
		}
		f.Close()
	}
	fmt.Fprintf(os.Stderr, "tssoak: %-12s goroutines %6d  sockets %5d  pipes %5d  heap %6.1f MiB  "+
		"tunnels %5d\n", phase, s.goroutines, s.sockets, s.pipes, s.heap/(1<<20), s.tunnels)
	return s
}

// silentViewer opens the live stream and never reads it, with a small
// receive buffer, so that the page's buffer for it fills up.
func (p *proc) silentViewer() (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	c, err := d.Dial("tcp", p.ui)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(c, "GET /api/v1/stream?backfill=0 HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"+
		"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"+
		"Sec-WebSocket-Version: 13\r\n\r\n", p.ui)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReaderSize(io.LimitReader(c, 128), 16).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 101") {
		c.Close()
		return nil, fmt.Errorf("stream handshake answered %q (%v)", line, err)
	}
	return c, nil
}
