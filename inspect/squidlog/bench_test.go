package squidlog

import (
	"fmt"
	"testing"
)

// benchLines returns a mix of native lines like a busy proxy's: mostly
// tunnels and plain fetches of other hosts, with tetra, revocation,
// authentication and failure lines among them.
func benchLines() [][]byte {
	templates := []string{
		"%d.%03d %6d 10.1.%d.%d TCP_TUNNEL/200 %d CONNECT www%d.example.com:443 - HIER_DIRECT/93.184.216.34 -",
		"%d.%03d %6d 10.1.%d.%d TCP_MISS/200 %d GET http://cdn%d.example.net/assets/app.js - HIER_DIRECT/151.101.1.1 application/javascript",
		"%d.%03d %6d 10.1.%d.%d TCP_TUNNEL/200 %d CONNECT tetra-defs.amp.cisco.com:443 CORP%%5Cpc%d$ HIER_DIRECT/52.1.2.3 -",
		"%d.%03d %6d 10.1.%d.%d TCP_MISS/200 %d GET http://crl.identrust.com/DSTROOTCAX3CRL%d.crl - HIER_DIRECT/192.35.177.64 application/pkix-crl",
		"%d.%03d %6d 10.1.%d.%d TCP_DENIED/407 %d CONNECT tetra-defs.amp.cisco.com:443 - HIER_NONE/- text/html%.0d",
		"%d.%03d %6d 10.1.%d.%d NONE_NONE/503 %d CONNECT tetra-defs.eu.amp.cisco.com:443 - HIER_NONE/- -%.0d",
		"%d.%03d %6d 10.1.%d.%d TCP_MISS_ABORTED/200 %d GET http://update.amp.cisco.com/av64bit/versions.id%d - HIER_DIRECT/23.1.2.3 text/plain",
		"%d.%03d %6d 10.1.%d.%d TCP_TUNNEL/200 %d CONNECT api%d.example.org:443 - HIER_DIRECT/104.16.1.1 -",
	}
	var lines [][]byte
	for i := range 4096 {
		tpl := templates[i%len(templates)]
		if i%16 >= 8 { // most traffic is other hosts
			tpl = templates[i%2]
		}
		lines = append(lines, fmt.Appendf(nil, tpl, 1700000000+i, i%1000, i%5000,
			i%256, i%200+1, 1000+i*37%900000, i%97))
	}
	return lines
}

// BenchmarkParseNative parses and classifies native lines on one core; the
// target is ten million lines in under a minute (167k lines/s).
func BenchmarkParseNative(b *testing.B) {
	p := mustParser(b, Config{Catalog: testCatalog(b)})
	lines := benchLines()
	for _, l := range lines {
		if _, err := p.Parse(l); err != nil {
			b.Fatalf("%s: %v", l, err)
		}
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if _, err := p.Parse(lines[n%len(lines)]); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "lines/s")
}

// BenchmarkParseCustom does the same with a custom format that carries
// %err_code and three more fields.
func BenchmarkParseCustom(b *testing.B) {
	p := mustParser(b, Config{Format: FormatCustom, Catalog: testCatalog(b),
		LogFormat: LogFormatSquid + " %err_code %err_detail %<Hs %>st"})
	lines := benchLines()
	for i, l := range lines {
		lines[i] = append(l, " ERR_CONNECT_FAIL errno=111 - 180"...)
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if _, err := p.Parse(lines[n%len(lines)]); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "lines/s")
}
