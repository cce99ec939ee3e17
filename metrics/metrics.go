// Package metrics keeps tetrascope's Prometheus metrics and serves them in
// the text format on /metrics. Counters of traffic are fed one event at a
// time by Observe, from the pipeline's publish path; gauges and the
// pipeline's own counters are read from Sources when Prometheus scrapes.
//
// Label sets are bounded by the vocabulary of inspect (endpoints, outcomes,
// client states, diagnoses): no label carries a client address, user or
// host, so the number of series does not grow with the traffic. The
// prometheus/client_golang types stay inside this package; the rest of the
// program sees Observe, ObserveAppend and an http.Handler.
package metrics

import (
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tetrascope/tetrascope/inspect"
)

// namespace prefixes every metric of the program.
const namespace = "tetrascope"

// PipelineCounts are the pipeline's counters since start, read at each
// scrape.
type PipelineCounts struct {
	Dropped     uint64 // events lost before the store: a queue was full
	Stored      uint64 // events committed to the store
	NotStored   uint64 // events counted only (other traffic)
	StoreErrors uint64 // failed store transactions
	Invalid     uint64 // events the store cannot take
}

// Sources are the parts of the running program read at scrape time. Every
// field may be nil; the metric it feeds is then left out.
type Sources struct {
	// OpenTunnels returns the number of tunnels open now.
	OpenTunnels func() int
	// Clients returns every client's health as of now.
	Clients func() []inspect.Client
	// Viewers returns the number of websocket viewers of the stream.
	Viewers func() int
	// ViewersDropped returns the number of viewers dropped for being too
	// slow since start.
	ViewersDropped func() int64
	// Pipeline returns the pipeline's counters.
	Pipeline func() PipelineCounts
}

// Registry holds the metrics. Create it with New; its methods are safe for
// concurrent use.
type Registry struct {
	reg     *prometheus.Registry
	handler http.Handler

	// The traffic counters, made for every label value up front, so
	// that Observe does no map lookup and every series exists from the
	// start (rate() needs the zero).
	// The first index is the endpoint's in inspect.Endpoints, the
	// second the outcome's in inspect.Outcomes, the third up or down.
	conns    [][]prometheus.Counter
	bytes    [][][2]prometheus.Counter
	tunnel   []prometheus.Observer
	request  []prometheus.Observer
	appendOK prometheus.Observer
	appendKO prometheus.Observer
}

// durationBuckets fit both a refused connect (milliseconds) and a large
// definition download on a slow link (minutes).
var durationBuckets = []float64{
	0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600,
}

// appendBuckets fit SQLite transactions, from a few events on an idle
// sensor to thousands behind a slow disk.
var appendBuckets = []float64{
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
}

// New returns a registry with every metric of the program, reading the
// gauges from src.
func New(src Sources) *Registry {
	r := &Registry{reg: prometheus.NewRegistry()}
	r.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)

	conns := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "connections_total",
		Help: "Connections and requests that ended, by endpoint class and outcome.",
	}, []string{"endpoint", "outcome"})
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "bytes_total",
		Help: "Bytes relayed by connections that ended, by endpoint class, outcome " +
			"and direction (up: client to server, down: server to client).",
	}, []string{"endpoint", "outcome", "direction"})
	tunnel := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "tunnel_duration_seconds",
		Help:    "How long CONNECT tunnels lasted, from the request to the close.",
		Buckets: durationBuckets,
	}, []string{"endpoint"})
	request := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "request_duration_seconds",
		Help:    "How long plain HTTP requests (revocation fetches and others) lasted.",
		Buckets: durationBuckets,
	}, []string{"endpoint"})
	appendDur := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "store_append_duration_seconds",
		Help:    "How long each store transaction (a batch of events) took, by result.",
		Buckets: appendBuckets,
	}, []string{"result"})
	r.reg.MustRegister(conns, bytes, tunnel, request, appendDur)

	n := len(inspect.Endpoints)
	r.conns, r.bytes = make([][]prometheus.Counter, n), make([][][2]prometheus.Counter, n)
	r.tunnel, r.request = make([]prometheus.Observer, n), make([]prometheus.Observer, n)
	for i, e := range inspect.Endpoints {
		r.conns[i] = make([]prometheus.Counter, len(inspect.Outcomes))
		r.bytes[i] = make([][2]prometheus.Counter, len(inspect.Outcomes))
		for j, o := range inspect.Outcomes {
			r.conns[i][j] = conns.WithLabelValues(string(e), string(o))
			r.bytes[i][j][0] = bytes.WithLabelValues(string(e), string(o), "up")
			r.bytes[i][j][1] = bytes.WithLabelValues(string(e), string(o), "down")
		}
		r.tunnel[i] = tunnel.WithLabelValues(string(e))
		r.request[i] = request.WithLabelValues(string(e))
	}
	r.appendOK = appendDur.WithLabelValues("ok")
	r.appendKO = appendDur.WithLabelValues("error")

	r.registerSources(src)
	r.handler = promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
	})
	return r
}

