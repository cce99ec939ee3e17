// Package tlsrec follows the TLS records that cross a tunnel while its
// handshake runs, in both directions, without decrypting anything. It
// reports what travels in clear (the server name from the ClientHello, the
// version the server chose, a TLS 1.2 certificate's names, alerts) and
// infers from record types, sizes and directions whether the handshake
// completed, since TLS 1.3 encrypts everything after the ServerHello.
//
// A proxy feeds a Tracker the bytes it relays until Feed says a direction
// needs no more inspection, then hands that direction to a plain copy.
// Feed bytes before writing them on, so that the order in which the two
// directions are fed follows the order of the conversation: a reply is never
// fed before the message it answers.
package tlsrec

import (
	"strconv"
	"sync"
	"sync/atomic"
)

// Direction says which way bytes crossed a tunnel.
type Direction uint8

// The two directions of a tunnel.
const (
	// ClientToServer is the direction of the bytes the client sent.
	ClientToServer Direction = iota
	// ServerToClient is the direction of the bytes the server sent.
	ServerToClient
)

// String returns "client" or "server", naming who sent the bytes.
func (d Direction) String() string {
	switch d {
	case ClientToServer:
		return "client"
	case ServerToClient:
		return "server"
	}
	return "direction_" + strconv.Itoa(int(d))
}

// Limits on what a Tracker accepts and buffers.
const (
	// MaxRecordLen is the largest record payload accepted: 2^14 bytes of
	// plaintext plus the 2048 bytes of expansion TLS 1.2 allows.
	MaxRecordLen = 16384 + 2048

	// MaxHandshakeLen is the most a Tracker buffers of one handshake
	// message. ClientHello and ServerHello are examined whole; a larger
	// one stops the inspection of its direction (Result.Capped).
	MaxHandshakeLen = 64 << 10

	// DefaultMaxBytes is the number of bytes inspected per direction when
	// Tracker.MaxBytes is zero.
	DefaultMaxBytes = 64 << 10

	// DefaultMaxRecords is the number of records inspected per direction
	// when Tracker.MaxRecords is zero.
	DefaultMaxRecords = 1024
)

// alertSizeMax is the largest TLS 1.3 record payload taken for an encrypted
// alert: two bytes of alert, one of inner content type, a 16-byte AEAD tag,
// and a little room for padding. A client Finished is at least 53 bytes.
const alertSizeMax = 24

// Record content types (RFC 8446 section 5.1, RFC 6520).
const (
	typeChangeCipherSpec = 20
	typeAlert            = 21
	typeHandshake        = 22
	typeApplicationData  = 23
	typeHeartbeat        = 24
)

const recordHeaderLen = 5

