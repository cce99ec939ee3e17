package tlsrec

import (
	"bytes"
	"testing"
)

// encodeTranscript turns chunks into fuzz input: each chunk is a two-byte
// header, the direction in the top bit and the length in the other 15,
// followed by its bytes.
func encodeTranscript(chunks []chunk) []byte {
	var b []byte
	for _, c := range chunks {
		for p := c.data; len(p) > 0; {
			n := min(len(p), 0x7fff)
			h := uint16(n) | uint16(c.dir)<<15
			b = append(b, byte(h>>8), byte(h))
			b = append(b, p[:n]...)
			p = p[n:]
		}
	}
	return b
}

// decodeTranscript reads what encodeTranscript writes; it accepts any input,
// cutting a chunk short when the input ends.
func decodeTranscript(b []byte) []chunk {
	var chunks []chunk
	for len(b) >= 2 {
		h := uint16(b[0])<<8 | uint16(b[1])
		n := min(int(h&0x7fff), len(b)-2)
		chunks = append(chunks, chunk{Direction(h >> 15), b[2 : 2+n]})
		b = b[2+n:]
	}
	return chunks
}

// fuzzLimits are the limits each fuzz input is tried with: the defaults and
// small ones, so that the caps are reached often.
var fuzzLimits = []struct {
	maxBytes   int64
	maxRecords int
}{{0, 0}, {700, 6}}

// checkFeeders feeds chunks in every way under each set of limits and
// checks that the results hold the invariants and do not depend on how the
// bytes were split.
func checkFeeders(t *testing.T, chunks []chunk) {
	for _, lim := range fuzzLimits {
		var first Result
		for i, f := range feeders {
			tr := &Tracker{MaxBytes: lim.maxBytes, MaxRecords: lim.maxRecords}
			f.feed(t, tr, chunks)
			got := tr.Result()
			checkInvariants(t, tr, got)
			if i == 0 {
				first = got
			} else if got != first {
				t.Fatalf("limits %+v: %s gives\n %+v\n%s gives\n %+v",
					lim, f.name, got, feeders[0].name, first)
			}
		}
	}
}

// FuzzTranscript feeds both directions of a conversation, seeded with real
// handshakes.
func FuzzTranscript(f *testing.F) {
	for _, c := range getCaptures(f) {
		f.Add(encodeTranscript(c.chunks))
	}
	c := getCaptures(f)["TLS 1.2"]
	reframed := frame(typeHandshake, 0x0301, clientHelloMsg(f, c), 7)
	f.Add(encodeTranscript(withClientHello(c, reframed)))
	f.Add(encodeTranscript([]chunk{{ClientToServer, []byte("GET / HTTP/1.1\r\n\r\n")}}))

	f.Fuzz(func(t *testing.T, data []byte) {
		checkFeeders(t, decodeTranscript(data))
	})
}

// FuzzStream feeds one direction's stream: the client's, or the server's
// after a real ClientHello.
func FuzzStream(f *testing.F) {
	for _, c := range getCaptures(f) {
		f.Add(stream(c.chunks, ClientToServer), false)
		f.Add(stream(c.chunks, ServerToClient), true)
	}
	c := getCaptures(f)["TLS 1.3"]
	msg := clientHelloMsg(f, c)
	f.Add(frame(typeHandshake, 0x0301, msg, 100), false)
	f.Add(frame(typeHandshake, 0x0301, padClientHello(f, msg, 17<<10), 16384), false)
	f.Add([]byte("\x16\x03\x01\x00\x05\x01\x00\x00\x01"), false)
	f.Add([]byte("\x15\x03\x03\x00\x02\x02\x30"), true)
	hello := c.chunks[0].data

	f.Fuzz(func(t *testing.T, data []byte, server bool) {
		chunks := []chunk{{ClientToServer, data}}
		if server {
			chunks = []chunk{{ClientToServer, hello}, {ServerToClient, data}}
		}
		checkFeeders(t, chunks)
	})
}

// FuzzCertNames reads names from arbitrary DER.
func FuzzCertNames(f *testing.F) {
	p := getPKI(f)
	f.Add(p.serverCert.Leaf.Raw)
	f.Add(p.serverCert.Certificate[1])
	f.Add(bytes.Repeat([]byte{0x30, 0x80}, 10))

	f.Fuzz(func(t *testing.T, der []byte) {
		issuer, subject := certNames(der)
		if len(issuer) > maxNameLen || len(subject) > maxNameLen {
			t.Fatalf("names longer than %d bytes: %d, %d", maxNameLen, len(issuer), len(subject))
		}
	})
}