// registerSources adds the metrics read at scrape time.
func (r *Registry) registerSources(src Sources) {
	gauge := func(name, help string, f func() float64) {
		r.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Name: name, Help: help,
		}, f))
	}
	counter := func(name, help string, f func() float64) {
		r.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Name: name, Help: help,
		}, f))
	}

	if f := src.OpenTunnels; f != nil {
		gauge("open_tunnels", "Tunnels open now.", func() float64 { return float64(f()) })
	}
	if f := src.Viewers; f != nil {
		gauge("viewers", "Websocket viewers of the live stream.",
			func() float64 { return float64(f()) })
	}
	if f := src.ViewersDropped; f != nil {
		counter("viewers_dropped_total",
			"Websocket viewers dropped because they did not keep up with the stream.",
			func() float64 { return float64(f()) })
	}
	if f := src.Pipeline; f != nil {
		counter("events_dropped_total",
			"Events lost before the store because a queue was full.",
			func() float64 { return float64(f().Dropped) })
		counter("events_stored_total", "Events committed to the store.",
			func() float64 { return float64(f().Stored) })
		counter("events_not_stored_total",
			"Events counted but not stored (other traffic, without events.record_other).",
			func() float64 { return float64(f().NotStored) })
		counter("events_invalid_total", "Events the store cannot take, not stored.",
			func() float64 { return float64(f().Invalid) })
		counter("store_errors_total", "Store transactions that failed (and were retried).",
			func() float64 { return float64(f().StoreErrors) })
	}
	if src.Clients != nil {
		r.reg.MustRegister(newClientCollector(src.Clients))
	}
}

// Handler serves the metrics in the Prometheus text format.
func (r *Registry) Handler() http.Handler { return r.handler }

// Observe counts one stream message of the pipeline: kind "event" (a
// connection or request that ended) adds to the traffic counters; "open"
// and events without a known outcome are ignored. It never blocks.
func (r *Registry) Observe(kind string, ev inspect.Event) {
	if kind != "event" {
		return
	}
	o := slices.Index(inspect.Outcomes, ev.Outcome)
	if o < 0 {
		return
	}
	e := slices.Index(inspect.Endpoints, ev.Endpoint)
	if e < 0 {
		e = slices.Index(inspect.Endpoints, inspect.EndpointOther)
	}

	r.conns[e][o].Inc()
	if ev.BytesUp > 0 {
		r.bytes[e][o][0].Add(float64(ev.BytesUp))
	}
	if ev.BytesDown > 0 {
		r.bytes[e][o][1].Add(float64(ev.BytesDown))
	}
	if ev.DurationMS < 0 || ev.Method == "" {
		return
	}
	if ev.Method == "CONNECT" {
		r.tunnel[e].Observe(ev.DurationMS / 1000)
	} else {
		r.request[e].Observe(ev.DurationMS / 1000)
	}
}

// ObserveAppend records one store transaction: how long it took, and
// whether it failed. It suits pipeline.Config.OnAppend; the number of
// events is in the stored and error counters already.
func (r *Registry) ObserveAppend(d time.Duration, _ int, err error) {
	if err != nil {
		r.appendKO.Observe(d.Seconds())
		return
	}
	r.appendOK.Observe(d.Seconds())
}

// clientCollector reports clients by state and by main diagnosis, from one
// reading of the client list per scrape.
type clientCollector struct {
	clients     func() []inspect.Client
	byState     *prometheus.Desc
	byDiagnosis *prometheus.Desc
}

var clientStates = []inspect.ClientState{
	inspect.StateHealthy, inspect.StateFailing, inspect.StateSilent, inspect.StateUnknown,
}

func newClientCollector(clients func() []inspect.Client) *clientCollector {
	return &clientCollector{
		clients: clients,
		byState: prometheus.NewDesc(namespace+"_clients",
			"Clients known now, by state (healthy, failing, silent, unknown).",
			[]string{"state"}, nil),
		byDiagnosis: prometheus.NewDesc(namespace+"_clients_diagnosed",
			"Clients known now, by main diagnosis; clients without one are not counted.",
			[]string{"diagnosis"}, nil),
	}
}

// Describe sends the descriptions of the client metrics.
func (cc *clientCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- cc.byState
	ch <- cc.byDiagnosis
}

// Collect counts the clients once and sends a value for every state and
// every diagnosis, zero included.
func (cc *clientCollector) Collect(ch chan<- prometheus.Metric) {
	states := make(map[inspect.ClientState]int, len(clientStates))
	diagnoses := make(map[string]int, len(inspect.DiagnosisNames))
	for _, c := range cc.clients() {
		states[c.State]++
		if c.Diagnosis != "" {
			diagnoses[c.Diagnosis]++
		}
	}
	for _, s := range clientStates {
		ch <- prometheus.MustNewConstMetric(cc.byState, prometheus.GaugeValue,
			float64(states[s]), string(s))
	}
	for _, d := range inspect.DiagnosisNames {
		ch <- prometheus.MustNewConstMetric(cc.byDiagnosis, prometheus.GaugeValue,
			float64(diagnoses[d]), d)
	}
}
