package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/report"
	"github.com/tetrascope/tetrascope/store"
)

// reportEnd is the end of the windows of these tests.
var reportEnd = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

// reportDB stores a few clients' events in a new database: 10.0.0.1
// healthy, 10.0.0.2 refused by the proxy (a machine account), 10.0.0.3 on
// another sensor with failing lookups.
func reportDB(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "events.db")
	st, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ev := func(id int64, ago time.Duration, sensor, ip, user string,
		o inspect.Outcome) inspect.Event {
		return inspect.Event{ID: id, Time: reportEnd.Add(-ago), DurationMS: 100,
			Source: inspect.SourceProxy, Sensor: sensor, ClientIP: ip, ClientUser: user,
			Method: "CONNECT", Host: "tetra-defs.amp.cisco.com", Port: 443,
			Endpoint: inspect.EndpointTetra, Outcome: o}
	}
	evs := []inspect.Event{
		ev(1, 3*time.Hour, "a", "10.0.0.1", "", inspect.OK),
		ev(2, 30*time.Minute, "a", "10.0.0.1", "", inspect.OK),
		ev(3, 40*time.Minute, "a", "10.0.0.2", `CORP\PC2$`, inspect.AuthFailed),
		ev(4, 20*time.Minute, "a", "10.0.0.2", `CORP\PC2$`, inspect.AuthFailed),
		ev(1, 50*time.Minute, "b", "10.0.0.3", "", inspect.DNSFailure),
		ev(2, 10*time.Minute, "b", "10.0.0.3", "", inspect.DNSFailure),
	}
	if err := st.Append(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	return path
}

// window pins the report's window, so that results do not depend on the
// clock.
var window = []string{"--since", reportEnd.Add(-24 * time.Hour).Format(time.RFC3339),
	"--until", reportEnd.Format(time.RFC3339)}

