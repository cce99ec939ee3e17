package tlsrec

import "bytes"

// Handshake message types (RFC 5246 section 7.4, RFC 8446 section 4).
const (
	msgClientHello     = 1
	msgServerHello     = 2
	msgCertificate     = 11
	msgServerHelloDone = 14
)

const (
	hsHeaderLen = 4

	// certHeadLen covers a Certificate message's header, the length of its
	// certificate_list and the length of the first certificate.
	certHeadLen = hsHeaderLen + 3 + 3

	extServerName        = 0
	extSupportedVersions = 43

	minBufCap = 512
)

// helloRetryRandom is the ServerHello.random that marks a HelloRetryRequest
// (RFC 8446 section 4.1.3).
var helloRetryRandom = []byte{
	0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
	0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
}

// handshakeState reassembles the handshake messages of one direction, which
// may span records and Feed calls. Only the part of a message that is
// examined is kept; the rest is passed over.
type handshakeState struct {
	buf  []byte // the start of the current message, when it spans Feed calls
	want int    // bytes of the current message needed before examining it
	skip int    // bytes of the current message left to pass over
	msgs int    // messages examined
}

// handshake takes payload bytes of handshake records sent in clear and
// returns how many bytes of p it inspected. A message that lies whole in p
// is examined where it lies; only one that spans calls is copied.
func (t *Tracker) handshake(dir Direction, p []byte) int {
	h := &t.dirs[dir].hs
	n := 0
	for n < len(p) && !t.done[dir].Load() {
		if h.skip > 0 {
			k := min(h.skip, len(p)-n)
			h.skip -= k
			n += k
			continue
		}

		if len(h.buf) == 0 {
			rest := p[n:]
			want := hsHeaderLen
			for len(rest) >= want {
				need := t.message(dir, rest[:want])
				if t.done[dir].Load() {
					return n + want
				}
				if need == 0 {
					break
				}
				want = need
			}
			if len(rest) >= want {
				h.skip = messageLen(rest) - want
				n += want
				continue
			}
			h.want = want
			h.grow(want)
			h.buf = append(h.buf, rest...)
			return len(p)
		}

		k := min(h.want-len(h.buf), len(p)-n)
		h.buf = append(h.buf, p[n:n+k]...)
		n += k
		if len(h.buf) < h.want {
			return n
		}
		need := t.message(dir, h.buf)
		if t.done[dir].Load() {
			return n
		}
		if need > 0 {
			h.want = need
			h.grow(need)
			continue
		}
		h.skip = messageLen(h.buf) - len(h.buf)
		h.buf = h.buf[:0]
	}
	return n
}

// grow makes room for n bytes of a message in h.buf; n is at most
// MaxHandshakeLen.
func (h *handshakeState) grow(n int) {
	if cap(h.buf) >= n {
		return
	}
	b := make([]byte, len(h.buf), min(max(n, minBufCap), MaxHandshakeLen))
	copy(b, h.buf)
	h.buf = b
}

// messageLen returns the length of the handshake message that m starts,
// header included; m holds at least the header.
func messageLen(m []byte) int {
	return hsHeaderLen + (int(m[1])<<16 | int(m[2])<<8 | int(m[3]))
}

// message examines the start m of a handshake message, at least its
// header. It returns 0 when it is done with the message, or how many bytes
// of it must be in m before it can be examined.
func (t *Tracker) message(dir Direction, m []byte) (need int) {
	h := &t.dirs[dir].hs
	typ := m[0]
	total := messageLen(m)
	if dir == ClientToServer && h.msgs == 0 && typ != msgClientHello {
		t.fail(dir, "first handshake message is not a ClientHello")
		return 0
	}

	switch {
	case dir == ClientToServer && typ == msgClientHello,
		dir == ServerToClient && typ == msgServerHello:
		if total > MaxHandshakeLen {
			t.capped(dir)
			return 0
		}
		if len(m) < total {
			return total
		}
		if typ == msgClientHello {
			t.clientHello(m[hsHeaderLen:])
		} else {
			t.serverHello(m[hsHeaderLen:])
		}

	case dir == ServerToClient && typ == msgCertificate && t.hello && !t.tls13():
		t.res.Certificate = true
		if total < certHeadLen {
			break // an empty certificate_list
		}
		if len(m) < certHeadLen {
			return certHeadLen
		}
		list := int(m[4])<<16 | int(m[5])<<8 | int(m[6])
		end := certHeadLen + (int(m[7])<<16 | int(m[8])<<8 | int(m[9]))
		if list != total-hsHeaderLen-3 || end > total {
			t.fail(dir, "malformed Certificate")
			return 0
		}
		if end > MaxHandshakeLen {
			break // names left unread rather than buffering that much
		}
		if len(m) < end {
			return end
		}
		t.res.LeafIssuer, t.res.LeafSubject = certNames(m[certHeadLen:end])

	case dir == ServerToClient && typ == msgServerHelloDone && t.hello:
		t.res.ServerFlightDone = true
	}
	h.msgs++
	return 0
}

