package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/probe"
)

// probeOutcomes names the outcome of a scheduled probe by the step that
// failed first.
var probeOutcomes = map[string]inspect.Outcome{
	probe.StepDNS:         inspect.DNSFailure,
	probe.StepProxyTCP:    inspect.UpstreamUnreachable,
	probe.StepProxyAuth:   inspect.AuthFailed,
	probe.StepConnect:     inspect.ConnectRefused,
	probe.StepTLS:         inspect.TLSAborted,
	probe.StepCertificate: inspect.TLSAborted,
	probe.StepRevocation:  inspect.HTTPError,
	probe.StepHTTP:        inspect.DownloadAborted,
}

// probeEvent turns a probe report into an event with source probe: the
// path itself, checked from this host, with no client behind it.
func probeEvent(rep probe.Report, cfg probe.Config, id int64, sensor string,
	start time.Time) inspect.Event {
	ev := inspect.Event{
		ID: id, Time: start.UTC(), Source: inspect.SourceProbe, Sensor: sensor,
		Method: "PROBE", Host: cfg.Host, Port: cfg.Port, Endpoint: inspect.EndpointTetra,
		Outcome: inspect.OK, Detail: "probe: every step passed",
	}
	for _, st := range rep.Steps {
		ev.DurationMS += st.MS
	}
	if st, failed := rep.Failed(); failed {
		ev.Outcome = probeOutcomes[st.Name]
		if ev.Outcome == "" {
			ev.Outcome = inspect.Unreachable
		}
		ev.Detail = "probe failed at " + st.Name + ": " + st.Detail
		ev.LastError = uint32(st.LastError)
	}
	return ev
}

// runProbes runs the probe every interval until ctx is done, recording each
// result as an event.
func runProbes(ctx context.Context, every time.Duration, cfg probe.Config, ids *inspect.IDs,
	sensor string, rec interface{ Done(*inspect.Event) }, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		start := time.Now()
		rep := probe.Run(ctx, cfg)
		if ctx.Err() != nil {
			return
		}
		ev := probeEvent(rep, cfg, ids.Next(), sensor, start)
		rec.Done(&ev)
		if ev.Outcome != inspect.OK {
			log.Warn("scheduled probe failed", "outcome", ev.Outcome, "detail", ev.Detail)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