func runReportCmd(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(append([]string{"report"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

func TestReportCSV(t *testing.T) {
	db := reportDB(t)
	code, out, errs := runReportCmd(t, append([]string{"--db", db}, window...)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(recs[0], ",") != strings.Join(report.CSVHeader(), ",") {
		t.Errorf("header %v", recs[0])
	}
	if len(recs) != 4 {
		t.Fatalf("%d records, want a header and 3 clients:\n%s", len(recs), out)
	}
	state := map[string]string{}
	for _, r := range recs[1:] {
		state[r[0]+"@"+r[3]] = r[len(inspect.Outcomes)+9]
	}
	want := map[string]string{"10.0.0.1@a": "healthy", "10.0.0.2@a": "failing",
		"10.0.0.3@b": "failing"}
	for k, v := range want {
		if state[k] != v {
			t.Errorf("%s: state %q, want %q (all: %v)", k, state[k], v, state)
		}
	}
	if !strings.Contains(out, "\r\n") {
		t.Error("CSV lines do not end in CRLF")
	}

	// One sensor only.
	code, out, _ = runReportCmd(t, append([]string{"--db", db, "--sensor", "b"}, window...)...)
	if code != 0 || strings.Count(out, "\r\n") != 2 || !strings.Contains(out, "10.0.0.3") {
		t.Errorf("--sensor b: exit %d\n%s", code, out)
	}
}

// TestReportFiles writes each format to a file: the extension of -o picks
// the format, --format overrides it.
func TestReportFiles(t *testing.T) {
	db := reportDB(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name, format, check string
	}{
		{"r.json", "", `"version": 1`},
		{"r.html", "", "<!DOCTYPE html>"},
		{"r.htm", "", "<!DOCTYPE html>"},
		{"r.txt", "", "client_ip,client_user"},
		{"r.out", "JSON", `"summary"`},
	} {
		out := filepath.Join(dir, tc.name)
		args := append([]string{"--db", db, "-o", out}, window...)
		if tc.format != "" {
			args = append(args, "--format", tc.format)
		}
		code, stdout, errs := runReportCmd(t, args...)
		if code != 0 || stdout != "" {
			t.Fatalf("%s: exit %d, stdout %q, stderr %s", tc.name, code, stdout, errs)
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(data), tc.check) {
			t.Errorf("%s lacks %q", tc.name, tc.check)
		}
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestReportLastErrors: bad rows are named on stderr with their lines, the
// rest is compared, and the exit status is 0.
func TestReportLastErrors(t *testing.T) {
	db := reportDB(t)
	file := filepath.Join(t.TempDir(), "endpoints.csv")
	data := "Hostname;IP;LastError\n" +
		"PC1;10.0.0.1;0\n" +
		"PC2;;-2100\n" + // matched by machine account
		"PC3;10.0.0.3;4294965196\n" + // no 407 here: another proxy
		"PC4;10.0.0.4;-2103\n" + // never seen
		"PC5;10.0.0.300;0\n" + // bad
		"PC6;;what\n" // bad
	if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runReportCmd(t, append([]string{"--db", db, "--lasterrors", file,
		"--format", "json"}, window...)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"line 6: ip \"10.0.0.300\" is not an IP address",
		"line 7: lasterror \"what\""} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
	var rep report.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range rep.Clients {
		got[r.ClientIP] = r.Agreement + "/" + r.MatchedBy
	}
	want := map[string]string{"10.0.0.1": "agree/ip", "10.0.0.2": "agree/machine_account",
		"10.0.0.3": "disagree/ip"}
	for ip, w := range want {
		if got[ip] != w {
			t.Errorf("%s: %q, want %q", ip, got[ip], w)
		}
	}
	if len(rep.NotSeen) != 1 || rep.NotSeen[0].Host != "PC4" || rep.LastErrors == nil ||
		len(rep.LastErrors.Errors) != 2 {
		t.Errorf("not seen %+v, import %+v", rep.NotSeen, rep.LastErrors)
	}
}

func TestReportBadUsage(t *testing.T) {
	db := reportDB(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "none.db")
	noHeader := filepath.Join(dir, "bad.csv")
	if err := os.WriteFile(noHeader, []byte("owner,comment\nbob,x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing database", []string{"--db", missing}, "--db"},
		{"database is a directory", []string{"--db", dir}, "--db"},
		{"bad since", []string{"--db", db, "--since", "yesterday"}, "--since"},
		{"negative since", []string{"--db", db, "--since", "-1h"}, "--since"},
		{"bad until", []string{"--db", db, "--until", "later"}, "--until"},
		{"since after until", []string{"--db", db, "--since", "1h", "--until", "2h"}, "--since"},
		{"bad format", []string{"--db", db, "--format", "pdf"}, "--format"},
		{"zero since", []string{"--db", db, "--since", "0001-01-01T00:00:00Z"}, "--since"},
		{"missing lasterrors", []string{"--db", db, "--lasterrors", filepath.Join(dir, "x")},
			"--lasterrors"},
		{"unusable lasterrors", []string{"--db", db, "--lasterrors", noHeader}, "--lasterrors"},
		{"empty sensor", []string{"--db", db, "--sensor", ""}, "--sensor"},
		{"unknown flag", []string{"--db", db, "--nope"}, "unknown flag"},
		{"argument", []string{"--db", db, "extra"}, "unknown command"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errs := runReportCmd(t, tc.args...)
			if code != 2 || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 naming %q", code, errs, tc.want)
			}
		})
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a report on a missing database created %s", missing)
	}
}

// TestReportConfig: the correlation keys of --config shape the states. A
// 10-minute update interval makes the healthy client's last success (30
// minutes ago) too old: it is silent.
func TestReportConfig(t *testing.T) {
	db := reportDB(t)
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(cfg, []byte("correlation:\n  update_interval: 10m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runReportCmd(t, append([]string{"--config", cfg, "--db", db,
		"--format", "json"}, window...)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var rep report.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.StateWindow != 1200 {
		t.Errorf("state window %v s", rep.StateWindow)
	}
	for _, r := range rep.Clients {
		if r.ClientIP == "10.0.0.1" && r.State != inspect.StateSilent {
			t.Errorf("10.0.0.1 is %s with a 10m update interval", r.State)
		}
	}

	// db from the environment.
	t.Setenv("TETRASCOPE_DB", db)
	if code, out, errs := runReportCmd(t, window...); code != 0 || !strings.Contains(out, "10.0.0.3") {
		t.Errorf("db from the environment: exit %d, %s", code, errs)
	}
}

// TestReportWhileWriting reports again and again on a database another
// Store is appending to, as a running serve does: every report succeeds
// and sees at least what was stored before it began. The writer stops
// after a fixed number of batches, since a scan whose window takes in
// everything being written would chase it.
func TestReportWhileWriting(t *testing.T) {
	db := reportDB(t)
	writer, err := store.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()

	const batches, size = 40, 200
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		written int
		done    = make(chan struct{})
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		for i := range batches {
			batch := make([]inspect.Event, size)
			for j := range batch {
				id := int64(100 + i*size + j)
				batch[j] = inspect.Event{ID: id,
					Time:       reportEnd.Add(-time.Hour + time.Duration(id)*time.Millisecond),
					DurationMS: 5, Source: inspect.SourceProxy, Sensor: "a",
					ClientIP: fmt.Sprintf("10.1.%d.%d", j/250, j%250), Method: "CONNECT",
					Host: "tetra-defs.amp.cisco.com", Port: 443, Endpoint: inspect.EndpointTetra,
					Outcome: inspect.OK}
			}
			if err := writer.Append(context.Background(), batch); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			written += size
			mu.Unlock()
		}
	}()

	reports := 0
	for writing := true; writing || reports < 3; reports++ {
		select {
		case <-done:
			writing = false
		default:
		}
		mu.Lock()
		before := written
		mu.Unlock()
		code, out, errs := runReportCmd(t, append([]string{"--db", db, "--format", "json"},
			window...)...)
		if code != 0 {
			t.Fatalf("report during writes: exit %d: %s", code, errs)
		}
		var rep report.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Summary.Events < 6+before {
			t.Errorf("report saw %d events; %d were stored before it began",
				rep.Summary.Events, 6+before)
		}
	}
	wg.Wait()
	if written != batches*size {
		t.Errorf("the writer wrote %d events", written)
	}
	t.Logf("%d reports while %d events were written", reports, written)
}

// TestReportOutputTargets: -o replaces a regular file (keeping its mode,
// through a symbolic link keeping the link), writes into a FIFO or device,
// and refuses the database and a directory.
func TestReportOutputTargets(t *testing.T) {
	db := reportDB(t)
	dir := t.TempDir()
	args := func(out string) []string {
		return append([]string{"--db", db, "--format", "csv", "-o", out}, window...)
	}
	isReport := func(path string) {
		t.Helper()
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(data), "client_ip,") {
			t.Errorf("%s does not hold the CSV report: %.40q", path, data)
		}
	}

	t.Run("new file is private", func(t *testing.T) {
		out := filepath.Join(dir, "new.csv")
		if code, _, errs := runReportCmd(t, args(out)...); code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		isReport(out)
		if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, want 0600", fi.Mode().Perm())
		}
	})
	t.Run("existing file keeps its mode", func(t *testing.T) {
		out := filepath.Join(dir, "kept.csv")
		if err := os.WriteFile(out, []byte("old"), 0o640); err != nil {
			t.Fatal(err)
		}
		os.Chmod(out, 0o640)
		if code, _, errs := runReportCmd(t, args(out)...); code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		isReport(out)
		if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o640 {
			t.Errorf("mode %v, want 0640 kept", fi.Mode().Perm())
		}
	})
	t.Run("symbolic link kept", func(t *testing.T) {
		target := filepath.Join(dir, "target.csv")
		link := filepath.Join(dir, "link.csv")
		if err := os.WriteFile(target, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		if code, _, errs := runReportCmd(t, args(link)...); code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("the link was replaced: %v, %v", fi.Mode(), err)
		}
		isReport(target)
	})
	t.Run("fifo written into", func(t *testing.T) {
		fifo := filepath.Join(dir, "pipe")
		if err := syscall.Mkfifo(fifo, 0o600); err != nil {
			t.Skipf("no FIFO here: %v", err)
		}
		got := make(chan string, 1)
		go func() {
			data, _ := os.ReadFile(fifo)
			got <- string(data)
		}()
		if code, _, errs := runReportCmd(t, args(fifo)...); code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		if data := <-got; !strings.HasPrefix(data, "client_ip,") {
			t.Errorf("read from the FIFO: %.40q", data)
		}
		if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
			t.Errorf("the FIFO was replaced: %v, %v", fi.Mode(), err)
		}
	})
	t.Run("the database refused", func(t *testing.T) {
		before, _ := os.ReadFile(db)
		code, _, errs := runReportCmd(t, args(db)...)
		if code != 2 || !strings.Contains(errs, "is the database") {
			t.Errorf("exit %d, %q; want 2 naming the database", code, errs)
		}
		if after, _ := os.ReadFile(db); !bytes.Equal(before, after) {
			t.Error("the database changed")
		}
	})
	t.Run("directory refused", func(t *testing.T) {
		code, _, errs := runReportCmd(t, args(dir)...)
		if code != 2 || !strings.Contains(errs, "is a directory") {
			t.Errorf("exit %d, %q; want 2 naming the directory", code, errs)
		}
	})
}

// A directory named as a log is bad usage, not a file to wait for.
func TestTailDirectory(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	code := run([]string{"tail", "--db", filepath.Join(dir, "t.db"), dir}, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "is a directory") {
		t.Errorf("exit %d, %q; want 2 naming the directory", code, errb.String())
	}
}