// Result is what a Tracker has seen so far. The zero Result means nothing
// was seen.
type Result struct {
	TLS    bool // the client's first bytes were a TLS handshake record
	NotTLS bool // the client's first bytes were clearly not TLS

	// SNI is the server_name of the client's first ClientHello (with
	// Encrypted Client Hello, the public outer name); empty when absent or
	// when it is not a printable ASCII name of at most 255 bytes.
	SNI string

	ClientHello bool // a ClientHello was parsed
	ServerHello bool // a ServerHello was parsed (a HelloRetryRequest is not one)

	// Version is the version the server chose ("TLS 1.2", "TLS 1.3", see
	// VersionName), from the ServerHello's supported_versions extension
	// when present; empty when no ServerHello was seen.
	Version string

	// Certificate reports that the server's Certificate message crossed in
	// clear, which happens only up to TLS 1.2.
	Certificate bool
	// LeafIssuer and LeafSubject are the issuer and subject of the first
	// certificate of that message, as RFC 2253 strings ("CN=...,O=...");
	// empty when not seen or not parsable.
	LeafIssuer, LeafSubject string

	// ServerFlightDone reports that the server's first flight finished: a
	// ServerHelloDone, or the server's Finished of a resumed TLS 1.2
	// session, or (TLS 1.3) the first encrypted record after the
	// ServerHello.
	ServerFlightDone bool

	// Complete reports that the handshake completed: up to TLS 1.2, a
	// ChangeCipherSpec followed by an encrypted record from both sides;
	// with TLS 1.3, an encrypted record from the client after the
	// ServerHello too large to be an alert.
	Complete bool

	// Alert is the IANA name of an alert seen in clear ("unknown_ca",
	// "handshake_failure", see AlertName): the first fatal one, otherwise
	// the first one. Empty when none was seen. AlertFrom and AlertFatal
	// describe it and are meaningless when Alert is empty.
	Alert      string
	AlertFrom  Direction
	AlertFatal bool

	// EncryptedAlertLikely reports, for TLS 1.3, that the client answered
	// the server's flight with a record too short to be its Finished: in
	// practice an encrypted alert, such as a rejected certificate.
	EncryptedAlertLikely bool

	// BytesSeen counts the bytes inspected in each direction, indexed by
	// Direction; bytes fed after a direction was done are not counted.
	BytesSeen [2]int64

	// Capped reports that a direction stopped being inspected at a byte,
	// record or buffer limit before its part of the handshake resolved.
	Capped bool

	// Err is a short reason when a record stream was malformed, prefixed
	// by the direction ("client: record length 20000 exceeds limit");
	// empty otherwise. Only the first problem is kept.
	Err string
}

// Tracker follows the handshake of one tunnel from both directions. Its
// zero value is ready to use; Feed may be called by two goroutines, one per
// direction. A Tracker must not be copied after first use.
type Tracker struct {
	// MaxBytes caps the bytes inspected per direction; zero means
	// DefaultMaxBytes. Set it before the first Feed.
	MaxBytes int64
	// MaxRecords caps the records inspected per direction; zero means
	// DefaultMaxRecords. Set it before the first Feed.
	MaxRecords int

	done [2]atomic.Bool // read without the lock, so that Feed is cheap when done

	mu      sync.Mutex
	res     Result
	dirs    [2]dirState
	version uint16 // chosen by the server; 0 until its (retry) ServerHello
	hello   bool   // the real ServerHello was seen (not a HelloRetryRequest)
}

// dirState is the state of one direction's record stream.
type dirState struct {
	hdr     [recordHeaderLen]byte
	hdrN    int  // bytes of hdr filled
	typ     byte // content type of the current record
	recLen  int  // payload length of the current record
	left    int  // payload bytes of the current record still to come
	mode    recordMode
	records int

	ccs      bool // a ChangeCipherSpec switched this direction to encryption (TLS <= 1.2)
	finished bool // an encrypted record followed that ChangeCipherSpec

	alert  [2]byte // an alert split across records
	alertN int

	hs handshakeState
}

// recordMode says what is done with the payload of the current record.
type recordMode uint8

const (
	modeSkip recordMode = iota
	modeAlert
	modeHandshake
)

