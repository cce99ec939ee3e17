package e2e

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// TestScheduledProbe: with probe.interval set, serve runs the probe at
// start and records its result as an event with source probe. The tetra
// name does not resolve here, so the probe fails at its dns step.
func TestScheduledProbe(t *testing.T) {
	dns := startDNS(t, nil, []string{"tetra-defs.amp.cisco.com"})
	p := newServeProc(t, needBinary(t), serveConfig{DNS: []string{dns.Addr}},
		"TETRASCOPE_PROBE_INTERVAL=1h")
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	ev, err := newAPIClient(p.UIAddr()).WaitEvent(url.Values{"limit": {"10"}},
		func(e *inspect.Event) bool { return e.Source == inspect.SourceProbe }, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Outcome != inspect.DNSFailure || ev.Endpoint != inspect.EndpointTetra ||
		ev.Host != "tetra-defs.amp.cisco.com" || !strings.HasPrefix(ev.Detail, "probe failed at dns") ||
		ev.LastError == 0 || ev.ClientIP != "" {
		t.Fatalf("probe event %+v", ev.Event)
	}
}
