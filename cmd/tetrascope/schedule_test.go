package main

import (
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/probe"
)

func TestProbeEvent(t *testing.T) {
	cfg := probe.Config{Host: "tetra-defs.amp.cisco.com", Port: 443}
	start := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)

	ok := probeEvent(probe.Report{OK: true, Steps: []probe.Step{
		{Name: probe.StepDNS, OK: true, MS: 2}, {Name: probe.StepTLS, OK: true, MS: 30},
	}}, cfg, 7, "s1", start)
	if ok.Outcome != inspect.OK || ok.Source != inspect.SourceProbe || ok.DurationMS != 32 ||
		ok.Endpoint != inspect.EndpointTetra || ok.ID != 7 || ok.LastError != 0 {
		t.Fatalf("passing probe: %+v", ok)
	}

	failed := probeEvent(probe.Report{Steps: []probe.Step{
		{Name: probe.StepDNS, OK: true},
		{Name: probe.StepProxyAuth, Detail: "407 to the credentials",
			LastError: inspect.LastErrorProxyAuth},
	}}, cfg, 8, "s1", start)
	if failed.Outcome != inspect.AuthFailed ||
		failed.LastError != uint32(inspect.LastErrorProxyAuth) ||
		failed.Detail != "probe failed at proxy_auth: 407 to the credentials" {
		t.Fatalf("failing probe: %+v", failed)
	}
}