// clientHello records what a ClientHello carries. The server name is taken
// from the first one only; a second one answers a HelloRetryRequest.
func (t *Tracker) clientHello(body []byte) {
	name, ok := parseClientHello(body)
	if !ok {
		t.fail(ClientToServer, "malformed ClientHello")
		return
	}
	if !t.res.ClientHello && validHostName(name) {
		t.res.SNI = string(name)
	}
	t.res.ClientHello = true
}

// serverHello records the version a ServerHello chooses.
func (t *Tracker) serverHello(body []byte) {
	version, retry, ok := parseServerHello(body)
	if !ok || version == 0 {
		// Version 0 names nothing, and Result's ServerHello means a
		// version was chosen.
		t.fail(ServerToClient, "malformed ServerHello")
		return
	}
	if t.hello {
		return // only the first ServerHello chooses
	}
	t.version = version
	if retry && version >= 0x0304 {
		return // a second ClientHello and the real ServerHello follow
	}
	t.hello = true
	t.res.ServerHello = true
	t.res.Version = VersionName(version)
}

// parseClientHello checks the structure of a ClientHello body and returns
// the first host_name of its server_name extension, nil when absent.
func parseClientHello(body []byte) (name []byte, ok bool) {
	c := cursor{b: body}
	c.take(2 + 32) // legacy_version, random
	if len(c.vec8()) > 32 {
		return nil, false
	}
	if suites := c.vec16(); len(suites) == 0 || len(suites)%2 != 0 {
		return nil, false
	}
	if len(c.vec8()) == 0 { // compression methods
		return nil, false
	}
	if c.bad {
		return nil, false
	}
	if len(c.b) == 0 {
		return nil, true // no extensions at all
	}

	exts := cursor{b: c.vec16()}
	if c.bad || len(c.b) != 0 {
		return nil, false
	}
	seen := false
	for len(exts.b) > 0 {
		typ := exts.u16()
		data := exts.vec16()
		if exts.bad {
			return nil, false
		}
		if typ != extServerName || seen {
			continue
		}
		seen = true
		if name, ok = parseServerName(data); !ok {
			return nil, false
		}
	}
	return name, true
}

// parseServerName returns the first host_name of a server_name extension
// (RFC 6066 section 3).
func parseServerName(data []byte) (name []byte, ok bool) {
	c := cursor{b: data}
	list := cursor{b: c.vec16()}
	if c.bad || len(c.b) != 0 {
		return nil, false
	}
	for len(list.b) > 0 {
		nameType := list.u8()
		n := list.vec16()
		if list.bad {
			return nil, false
		}
		if nameType == 0 && name == nil {
			name = n
		}
	}
	return name, true
}

// parseServerHello checks the structure of a ServerHello body and returns
// the version it chooses and whether it is a HelloRetryRequest.
func parseServerHello(body []byte) (version uint16, retry, ok bool) {
	c := cursor{b: body}
	version = uint16(c.u16())
	random := c.take(32)
	if len(c.vec8()) > 32 { // legacy_session_id_echo
		return 0, false, false
	}
	c.u16() // cipher_suite
	c.u8()  // legacy_compression_method
	if c.bad {
		return 0, false, false
	}
	retry = bytes.Equal(random, helloRetryRandom)
	if len(c.b) == 0 {
		return version, retry, true
	}

	exts := cursor{b: c.vec16()}
	if c.bad || len(c.b) != 0 {
		return 0, false, false
	}
	for len(exts.b) > 0 {
		typ := exts.u16()
		data := exts.vec16()
		if exts.bad {
			return 0, false, false
		}
		if typ == extSupportedVersions {
			if len(data) != 2 {
				return 0, false, false
			}
			version = uint16(data[0])<<8 | uint16(data[1])
		}
	}
	return version, retry, true
}

// validHostName reports whether a server name is fit to be shown and
// stored: 1 to 255 printable ASCII bytes.
func validHostName(b []byte) bool {
	if len(b) == 0 || len(b) > 255 {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// cursor reads the big-endian fields of a handshake message. Reading past
// the end sets bad and yields zeros.
type cursor struct {
	b   []byte
	bad bool
}

func (c *cursor) take(n int) []byte {
	if c.bad || n > len(c.b) {
		c.bad = true
		return nil
	}
	v := c.b[:n:n]
	c.b = c.b[n:]
	return v
}

func (c *cursor) u8() int {
	v := c.take(1)
	if v == nil {
		return 0
	}
	return int(v[0])
}

func (c *cursor) u16() int {
	v := c.take(2)
	if v == nil {
		return 0
	}
	return int(v[0])<<8 | int(v[1])
}

func (c *cursor) vec8() []byte  { return c.take(c.u8()) }
func (c *cursor) vec16() []byte { return c.take(c.u16()) }
