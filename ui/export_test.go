package ui

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/tetrascope/tetrascope/inspect"
)

func TestEventsCSV(t *testing.T) {
	fs := storeOf(3)
	odd := ended(4, "10.0.0.2", inspect.HTTPError)
	odd.Method, odd.Endpoint = "GET", inspect.EndpointRevocation
	odd.URL = "http://crl.identrust.com/a,b.crl"
	odd.Detail = "=HYPERLINK(\"x\") \"quoted\"\nsecond line"
	odd.ClientUser = "CORP\\svc"
	odd.LastError = uint32(inspect.LastErrorDownloadFailed)
	odd.DurationMS = 0.25
	fs.events = append(fs.events, odd)
	ts := start(t, New(Config{}, Deps{Events: fs}))

	req, _ := http.NewRequest("GET", ts.URL+"/api/v1/events?format=csv&limit=2", nil)
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") ||
		!strings.Contains(resp.Header.Get("Content-Disposition"), `attachment; filename="`) {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	body := buf.String()
	if !strings.Contains(body, "\r\n") || strings.Contains(strings.ReplaceAll(body, "\r\n", ""),
		"\r") {
		t.Errorf("line ends are not CRLF: %q", body)
	}

	records, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("parsing the CSV: %v\n%s", err, body)
	}
	if len(records) != 3 {
		t.Fatalf("%d records; want a header and 2 rows (limit=2)", len(records))
	}
	header := records[0]
	wantHeader := jsonNames(reflect.TypeFor[inspect.Event]())
	if !reflect.DeepEqual(header, wantHeader) {
		t.Errorf("header %v; want the event fields %v", header, wantHeader)
	}
	row := map[string]string{}
	for i, name := range header {
		row[name] = records[1][i]
	}
	want := map[string]string{
		"id": "4", "time": "2026-03-01T12:00:04Z", "duration_ms": "0.25",
		"client_user": `CORP\svc`, "url": "http://crl.identrust.com/a,b.crl",
		"detail": "'=HYPERLINK(\"x\") \"quoted\"\nsecond line", "lasterror": "4294965187",
		"outcome": "http_error", "port": "443", "bytes_down": "5242880", "tls_version": "",
	}
	for k, v := range want {
		if row[k] != v {
			t.Errorf("%s = %q; want %q", k, row[k], v)
		}
	}
	if records[2][0] != "3" {
		t.Errorf("second row id %s; want 3, newest first", records[2][0])
	}
}

// TestEventsCSVColumns keeps every Event field in a kind csvCell formats
// itself.
func TestEventsCSVColumns(t *testing.T) {
	ty := reflect.TypeFor[inspect.Event]()
	if len(eventColumns) != ty.NumField() {
		t.Errorf("%d columns for %d fields", len(eventColumns), ty.NumField())
	}
	for i := range ty.NumField() {
		f := ty.Field(i)
		switch f.Type.Kind() {
		case reflect.String, reflect.Int, reflect.Int64, reflect.Uint32, reflect.Float64:
		case reflect.Struct:
			if f.Type != timeType {
				t.Errorf("field %s of type %s has no CSV form", f.Name, f.Type)
			}
		default:
			t.Errorf("field %s of kind %s has no CSV form", f.Name, f.Type.Kind())
		}
	}
}

func TestEventsJSONExport(t *testing.T) {
	ts := start(t, New(Config{}, Deps{Events: storeOf(2)}))
	req, _ := http.NewRequest("GET", ts.URL+"/api/v1/events?format=json", nil)
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Events []inspect.Event `json:"events"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || len(got.Events) != 2 {
		t.Fatalf("decoding: %v, %d events; want 2", err, len(got.Events))
	}
	if !strings.Contains(resp.Header.Get("Content-Disposition"), ".json") {
		t.Errorf("Content-Disposition %q; want an attachment named .json",
			resp.Header.Get("Content-Disposition"))
	}

	status, body := get(t, ts, "/api/v1/events?format=xml", nil)
	var e errorBody
	if status != 400 || json.Unmarshal(body, &e) != nil || e.Param != "format" {
		t.Errorf("format=xml: %d %s; want 400 naming format", status, body)
	}
}

func TestDefuse(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "ok": "ok", "=1+1": "'=1+1", "+x": "'+x", "-2103": "'-2103", "@SUM": "'@SUM",
		"\tx": "'\tx", "a=b": "a=b",
	} {
		if got := defuse(in); got != want {
			t.Errorf("defuse(%q) = %q; want %q", in, got, want)
		}
	}
}

func TestMetricsHandler(t *testing.T) {
	m := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write([]byte("up 1\n"))
	})
	ts := start(t, New(Config{Token: "tok"}, Deps{Metrics: m}))
	if status, _ := get(t, ts, "/metrics", nil); status != http.StatusUnauthorized {
		t.Errorf("without the token: status %d; want 401", status)
	}
	status, body := get(t, ts, "/metrics", http.Header{"Authorization": {"Bearer tok"}})
	if status != 200 || string(body) != "up 1\n" {
		t.Errorf("with the token: %d %q; want the metrics handler's answer", status, body)
	}
}

// jsonNames lists the JSON names of a struct's fields, in order.
func jsonNames(ty reflect.Type) []string {
	var names []string
	for i := range ty.NumField() {
		name, _, _ := strings.Cut(ty.Field(i).Tag.Get("json"), ",")
		names = append(names, name)
	}
	return names
}
