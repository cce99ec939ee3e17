package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/report"
)

// TestLastErrorsKept: the endpoints' values uploaded on the page are kept
// in the store: after a restart the client still shows what its endpoint
// reported, and `tetrascope report` without --lasterrors compares with
// the same upload.
func TestLastErrorsKept(t *testing.T) {
	bin := needBinary(t)
	requireTool(t, "curl")
	const host = "tetra-defs.amp.cisco.com"
	port := freePort(t) // nothing listens: connect_refused
	p := newServeProc(t, bin, serveConfig{Resolve: []string{host + "=127.0.0.1"},
		AllowPorts: []int{port}})
	if err := p.start(); err != nil {
		t.Fatal(err)
	}

	// One failing client, 127.0.0.1.
	res := runCurl(t, append(curlVia(p.ProxyAddr()),
		fmt.Sprintf("https://%s:%d/", host, port))...)
	if res.ConnectCode != http.StatusBadGateway {
		t.Fatalf("want a 502 to CONNECT: %s", res)
	}
	api := newAPIClient(p.UIAddr())
	q := url.Values{"client": {"127.0.0.1"}}
	if _, err := api.WaitEvent(q, func(e *inspect.Event) bool {
		return e.Outcome == inspect.ConnectRefused
	}, 10*time.Second); err != nil {
		t.Fatal(err)
	}

	// The upload: the client's endpoint, one never seen, one bad row.
	csv := "ip,lasterror\n127.0.0.1,4294965193\n10.9.9.9,0\nnot-an-ip,12\n"
	resp, err := http.Post("http://"+p.UIAddr()+"/api/v1/lasterrors", "text/csv",
		strings.NewReader(csv))
	if err != nil {
		t.Fatal(err)
	}
	var up report.UploadResult
	err = json.NewDecoder(resp.Body).Decode(&up)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || up.Endpoints != 2 ||
		len(up.Errors) != 1 || up.Errors[0].Line != 4 {
		t.Fatalf("upload: status %d, %+v, %v", resp.StatusCode, up, err)
	}
	before, err := getClient(p.UIAddr(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if before.ReportedLastError == nil || *before.ReportedLastError != 4294965193 ||
		before.Agreement == "" {
		t.Fatalf("client after the upload: reported %v, agreement %q",
			before.ReportedLastError, before.Agreement)
	}

	p.Restart()
	var after inspect.Client
	if !waitFor(10*time.Second, 100*time.Millisecond, func() bool {
		after, err = getClient(p.UIAddr(), "127.0.0.1")
		return err == nil && after.ReportedLastError != nil
	}) {
		t.Fatalf("after the restart the client lost its endpoint's value: %+v, %v", after, err)
	}
	if *after.ReportedLastError != 4294965193 || after.Agreement != before.Agreement {
		t.Errorf("after the restart: reported %d, agreement %q; before: %q",
			*after.ReportedLastError, after.Agreement, before.Agreement)
	}
	p.Stop()

	// The report reads the same upload from the store.
	cmd := exec.Command(bin, "report", "--db", p.cfg.DB, "--since", "1h", "--format", "json")
	cmd.Env = childEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("report: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "uploaded") {
		t.Errorf("report does not say which upload it compares with:\n%s", stderr.String())
	}
	var rep report.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	var row *report.Row
	for i := range rep.Clients {
		if rep.Clients[i].ClientIP == "127.0.0.1" {
			row = &rep.Clients[i]
		}
	}
	switch {
	case row == nil:
		t.Fatalf("no report row for 127.0.0.1: %+v", rep.Clients)
	case row.Reported == nil || row.Reported.LastError != 4294965193:
		t.Errorf("report row: reported %+v, want 4294965193", row.Reported)
	case row.Agreement != before.Agreement:
		t.Errorf("report says %q, the page %q", row.Agreement, before.Agreement)
	}
	if len(rep.NotSeen) != 1 || rep.NotSeen[0].IP != "10.9.9.9" {
		t.Errorf("not seen: %+v, want 10.9.9.9", rep.NotSeen)
	}
	if rep.LastErrors == nil || len(rep.LastErrors.Errors) != 1 ||
		rep.LastErrors.Errors[0].Line != 4 {
		t.Errorf("rows not used: %+v, want line 4", rep.LastErrors)
	}
}
