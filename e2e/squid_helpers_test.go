package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/md5"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Helpers for the Squid cases: a real Squid on loopback, a DNS server on
// port 53 (Squid sends its queries to no other port), an htpasswd file
// Squid's basic_ncsa_auth and tetrascope both read, a slow origin, and a
// `tetrascope tail` process.

// squidStopTimeout bounds Squid's shutdown after SIGTERM; its
// shutdown_lifetime is one second.
const squidStopTimeout = 10 * time.Second

// squidLogFormat is the custom format the second access log is written in:
// the native fields plus the error code and detail, the next hop's status
// and the request size.
const squidLogFormat = `%ts.%03tu %6tr %>a %Ss/%03>Hs %<st %rm %ru %[un %Sh/%<a %mt ` +
	`%err_code %err_detail %<Hs %>st`

// requireSquid returns the squid binary, skipping the test when it is
// missing on a developer machine and failing it in CI.
func requireSquid(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("squid"); err == nil {
		return p
	}
	const debian = "/usr/sbin/squid"
	if _, err := os.Stat(debian); err == nil {
		return debian
	}
	if inCI() {
		t.Fatal("squid is required in CI and was not found (scripts/deps installs it)")
	}
	t.Skip("squid not found; install it (scripts/deps) to run this test")
	return ""
}

// dnsAddrs53 are the loopback addresses tried for a DNS server on port 53;
// 127.0.0.53 and .54 are avoided because systemd-resolved takes them.
var dnsAddrs53 = []string{"127.0.0.153", "127.0.0.154", "127.0.0.155", "127.0.0.156"}

// startDNS53 starts the harness's DNS server on port 53 of a free loopback
// address, for Squid. Binding port 53 needs root (or the capability): the
// test skips without it on a developer machine and fails in CI.
func startDNS53(t *testing.T, aNames, nxNames []string) *dnsServer {
	t.Helper()
	s := &dnsServer{names: map[string]net.IP{}, queries: map[string]int{}}
	for _, n := range aNames {
		s.names[dns.Fqdn(strings.ToLower(n))] = net.IPv4(127, 0, 0, 1)
	}
	var pc net.PacketConn
	var ln net.Listener
	var lastErr error
	for _, a := range dnsAddrs53 {
		addr := net.JoinHostPort(a, "53")
		p, err := net.ListenPacket("udp4", addr)
		if err != nil {
			lastErr = err
			continue
		}
		l, err := net.Listen("tcp4", addr)
		if err != nil {
			p.Close()
			lastErr = err
			continue
		}
		pc, ln = p, l
		break
	}
	if pc == nil {
		if inCI() {
			t.Fatalf("no loopback address free for a DNS server on port 53: %v", lastErr)
		}
		t.Skipf("cannot listen on port 53 for Squid's DNS (%v); run as root", lastErr)
	}
	s.run(t, pc, ln)
	return s
}

// apr1 hashes a password the way Apache's htpasswd -m does ($apr1$, MD5
// crypt), which both basic_ncsa_auth and tetrascope accept.
func apr1(password, salt string) string {
	const magic = "$apr1$"
	pw := []byte(password)
	alt := md5.Sum([]byte(password + salt + password))
	ctx := []byte(password + magic + salt)
	for i := len(pw); i > 0; i -= 16 {
		ctx = append(ctx, alt[:min(i, 16)]...)
	}
	for i := len(pw); i > 0; i >>= 1 {
		if i&1 != 0 {
			ctx = append(ctx, 0)
		} else {
			ctx = append(ctx, pw[0])
		}
	}
	final := md5.Sum(ctx)
	for i := range 1000 {
		var c []byte
		if i&1 != 0 {
			c = append(c, pw...)
		} else {
			c = append(c, final[:]...)
		}
		if i%3 != 0 {
			c = append(c, salt...)
		}
		if i%7 != 0 {
			c = append(c, pw...)
		}
		if i&1 != 0 {
			c = append(c, final[:]...)
		} else {
			c = append(c, pw...)
		}
		final = md5.Sum(c)
	}
	const itoa64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var out []byte
	put := func(v uint32, n int) {
		for ; n > 0; n-- {
			out = append(out, itoa64[v&0x3f])
			v >>= 6
		}
	}
	three := func(a, b, c int) uint32 {
		return uint32(final[a])<<16 | uint32(final[b])<<8 | uint32(final[c])
	}
	put(three(0, 6, 12), 4)
	put(three(1, 7, 13), 4)
	put(three(2, 8, 14), 4)
	put(three(3, 9, 15), 4)
	put(three(4, 10, 5), 4)
	put(uint32(final[11]), 2)
	return magic + salt + "$" + string(out)
}

