package e2e

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeServeEnv, set in a child's environment, makes this test binary act as
// a minimal `serve` so that the process control (serveProc) can be checked
// without the real binary. Its value picks the behaviour: "ok" serves
// /healthz after a short delay and exits 0 on SIGTERM; "badconfig" exits 2
// at once; "stubborn" ignores SIGTERM.
const fakeServeEnv = "E2E_HARNESS_FAKE_SERVE"

// fakeServe is the child's main; it returns the exit status.
func fakeServe(args []string) int {
	mode := os.Getenv(fakeServeEnv)
	if len(args) == 0 || args[0] != "serve" {
		fmt.Fprintln(os.Stderr, "fake serve: want the serve command, got", args)
		return 2
	}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", "", "")
	ui := fs.String("ui", "", "")
	db := fs.String("db", "", "")
	fs.String("sensor", "", "")
	fs.String("allow-ports", "", "")
	fs.String("allow-clients", "", "")
	fs.Func("dns", "", func(string) error { return nil })
	fs.Func("resolve", "", func(string) error { return nil })
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if mode == "badconfig" {
		fmt.Fprintln(os.Stderr, "fake serve: bad config: --db: refused for the test")
		return 2
	}

	// A line per start in the "database" shows that a restart keeps it.
	f, err := os.OpenFile(*db, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake serve:", err)
		return 1
	}
	fmt.Fprintln(f, "start")
	f.Close()

	pl, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake serve:", err)
		return 1
	}
	defer pl.Close()
	ul, err := net.Listen("tcp", *ui)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake serve:", err)
		return 1
	}

	ready := time.Now().Add(300 * time.Millisecond)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if time.Now().Before(ready) {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /args", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(os.Args[1:])
	})
	mux.HandleFunc("GET /env", func(w http.ResponseWriter, r *http.Request) {
		env := map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			if strings.HasSuffix(strings.ToUpper(k), "_PROXY") || strings.HasPrefix(k, "TETRASCOPE_") {
				env[k] = v
			}
		}
		json.NewEncoder(w).Encode(env)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ul)

	fmt.Println("fake serve: listening on", *listen, "and", *ui)
	fmt.Fprintln(os.Stderr, "fake serve: a line on stderr")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	for range sig {
		if mode == "stubborn" {
			fmt.Println("fake serve: ignoring SIGTERM")
			continue
		}
		break
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	fmt.Println("fake serve: stopped")
	return 0
}

// TestHarnessProcess checks serveProc against the fake: arguments, a clean
// environment, the health wait, log capture, SIGTERM, restart with the same
// database, and the failure paths.
func TestHarnessProcess(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("HTTPS_PROXY", "http://127.0.0.1:9")
	t.Setenv("http_proxy", "http://127.0.0.1:9")
	t.Setenv("TETRASCOPE_UPSTREAM_URL", "http://127.0.0.1:9")
	cfg := serveConfig{
		DNS:          []string{"127.0.0.1:5353"},
		Resolve:      []string{hostTetra + "=127.0.0.1", hostCRL + "=127.0.0.1"},
		AllowPorts:   []int{443, 8443},
		AllowClients: []string{"127.0.0.1/32"},
	}

	t.Run("start, restart, stop", func(t *testing.T) {
		p := newServeProc(t, self, cfg, fakeServeEnv+"=ok")
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
		var args []string
		getJSON(t, "http://"+p.UIAddr()+"/args", &args)
		want := []string{"serve", "--listen", p.ProxyAddr(), "--ui", p.UIAddr(), "--db", p.cfg.DB,
			"--sensor", "e2e", "--dns", "127.0.0.1:5353",
			"--resolve", hostTetra + "=127.0.0.1", "--resolve", hostCRL + "=127.0.0.1",
			"--allow-ports", "443,8443", "--allow-clients", "127.0.0.1/32"}
		if strings.Join(args, " ") != strings.Join(want, " ") {
			t.Errorf("args = %q\nwant   %q", args, want)
		}
		var env map[string]string
		getJSON(t, "http://"+p.UIAddr()+"/env", &env)
		for k, v := range env {
			if v != "" || strings.HasPrefix(k, "TETRASCOPE_") {
				t.Errorf("child environment has %s=%q; want proxy variables empty, no TETRASCOPE_*", k, v)
			}
		}
		for _, k := range []string{"HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY"} {
			if _, ok := env[k]; !ok {
				t.Errorf("child environment lacks %s (set empty)", k)
			}
		}

		p.Restart()
		p.Stop()
		db, _ := os.ReadFile(p.cfg.DB)
		if string(db) != "start\nstart\n" {
			t.Errorf("database after a restart = %q, want two starts on the same file", db)
		}
		log, _ := os.ReadFile(p.LogPath)
		for _, s := range []string{
			"=== e2e: start 1:", "=== e2e: start 2:", "a line on stderr", "fake serve: stopped",
		} {
			if n := strings.Count(string(log), s); n == 0 {
				t.Errorf("log lacks %q:\n%s", s, log)
			}
		}
	})

	t.Run("exit before healthy", func(t *testing.T) {
		p := newServeProc(t, self, cfg, fakeServeEnv+"=badconfig")
		err := p.start()
		if err == nil || !strings.Contains(err.Error(), "exit status 2") {
			t.Fatalf("start error = %v, want one naming exit status 2", err)
		}
		if log, _ := os.ReadFile(p.LogPath); !strings.Contains(string(log), "bad config") {
			t.Errorf("log lacks the child's message:\n%s", log)
		}
	})

	t.Run("SIGTERM ignored", func(t *testing.T) {
		p := newServeProc(t, self, cfg, fakeServeEnv+"=stubborn")
		p.stopTimeout = 500 * time.Millisecond
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
		err := p.stop()
		if err == nil || !strings.Contains(err.Error(), "did not exit") {
			t.Fatalf("stop error = %v, want a timeout", err)
		}
		if p.running() {
			t.Fatal("still running after stop")
		}
	})

	t.Run("artifacts", func(t *testing.T) {
		root := t.TempDir()
		src := filepath.Join(t.TempDir(), "serve.log")
		os.WriteFile(src, []byte("log line\n"), 0o644)
		dir, err := keepArtifacts(root, "TestServe/sub case", src)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "serve.log")); string(b) != "log line\n" {
			t.Errorf("kept log = %q", b)
		}
		if filepath.Dir(dir) != root {
			t.Errorf("artifacts dir %s is not directly under %s", dir, root)
		}
	})
}

// getJSON GETs u (no proxy) and decodes a 200 answer into v.
func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: decoding: %v", u, err)
	}
}
