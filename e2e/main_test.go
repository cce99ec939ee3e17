// Package e2e tests the tetrascope binary from the outside: it builds
// cmd/tetrascope once, runs `tetrascope serve` against servers, a DNS server
// and a certificate authority that the tests start on loopback, drives it
// with real curl and small Go clients, and checks what the HTTP API and the
// websocket stream report.
//
// The harness pieces (DNS server, PKI, TLS and revocation servers, curl
// runner, API and stream clients, process control) each have a self-test
// named TestHarness*, which needs no binary. The tests that need the binary
// are named TestServe*; when the build fails they fail with its output.
//
// No test uses the system resolver for a test name and no traffic leaves
// 127.0.0.0/8.
//
// Run everything with `go test ./e2e/` from the module root (add -v to see
// each case), only the self-tests with `go test -run TestHarness ./e2e/`.
// The tests need curl and other loopback source addresses: 127.0.0.3 for
// the denied-client case, 127.0.0.21-31 for one client per Squid case (any
// 127/8 address works on Linux); without them they
// skip on a developer machine and fail when CI=true. The store fault tests
// (faults_test.go) mount a small tmpfs and use chattr, which need root,
// with the same rule. When a test fails, the serve log and database are
// kept under e2e/artifacts/<test name>/.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// buildTimeout bounds `go build` of the binary; the first build compiles
// go-sqlite3's C code and takes a minute or two on a small machine.
const buildTimeout = 5 * time.Minute

var (
	// binPath is the built tetrascope binary; empty when the build failed.
	binPath string
	// buildErr holds the build failure with go build's output.
	buildErr error
	// moduleRoot is the directory holding the project's go.mod.
	moduleRoot string
)

func TestMain(m *testing.M) {
	// The process-control self-test runs this test binary as a stand-in
	// for `tetrascope serve`; see fakeserve_test.go.
	if os.Getenv(fakeServeEnv) != "" {
		os.Exit(fakeServe(os.Args[1:]))
	}

	tmp, err := os.MkdirTemp("", "tetrascope-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: creating build dir:", err)
		os.Exit(1)
	}
	binPath, buildErr = buildBinary(tmp)

	code := m.Run()
	os.RemoveAll(tmp)
	os.Exit(code)
}

// buildBinary builds ./cmd/tetrascope from the module root into dir.
func buildBinary(dir string) (string, error) {
	root, err := findModuleRoot()
	if err != nil {
		return "", err
	}
	moduleRoot = root

	out := filepath.Join(dir, "tetrascope")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/tetrascope")
	cmd.Dir = root
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/tetrascope (in %s): %v\n%s", root, err, buf.String())
	}
	return out, nil
}

// findModuleRoot walks up from the working directory (the e2e directory
// under go test) to the directory holding go.mod.
func findModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding module root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("finding module root: no go.mod above the e2e directory")
		}
		dir = parent
	}
}

// needBinary returns the built binary, failing the test (never skipping)
// with the build output when the build failed.
func needBinary(t *testing.T) string {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("the tetrascope binary did not build:\n%v", buildErr)
	}
	return binPath
}

// inCI reports whether the tests run in CI, where a missing tool is a
// failure rather than a reason to skip.
func inCI() bool { return os.Getenv("CI") == "true" }

// requireTool returns the path of an external program, skipping the test
// when it is missing on a developer machine and failing it in CI.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if inCI() {
		t.Fatalf("%s is required in CI and was not found: %v", name, err)
	}
	t.Skipf("%s not found (%v); install it to run this test", name, err)
	return ""
}

// artifactsDir is where logs of failed tests are kept, relative to the e2e
// directory; the path is git-ignored.
const artifactsDir = "artifacts"

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// keepArtifacts copies files into root/<test name>/ and returns that
// directory. Tests call it only when they failed.
func keepArtifacts(root, testName string, files ...string) (string, error) {
	dir := filepath.Join(root, unsafeName.ReplaceAllString(testName, "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("keeping artifacts: %w", err)
	}
	for _, f := range files {
		if err := copyFile(f, filepath.Join(dir, filepath.Base(f))); err != nil {
			return "", fmt.Errorf("keeping artifacts: %w", err)
		}
	}
	return dir, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// waitFor polls cond every interval until it returns true or timeout
// passes, and reports whether it did.
func waitFor(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

// childEnv returns the environment for child processes: the test's own,
// with every proxy variable set empty so that neither the binary nor curl
// sends test traffic anywhere but where the test says, and without
// TETRASCOPE_* variables, which would change the binary's configuration.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		upper := strings.ToUpper(name)
		switch upper {
		case "HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY":
			continue
		}
		if strings.HasPrefix(upper, "TETRASCOPE_") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HTTPS_PROXY=", "HTTP_PROXY=", "ALL_PROXY=", "NO_PROXY=",
		"https_proxy=", "http_proxy=", "all_proxy=", "no_proxy=")
	return append(env, extra...)
}