// writeHtpasswd writes one user with an $apr1$ hash and a random salt.
func writeHtpasswd(t *testing.T, path, user, password string) {
	t.Helper()
	const itoa64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var salt [8]byte
	rand.Read(salt[:])
	for i := range salt {
		salt[i] = itoa64[int(salt[i])%len(itoa64)]
	}
	line := user + ":" + apr1(password, string(salt[:])) + "\n"
	if err := os.WriteFile(path, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
}

// startSlowServer starts a plain-HTTP origin that announces a large body
// and sends it slowly, so that a client with a short --max-time gives up
// mid-download. It stops when the test ends.
func startSlowServer(t *testing.T) *httptest.Server {
	t.Helper()
	const size = 64 << 20
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(size))
		chunk := make([]byte, 16<<10)
		deadline := time.Now().Add(15 * time.Second)
		for sent := 0; sent < size && time.Now().Before(deadline); sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// squidConfig is what a test Squid is set up with.
type squidConfig struct {
	DNS        string // the DNS server's address; Squid queries its port 53
	Htpasswd   string // users for basic authentication
	SSLPorts   []int  // ports a CONNECT may reach
	AuthDomain string // a domain that needs authentication
	DenyDomain string // a domain refused by http_access
	// AuthAll makes every request that the port and domain policy let
	// through authenticate, as serve --htpasswd does; AuthDomain is then
	// moot.
	AuthAll bool
	Clients string // the source range allowed; empty: 127.0.0.1/32
}

// squidProc is a Squid started by a test: listening on a free loopback
// port, writing two access logs (the native format and squidLogFormat)
// under a directory the proxy user can write.
type squidProc struct {
	Addr      string
	Dir       string
	NativeLog string
	CustomLog string
	CacheLog  string

	t      *testing.T
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
	out    *bytes.Buffer
}

// startSquid writes a squid.conf for cfg and starts Squid in the
// foreground. It is stopped when the test ends, whatever happens.
func startSquid(t *testing.T, bin string, cfg squidConfig) *squidProc {
	t.Helper()
	// Not t.TempDir: its parent is private to root, and Squid drops to the
	// proxy user, which must reach its logs.
	dir, err := os.MkdirTemp("", "tetrascope-squid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	s := &squidProc{
		Addr:      fmt.Sprintf("127.0.0.1:%d", port),
		Dir:       dir,
		NativeLog: filepath.Join(dir, "access.log"),
		CustomLog: filepath.Join(dir, "access-custom.log"),
		CacheLog:  filepath.Join(dir, "cache.log"),
		t:         t,
		out:       &bytes.Buffer{},
	}

	var ports []string
	for _, p := range cfg.SSLPorts {
		ports = append(ports, strconv.Itoa(p))
	}
	dnsHost, _, err := net.SplitHostPort(cfg.DNS)
	if err != nil {
		t.Fatal(err)
	}
	// The helper runs as the proxy user too: give it its own copy.
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := copyFile(cfg.Htpasswd, htpasswd); err != nil {
		t.Fatal(err)
	}
	// The port and domain policy first: serve too checks its ports before
	// credentials.
	access := []string{"http_access deny CONNECT !SSL_ports", "http_access deny blocked"}
	switch {
	case cfg.AuthAll:
		access = append(access, "http_access deny !authed")
	case cfg.AuthDomain != "":
		access = append(access, "acl needauth dstdomain "+cfg.AuthDomain,
			"http_access deny needauth !authed")
	}
	access = append(access, "http_access allow clients", "http_access deny all")
	conf := strings.Join(append([]string{
		"http_port " + s.Addr,
		"visible_hostname tetrascope-e2e",
		"pid_filename " + filepath.Join(dir, "squid.pid"),
		"cache_log " + s.CacheLog,
		"cache_store_log none",
		"coredump_dir " + dir,
		"netdb_filename none",
		"logfile_rotate 0",
		"logformat tetrascope " + squidLogFormat,
		"access_log stdio:" + s.NativeLog + " squid",
		"access_log stdio:" + s.CustomLog + " tetrascope",
		"cache deny all",
		"cache_mem 8 MB",
		"dns_nameservers " + dnsHost,
		"hosts_file none",
		"dns_timeout 5 seconds",
		"connect_timeout 5 seconds",
		"pinger_enable off",
		"shutdown_lifetime 1 seconds",
		"auth_param basic program /usr/lib/squid/basic_ncsa_auth " + htpasswd,
		"auth_param basic realm tetrascope-e2e",
		"acl clients src " + cmp.Or(cfg.Clients, "127.0.0.1/32"),
		"acl SSL_ports port " + strings.Join(ports, " "),
		"acl CONNECT method CONNECT",
		"acl blocked dstdomain " + cfg.DenyDomain,
		"acl authed proxy_auth REQUIRED",
	}, access...), "\n") + "\n"
	confPath := filepath.Join(dir, "squid.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// As root Squid drops to cache_effective_user (proxy on Debian):
		// its logs must be writable by that user.
		if u, err := user.Lookup("proxy"); err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			for _, p := range []string{dir, htpasswd} {
				if err := os.Chown(p, uid, gid); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	s.cmd = exec.Command(bin, "-N", "-f", confPath)
	s.cmd.Dir = dir
	s.cmd.Env = childEnv()
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("starting squid: %v", err)
	}
	s.exited = make(chan struct{})
	go func() {
		s.err = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(s.cleanup)

	ready := waitFor(15*time.Second, 50*time.Millisecond, func() bool {
		select {
		case <-s.exited:
			return true
		default:
		}
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	select {
	case <-s.exited:
		t.Fatalf("squid exited at start: %v\n%s\ncache.log:\n%s", s.err, s.out, tailFile(s.CacheLog, logTail))
	default:
	}
	if !ready {
		t.Fatalf("squid did not listen on %s within 15s\ncache.log:\n%s", s.Addr, tailFile(s.CacheLog, logTail))
	}
	return s
}

// Stop shuts Squid down (SIGTERM, then SIGKILL after squidStopTimeout) and
// waits for it; the access logs are complete afterwards.
func (s *squidProc) Stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(squidStopTimeout):
		s.cmd.Process.Kill()
		<-s.exited
		s.t.Errorf("squid did not stop within %v of SIGTERM; killed", squidStopTimeout)
	}
}

func (s *squidProc) cleanup() {
	s.Stop()
	if !s.t.Failed() {
		return
	}
	s.t.Logf("squid output:\n%s\ncache.log (last %d KiB):\n%s", s.out, logTail>>10,
		tailFile(s.CacheLog, logTail))
	if dir, err := keepArtifacts(artifactsDir, s.t.Name()+"-squid", s.NativeLog, s.CustomLog,
		s.CacheLog, filepath.Join(s.Dir, "squid.conf")); err == nil {
		s.t.Logf("squid logs kept in e2e/%s", dir)
	}
}

// startTail runs `tetrascope tail` with args (after the subcommand) and the
// harness's process control: the UI address, database and sensor of cfg,
// a log kept on failure, SIGTERM to stop.
func startTail(t *testing.T, cfg serveConfig, args ...string) *serveProc {
	t.Helper()
	p := newServeProc(t, needBinary(t), cfg)
	if err := startTailProc(p, args...); err != nil {
		t.Fatal(err)
	}
	return p
}

// startTailProc starts (or starts again, on the same database) the tail
// command of p and waits until it is healthy.
func startTailProc(p *serveProc, args ...string) error {
	if p.running() {
		return errors.New("tail: already running")
	}
	if p.logf == nil {
		f, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("tail: opening log: %w", err)
		}
		p.logf = f
	}
	p.starts++
	full := append([]string{"tail", "--ui", p.cfg.UI, "--db", p.cfg.DB, "--sensor", p.cfg.Sensor},
		args...)
	fmt.Fprintf(p.logf, "=== e2e: start %d: %s %s\n", p.starts, p.bin, strings.Join(full, " "))
	cmd := exec.Command(p.bin, full...)
	cmd.Dir = p.dir
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = p.logf, p.logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("tail: starting %s: %w", p.bin, err)
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
		return fmt.Errorf("tail: %w; log:\n%s", err, tailFile(p.LogPath, 4<<10))
	}
	return nil
}

// rawExchangeFrom writes payload to addr from the local address from (any,
// when empty) and returns the first line of the answer, without its line
// ending.
func rawExchangeFrom(from, addr, payload string) (string, error) {
	d := net.Dialer{Timeout: clientTimeout}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("dialing from %q: %w", from, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(clientTimeout))
	if _, err := io.WriteString(c, payload); err != nil {
		return "", fmt.Errorf("writing: %w", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("reading the first line (got %q): %w", line, err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}
