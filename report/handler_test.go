package report

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// reportServer serves the handlers as the lead mounts them, over the
// fixture, with an Imported set shared between the two.
func reportServer(t *testing.T) (*httptest.Server, *Imported) {
	t.Helper()
	var imp Imported
	mux := http.NewServeMux()
	mux.Handle("/api/v1/report", Handler(HandlerConfig{
		Events:    sliceSource(t, fixtureEvents()),
		Endpoints: imp.Get,
		Now:       func() time.Time { return reportEnd },
	}))
	mux.Handle("/api/v1/lasterrors", LastErrorsHandler(imp.Set))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, &imp
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	return resp, buf.Bytes()
}

// TestHandlerFormats: the API gives the same report as the golden files,
// in every format, with the headers each needs.
func TestHandlerFormats(t *testing.T) {
	srv, _ := reportServer(t)
	for _, tc := range []struct {
		format, contentType, header, value string
	}{
		{"csv", "text/csv; charset=utf-8; header=present", "Content-Disposition",
			`attachment; filename="tetrascope-report-20260302-1200.csv"`},
		{"json", "application/json", "Cache-Control", "no-store"},
		{"html", "text/html; charset=utf-8", "Content-Security-Policy", ContentSecurityPolicy},
	} {
		t.Run(tc.format, func(t *testing.T) {
			resp, body := get(t, srv.URL+"/api/v1/report?since=24h&format="+tc.format)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			if got := resp.Header.Get("Content-Type"); got != tc.contentType {
				t.Errorf("Content-Type %q", got)
			}
			if got := resp.Header.Get(tc.header); got != tc.value {
				t.Errorf("%s %q, want %q", tc.header, got, tc.value)
			}
			want, err := os.ReadFile("testdata/report." + tc.format)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body, want) {
				t.Errorf("the API's %s differs from testdata/report.%s", tc.format, tc.format)
			}
		})
	}

	// No format: JSON; no since: the last 24 hours.
	resp, body := get(t, srv.URL+"/api/v1/report")
	var rep Report
	if err := json.Unmarshal(body, &rep); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("default answer %d: %v", resp.StatusCode, err)
	}
	if !rep.Since.Equal(reportEnd.Add(-24*time.Hour)) || !rep.Until.Equal(reportEnd) {
		t.Errorf("default window %v to %v", rep.Since, rep.Until)
	}

	// until alone moves the window with it.
	_, body = get(t, srv.URL+"/api/v1/report?until=2026-03-02T06:00:00Z")
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.Since.Equal(time.Date(2026, 3, 1, 6, 0, 0, 0, time.UTC)) {
		t.Errorf("since %v for until 06:00", rep.Since)
	}
}

func TestHandlerBadRequests(t *testing.T) {
	srv, _ := reportServer(t)
	for _, tc := range []struct{ query, param string }{
		{"format=xml", "format"},
		{"since=yesterday", "since"},
		{"until=soon", "until"},
		{"since=1h&until=2h", "since"},
	} {
		resp, body := get(t, srv.URL+"/api/v1/report?"+tc.query)
		var e errorBody
		if resp.StatusCode != http.StatusBadRequest || json.Unmarshal(body, &e) != nil ||
			e.Param != tc.param || e.Error == "" {
			t.Errorf("%s: %d %s; want 400 naming %s", tc.query, resp.StatusCode, body, tc.param)
		}
	}

	resp, err := http.Post(srv.URL+"/api/v1/report", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") == "" {
		t.Errorf("POST to the report: %d", resp.StatusCode)
	}
	resp, err = http.Get(srv.URL + "/api/v1/lasterrors")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET of lasterrors: %d", resp.StatusCode)
	}
}

