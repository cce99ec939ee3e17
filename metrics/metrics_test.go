package metrics

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/tetrascope/tetrascope/inspect"
)

// fakeSources are fixed answers for the scrape-time metrics.
func fakeSources() Sources {
	return Sources{
		OpenTunnels:    func() int { return 3 },
		Viewers:        func() int { return 2 },
		ViewersDropped: func() int64 { return 1 },
		Pipeline: func() PipelineCounts {
			return PipelineCounts{Dropped: 7, Stored: 40, NotStored: 5, StoreErrors: 1, Invalid: 2}
		},
		Clients: func() []inspect.Client {
			return []inspect.Client{
				{ClientIP: "10.0.0.1", State: inspect.StateFailing, Diagnosis: inspect.DiagnosisDNS},
				{ClientIP: "10.0.0.2", State: inspect.StateFailing,
					Diagnosis: inspect.DiagnosisProxyAuth},
				{ClientIP: "10.0.0.3", State: inspect.StateSilent,
					Diagnosis: inspect.DiagnosisSilent},
				{ClientIP: "10.0.0.4", State: inspect.StateHealthy},
			}
		},
	}
}

// observeSample feeds a few events: a tetra download, a tetra DNS failure,
// a revocation fetch answered 404, an open message and an event with no
// known outcome (both ignored), and one with no endpoint (counted as
// other).
func observeSample(r *Registry) {
	r.Observe("event", inspect.Event{Method: "CONNECT", Endpoint: inspect.EndpointTetra,
		Outcome: inspect.OK, BytesUp: 2000, BytesDown: 5 << 20, DurationMS: 1500})
	r.Observe("event", inspect.Event{Method: "CONNECT", Endpoint: inspect.EndpointTetra,
		Outcome: inspect.DNSFailure, DurationMS: 3})
	r.Observe("event", inspect.Event{Method: "GET", Endpoint: inspect.EndpointRevocation,
		Outcome: inspect.HTTPError, BytesUp: 100, BytesDown: 300, DurationMS: 40})
	r.Observe("open", inspect.Event{Method: "CONNECT", Endpoint: inspect.EndpointTetra})
	r.Observe("event", inspect.Event{Method: "CONNECT", Endpoint: inspect.EndpointTetra})
	r.Observe("event", inspect.Event{Method: "CONNECT", Outcome: inspect.Denied})
	r.ObserveAppend(2*time.Millisecond, 10, nil)
	r.ObserveAppend(30*time.Millisecond, 10, errors.New("database is locked"))
}

