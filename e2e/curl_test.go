package e2e

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// curlTimeout bounds one curl run (curl's own --max-time is a little
// shorter, so curl reports a timeout itself first).
const curlTimeout = 15 * time.Second

// curlResult is what one curl run reported.
type curlResult struct {
	Exit        int    // curl's exit status; 0 on success
	HTTPCode    int    // %{http_code}: the last response's status, 0 if none
	ConnectCode int    // %{http_connect}: the proxy's answer to CONNECT, 0 if none
	SizeDown    int64  // %{size_download}: body bytes received
	Stderr      string // curl's error message (-sS)
	Args        []string
}

func (r curlResult) String() string {
	return "curl " + strings.Join(r.Args, " ") + ": exit " + strconv.Itoa(r.Exit) +
		", http_code " + strconv.Itoa(r.HTTPCode) + ", http_connect " + strconv.Itoa(r.ConnectCode) +
		", size_download " + strconv.FormatInt(r.SizeDown, 10) + ", stderr " + strconv.Quote(r.Stderr)
}

// runCurl runs curl with args after a fixed prefix: ignore ~/.curlrc, quiet
// but with errors, no proxy from the environment, HTTP/1.1, a time limit,
// and a -w format the result parses. args must name the URL and may set -o
// (the default writes the body to /dev/null), -x, --cacert and others. A
// non-zero exit is returned, not fatal: many cases expect curl to fail.
func runCurl(t *testing.T, args ...string) curlResult {
	t.Helper()
	curl := requireTool(t, "curl")

	full := []string{"-q", "-sS", "--http1.1", "--max-time", "10",
		"-w", "%{http_code} %{http_connect} %{size_download}"}
	if !hasArg(args, "-o") {
		full = append(full, "-o", "/dev/null")
	}
	full = append(full, args...)

	ctx, cancel := context.WithTimeout(context.Background(), curlTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, curl, full...)
	cmd.Env = childEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()

	res := curlResult{Stderr: strings.TrimSpace(stderr.String()), Args: full}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.Exited():
		res.Exit = ee.ExitCode()
	default:
		t.Fatalf("running curl %v: %v (stderr %q)", full, err, stderr.String())
	}
	f := strings.Fields(stdout.String())
	if len(f) != 3 {
		t.Fatalf("curl %v: unexpected -w output %q (stderr %q)", full, stdout.String(), res.Stderr)
	}
	res.HTTPCode, _ = strconv.Atoi(f[0])
	res.ConnectCode, _ = strconv.Atoi(f[1])
	res.SizeDown, _ = strconv.ParseInt(f[2], 10, 64)
	return res
}

func hasArg(args []string, name string) bool {
	for _, a := range args {
		if a == name {
			return true
		}
	}
	return false
}

// curlVia returns the curl arguments that send a request through the proxy
// at addr.
func curlVia(addr string) []string { return []string{"-x", "http://" + addr} }