// Feed inspects p, the bytes just relayed in direction dir, which may hold
// any part of the stream: a single byte, or many records. It reports
// whether that direction needs no more inspection: its part of the
// handshake resolved, it is not TLS, it is malformed, or a limit was
// reached. Once done, Feed for that direction returns true at once. An
// unknown dir is reported done. Feed does not keep p.
func (t *Tracker) Feed(dir Direction, p []byte) (done bool) {
	if dir > ServerToClient {
		return true
	}
	if t.done[dir].Load() {
		return true
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done[dir].Load() {
		return true
	}

	maxBytes := t.MaxBytes
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if room := maxBytes - t.res.BytesSeen[dir]; int64(len(p)) > room {
		p = p[:max(room, 0)]
	}
	t.res.BytesSeen[dir] += int64(t.records(dir, p))

	if !t.done[dir].Load() && t.res.BytesSeen[dir] >= maxBytes {
		t.capped(dir)
	}
	return t.done[dir].Load()
}

// Done reports whether direction dir needs no more inspection.
func (t *Tracker) Done(dir Direction) bool {
	return dir > ServerToClient || t.done[dir].Load()
}

// Result returns what the Tracker has seen so far.
func (t *Tracker) Result() Result {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.res
}

// records splits p into record headers and payloads and returns how many
// bytes of p it inspected: all of them, unless the direction stopped. The
// count does not depend on how the stream was split across calls.
func (t *Tracker) records(dir Direction, p []byte) int {
	d := &t.dirs[dir]
	n := 0
	for n < len(p) && !t.done[dir].Load() {
		if d.hdrN < recordHeaderLen {
			d.hdr[d.hdrN] = p[n]
			d.hdrN++
			n++
			t.headerByte(dir)
			continue
		}

		chunk := p[n : n+min(d.left, len(p)-n)]
		used := len(chunk)
		switch d.mode {
		case modeAlert:
			used = t.alertBytes(dir, chunk)
		case modeHandshake:
			used = t.handshake(dir, chunk)
		}
		n += used
		d.left -= used
		if d.left == 0 && !t.done[dir].Load() {
			t.endRecord(dir)
		}
	}
	return n
}

// headerByte checks the record header byte that just arrived, so that a
// stream that is not TLS is recognised by its first bytes, and starts the
// record once the header is whole.
func (t *Tracker) headerByte(dir Direction) {
	d := &t.dirs[dir]
	first := dir == ClientToServer && d.records == 0
	b := d.hdr[d.hdrN-1]
	switch d.hdrN {
	case 1:
		if first && b != typeHandshake {
			t.notTLS()
			return
		}
		if b < typeChangeCipherSpec || b > typeHeartbeat {
			t.fail(dir, "unknown record type "+strconv.Itoa(int(b)))
			return
		}
	case 2:
		if b == 3 {
			break
		}
		if first {
			t.notTLS()
		} else {
			t.fail(dir, "bad record version major "+strconv.Itoa(int(b)))
		}
		return
	}
	if d.hdrN < recordHeaderLen {
		return
	}

	d.records++
	maxRecords := t.MaxRecords
	if maxRecords <= 0 {
		maxRecords = DefaultMaxRecords
	}
	if d.records > maxRecords {
		t.capped(dir)
		return
	}
	d.typ = d.hdr[0]
	d.recLen = int(d.hdr[3])<<8 | int(d.hdr[4])
	d.left = d.recLen
	if d.recLen > MaxRecordLen {
		t.fail(dir, "record length "+strconv.Itoa(d.recLen)+" exceeds limit")
		return
	}
	if first {
		t.res.TLS = true
	}
	d.mode = t.recordMode(dir)
	if d.left == 0 {
		t.endRecord(dir)
	}
}

// recordMode decides whether the payload of the record that starts is read
// in clear, from the content type and what happened before.
func (t *Tracker) recordMode(dir Direction) recordMode {
	d := &t.dirs[dir]
	switch d.typ {
	case typeAlert:
		// Up to TLS 1.2, alerts after a ChangeCipherSpec are encrypted.
		// TLS 1.3 protects every record under the outer type
		// application_data (RFC 8446 section 5.1), so an alert record
		// after its ServerHello is in clear only when it has the size of
		// one: a client rejecting the ServerHello itself sends such.
		if d.ccs {
			return modeSkip
		}
		if t.tls13() && t.hello && d.recLen != 2 {
			return modeSkip
		}
		return modeAlert
	case typeHandshake:
		if d.ccs {
			return modeSkip // TLS <= 1.2: the encrypted Finished
		}
		if dir == ServerToClient && t.tls13() && t.hello {
			return modeSkip // not expected: TLS 1.3 encrypts under type 23
		}
		return modeHandshake
	}
	return modeSkip
}

// endRecord acts on a record whose payload has been read whole.
func (t *Tracker) endRecord(dir Direction) {
	d := &t.dirs[dir]
	d.hdrN = 0
	switch d.typ {
	case typeChangeCipherSpec:
		// TLS 1.3 sends a ChangeCipherSpec only for middlebox
		// compatibility; it switches nothing. Before the ServerHello
		// the version is unknown, and a TLS 1.2 peer sends none yet.
		if t.version != 0 && !t.tls13() {
			d.ccs = true
		}
	case typeAlert:
		if d.mode == modeSkip {
			t.stop(dir) // an encrypted alert ends the handshake for dir
		}
	case typeHandshake:
		if d.mode == modeSkip && d.ccs {
			t.finished(dir)
		}
	case typeApplicationData:
		t.applicationData(dir)
	}
}

// applicationData acts on an encrypted record of type application_data.
func (t *Tracker) applicationData(dir Direction) {
	d := &t.dirs[dir]
	switch {
	case t.tls13() && t.hello && dir == ServerToClient:
		t.res.ServerFlightDone = true
		t.stop(dir)
	case t.tls13() && t.hello:
		// TODO: a TLS 1.3 server that rejects the client's certificate
		// says so in an encrypted alert after the client's Finished, so
		// such a handshake counts as complete here.
		if d.recLen > alertSizeMax {
			t.res.Complete = true
			t.stop(ClientToServer)
			t.stop(ServerToClient)
			return
		}
		t.res.EncryptedAlertLikely = true
		t.stop(dir)
	case d.ccs:
		t.finished(dir)
	}
	// Otherwise early data or a record out of place: nothing to learn.
}

// finished records that direction dir sent its encrypted Finished after a
// ChangeCipherSpec (TLS <= 1.2).
func (t *Tracker) finished(dir Direction) {
	t.dirs[dir].finished = true
	if dir == ServerToClient {
		t.res.ServerFlightDone = true
	}
	if t.dirs[ClientToServer].finished && t.dirs[ServerToClient].finished {
		t.res.Complete = true
	}
	t.stop(dir)
}

// alertBytes reads alerts in clear, which may be split across records, and
// returns how many bytes of p it inspected.
func (t *Tracker) alertBytes(dir Direction, p []byte) int {
	d := &t.dirs[dir]
	for i, b := range p {
		d.alert[d.alertN] = b
		d.alertN++
		if d.alertN < len(d.alert) {
			continue
		}
		d.alertN = 0
		if !t.alert(dir, d.alert[0], d.alert[1]) {
			return i + 1
		}
	}
	return len(p)
}

// alert records one alert and reports whether dir is still inspected.
func (t *Tracker) alert(dir Direction, level, desc byte) bool {
	const warning, fatal = 1, 2
	if level != warning && level != fatal {
		t.fail(dir, "alert level "+strconv.Itoa(int(level)))
		return false
	}

	isFatal := level == fatal
	if t.res.Alert == "" || (isFatal && !t.res.AlertFatal) {
		t.res.Alert = AlertName(desc)
		t.res.AlertFrom = dir
		t.res.AlertFatal = isFatal
	}

	// A fatal alert ends the handshake for both sides. Warnings such as
	// unrecognized_name may precede a handshake that goes on; close_notify
	// ends the sender's side.
	switch {
	case isFatal:
		t.stop(ClientToServer)
		t.stop(ServerToClient)
		return false
	case desc == 0:
		t.stop(dir)
		return false
	}
	return true
}

// tls13 reports whether the server chose TLS 1.3 or later.
func (t *Tracker) tls13() bool { return t.version >= 0x0304 }

// stop marks direction dir as needing no more inspection and drops its
// buffer.
func (t *Tracker) stop(dir Direction) {
	t.done[dir].Store(true)
	t.dirs[dir].hs.buf = nil
}

func (t *Tracker) fail(dir Direction, reason string) {
	if t.res.Err == "" {
		t.res.Err = dir.String() + ": " + reason
	}
	t.stop(dir)
}

func (t *Tracker) capped(dir Direction) {
	t.res.Capped = true
	t.stop(dir)
}

// notTLS records that the client does not speak TLS; nothing is left to
// inspect on either side.
func (t *Tracker) notTLS() {
	t.res.NotTLS = true
	t.stop(ClientToServer)
	t.stop(ServerToClient)
}