func serve(t *testing.T, r *Registry) string {
	t.Helper()
	ts := httptest.NewServer(r.Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

// TestMetricsText scrapes /metrics and reads it with the Prometheus text
// format parser (testutil.ScrapeAndCompare parses both sides with
// prometheus/common's expfmt), comparing the program's metrics to what the
// sample should give.
func TestMetricsText(t *testing.T) {
	r := New(fakeSources())
	observeSample(r)
	url := serve(t, r)

	tests := []struct {
		name string
		want string
	}{
		{"tetrascope_connections_total", connectionsWant()},
		{"tetrascope_open_tunnels", `
# HELP tetrascope_open_tunnels Tunnels open now.
# TYPE tetrascope_open_tunnels gauge
tetrascope_open_tunnels 3
`},
		{"tetrascope_viewers", `
# HELP tetrascope_viewers Websocket viewers of the live stream.
# TYPE tetrascope_viewers gauge
tetrascope_viewers 2
`},
		{"tetrascope_events_dropped_total", `
# HELP tetrascope_events_dropped_total Events lost before the store because a queue was full.
# TYPE tetrascope_events_dropped_total counter
tetrascope_events_dropped_total 7
`},
		{"tetrascope_clients", `
# HELP tetrascope_clients Clients known now, by state (healthy, failing, silent, unknown).
# TYPE tetrascope_clients gauge
tetrascope_clients{state="failing"} 2
tetrascope_clients{state="healthy"} 1
tetrascope_clients{state="silent"} 1
tetrascope_clients{state="unknown"} 0
`},
		{"tetrascope_clients_diagnosed", diagnosedWant()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := testutil.ScrapeAndCompare(url, strings.NewReader(tt.want), tt.name); err != nil {
				t.Error(err)
			}
		})
	}
}

// connectionsWant is the expected connections_total family: every
// endpoint and outcome, zero but for the sample's four events.
func connectionsWant() string {
	got := map[string]int{"tetra/ok": 1, "tetra/dns_failure": 1, "revocation/http_error": 1,
		"other/denied": 1}
	var b strings.Builder
	b.WriteString("# HELP tetrascope_connections_total Connections and requests that ended, " +
		"by endpoint class and outcome.\n# TYPE tetrascope_connections_total counter\n")
	for _, e := range inspect.Endpoints {
		for _, o := range inspect.Outcomes {
			fmt.Fprintf(&b, "tetrascope_connections_total{endpoint=%q,outcome=%q} %d\n",
				e, o, got[string(e)+"/"+string(o)])
		}
	}
	return b.String()
}

func diagnosedWant() string {
	got := map[string]int{"dns": 1, "proxy_auth": 1, "silent": 1}
	var b strings.Builder
	b.WriteString("# HELP tetrascope_clients_diagnosed Clients known now, by main diagnosis; " +
		"clients without one are not counted.\n# TYPE tetrascope_clients_diagnosed gauge\n")
	for _, d := range inspect.DiagnosisNames {
		fmt.Fprintf(&b, "tetrascope_clients_diagnosed{diagnosis=%q} %d\n", d, got[d])
	}
	return b.String()
}

// TestMetricsLint parses the whole answer with the text format parser (in
// promlint) and checks the names, units and help of every metric against
// Prometheus' conventions.
func TestMetricsLint(t *testing.T) {
	r := New(fakeSources())
	observeSample(r)
	body, ctype := scrape(t, serve(t, r))
	if !strings.HasPrefix(ctype, "text/plain") {
		t.Errorf("Content-Type %q; want the text format", ctype)
	}
	problems, err := promlint.New(bytes.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "tetrascope_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}

// sample matches one sample line of the text format: name, labels, value.
var sample = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$`)

// TestMetricsBounded checks that the number of series does not grow with
// the traffic: many clients, hosts and users add no series.
func TestMetricsBounded(t *testing.T) {
	r := New(fakeSources())
	before := countSeries(t, serve(t, r))

	for i := range 1000 {
		r.Observe("event", inspect.Event{
			Method: "CONNECT", Endpoint: inspect.Endpoints[i%4], Outcome: inspect.Outcomes[i%14],
			ClientIP: fmt.Sprintf("10.1.%d.%d", i/256, i%256), ClientUser: fmt.Sprint("u", i),
			Host: fmt.Sprintf("h%d.example", i), DurationMS: float64(i), BytesDown: int64(i),
		})
	}
	after := countSeries(t, serve(t, r))
	for name, n := range after {
		if n != before[name] {
			t.Errorf("%s: %d series after 1000 clients, %d before", name, n, before[name])
		}
	}
	if n := before["tetrascope_connections_total"]; n != 4*14 {
		t.Errorf("connections_total has %d series; want one per endpoint and outcome (56)", n)
	}
}

// countSeries counts the samples of each tetrascope_ family.
func countSeries(t *testing.T, url string) map[string]int {
	t.Helper()
	body, _ := scrape(t, url)
	n := map[string]int{}
	for _, line := range strings.Split(string(body), "\n") {
		m := sample.FindStringSubmatch(line)
		if m != nil && strings.HasPrefix(m[1], "tetrascope_") {
			n[m[1]]++
		}
	}
	return n
}

func scrape(t *testing.T, url string) ([]byte, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d, %v", resp.StatusCode, err)
	}
	return body, resp.Header.Get("Content-Type")
}

// TestObserveDurations checks that tunnels and plain requests land in their
// own histograms, in seconds, and store transactions by result.
func TestObserveDurations(t *testing.T) {
	r := New(Sources{})
	observeSample(r)
	body, _ := scrape(t, serve(t, r))
	for _, want := range []string{
		`tetrascope_tunnel_duration_seconds_count{endpoint="tetra"} 2`,
		`tetrascope_tunnel_duration_seconds_sum{endpoint="tetra"} 1.503`,
		`tetrascope_tunnel_duration_seconds_bucket{endpoint="tetra",le="0.005"} 1`,
		`tetrascope_request_duration_seconds_count{endpoint="revocation"} 1`,
		`tetrascope_request_duration_seconds_sum{endpoint="revocation"} 0.04`,
		`tetrascope_tunnel_duration_seconds_count{endpoint="other"} 1`,
		`tetrascope_store_append_duration_seconds_count{result="ok"} 1`,
		`tetrascope_store_append_duration_seconds_count{result="error"} 1`,
		`tetrascope_bytes_total{direction="down",endpoint="tetra",outcome="ok"} 5.24288e+06`,
		`tetrascope_bytes_total{direction="up",endpoint="revocation",outcome="http_error"} 100`,
	} {
		if !bytes.Contains(body, []byte(want+"\n")) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// Without sources, the scrape-time metrics are left out.
	for _, absent := range []string{"tetrascope_open_tunnels", "tetrascope_clients{"} {
		if bytes.Contains(body, []byte(absent)) {
			t.Errorf("/metrics has %s with no source for it", absent)
		}
	}
}