// HEAD answers the headers of the report without building it (the page
// asks on every load), and checks the parameters as GET does.
func TestHandlerHead(t *testing.T) {
	built := 0
	h := Handler(HandlerConfig{
		Events: countingSource{func() { built++ }},
		Now:    func() time.Time { return reportEnd },
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Head(srv.URL + "/?format=csv")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != ContentType("csv") ||
		!strings.Contains(resp.Header.Get("Content-Disposition"), "tetrascope-report-") {
		t.Errorf("HEAD: %d, %v", resp.StatusCode, resp.Header)
	}
	if built != 0 {
		t.Errorf("HEAD read the store %d times", built)
	}
	resp, err = http.Head(srv.URL + "/?format=pdf")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("HEAD with a bad format: %d, want 400", resp.StatusCode)
	}
}

// TestUpload posts the endpoints' file, raw and as a form, and finds the
// comparison in the next report.
func TestUpload(t *testing.T) {
	srv, imp := reportServer(t)
	file, err := os.ReadFile("testdata/lasterrors.csv")
	if err != nil {
		t.Fatal(err)
	}

	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	if err := mw.WriteField("note", "gathered on Monday"); err != nil {
		t.Fatal(err)
	}
	fw, err := mw.CreateFormFile("file", "endpoints.csv")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(file)
	mw.Close()

	for _, tc := range []struct {
		name, contentType string
		body              []byte
	}{
		{"raw", "text/csv", file},
		{"form", mw.FormDataContentType(), form.Bytes()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			imp.Set(nil, nil)
			resp, err := http.Post(srv.URL+"/api/v1/lasterrors", tc.contentType,
				bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			var res UploadResult
			err = json.NewDecoder(resp.Body).Decode(&res)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, %v", resp.StatusCode, err)
			}
			if res.Endpoints != 11 || len(res.Errors) != 5 || res.Errors[0].Line != 13 {
				t.Errorf("result %+v", res)
			}

			_, body := get(t, srv.URL+"/api/v1/report?format=csv")
			want, err := os.ReadFile("testdata/report-lasterrors.csv")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(body, want) {
				t.Error("the report after the upload differs from testdata/report-lasterrors.csv")
			}
		})
	}

	// A file that cannot be used changes nothing.
	resp, err := http.Post(srv.URL+"/api/v1/lasterrors", "text/csv",
		strings.NewReader("owner,comment\nbob,hi\n"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unusable file: %d", resp.StatusCode)
	}
	if eps, _ := imp.Get(); len(eps) != 11 {
		t.Errorf("a refused upload replaced the endpoints: %d left", len(eps))
	}

	// A form without a file, and a body over the limit.
	var empty bytes.Buffer
	mw = multipart.NewWriter(&empty)
	mw.WriteField("note", "forgot the file")
	mw.Close()
	resp, err = http.Post(srv.URL+"/api/v1/lasterrors", mw.FormDataContentType(), &empty)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("form without a file: %d", resp.StatusCode)
	}
	big := bytes.Repeat([]byte("host,lasterror\n"), MaxUploadBytes/10)
	resp, err = http.Post(srv.URL+"/api/v1/lasterrors", "text/csv", bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized upload: %d", resp.StatusCode)
	}
}

// TestUploadKeepsRowErrors: the rows an upload could not use show in the
// reports that follow, as the command's stderr shows them.
func TestUploadKeepsRowErrors(t *testing.T) {
	srv, _ := reportServer(t)
	resp, err := http.Post(srv.URL+"/api/v1/lasterrors", "text/csv",
		strings.NewReader("ip,lasterror\n10.0.0.12,-2100\n10.0.0.999,0\n"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	_, body := get(t, srv.URL+"/api/v1/report?format=json")
	var rep Report
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.LastErrors == nil || rep.LastErrors.Endpoints != 1 || len(rep.LastErrors.Errors) != 1 ||
		rep.LastErrors.Errors[0].Line != 3 {
		t.Fatalf("import %+v", rep.LastErrors)
	}
	_, body = get(t, srv.URL+"/api/v1/report?format=csv")
	recs, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, rec := range recs[1:] {
		if rec[0] == "10.0.0.12" && strings.Contains(strings.Join(rec, ","), "disagree") {
			found = true
		}
	}
	if !found {
		t.Error("the uploaded value does not show in the CSV")
	}
}

// An upload that cannot be kept is a 500 answer that says so.
func TestUploadNotKept(t *testing.T) {
	h := LastErrorsHandler(func([]Endpoint, []RowError) error {
		return errors.New("disk full")
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Post(srv.URL, "text/csv",
		strings.NewReader("host,lasterror\nPC-01,4294965196\n"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body errorBody
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusInternalServerError ||
		!strings.Contains(body.Error, "not kept") || !strings.Contains(body.Error, "disk full") {
		t.Errorf("status %d, %+v; want 500 naming the failure", resp.StatusCode, body)
	}
}

// countingSource is a store without events that counts the scans.
type countingSource struct{ scanned func() }

func (s countingSource) ScanFields(context.Context, inspect.Filter, []string,
	func(inspect.Event) error) error {
	s.scanned()
	return nil
}
