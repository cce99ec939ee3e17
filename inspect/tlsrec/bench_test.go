package tlsrec

import "testing"

// BenchmarkFeedClientHello inspects a real TLS 1.3 ClientHello (with its
// post-quantum key share) in a new Tracker per iteration.
func BenchmarkFeedClientHello(b *testing.B) {
	c := getCaptures(b)["TLS 1.3"]
	hello := c.chunks[0].data
	reframed := frame(typeHandshake, 0x0301, clientHelloMsg(b, c), 512)

	cases := []struct {
		name    string
		data    []byte
		segment int // bytes per Feed call
	}{
		{"one_call", hello, len(hello)},
		{"segments_of_100", hello, 100},
		{"records_of_512", reframed, len(reframed)},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.data)))
			for b.Loop() {
				var tr Tracker
				for p := bc.data; len(p) > 0; {
					n := min(len(p), bc.segment)
					tr.Feed(ClientToServer, p[:n])
					p = p[n:]
				}
				if tr.Result().SNI != testHost {
					b.Fatal("no SNI")
				}
			}
		})
	}
}

// BenchmarkHandshake inspects whole real handshakes, both directions, as a
// proxy relaying them would.
func BenchmarkHandshake(b *testing.B) {
	for _, name := range []string{"TLS 1.2", "TLS 1.3"} {
		chunks := coalesce(getCaptures(b)[name].chunks)
		var size int64
		for _, c := range chunks {
			size += int64(len(c.data))
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(size)
			for b.Loop() {
				var tr Tracker
				for _, c := range chunks {
					tr.Feed(c.dir, c.data)
				}
				if !tr.Result().Complete {
					b.Fatal("not complete")
				}
			}
		})
	}
}
