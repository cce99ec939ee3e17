package ui

import (
	"encoding/json"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/tetrascope/tetrascope/inspect"
)

// eventMessage encodes the stream message of kind about ev, as
// json.Marshal(streamMessage{Type: kind, Event: ev}) would. Every connection
// is encoded twice (open and event) while viewers watch, which through
// encoding/json's reflection cost the proxy as much as the rest of the
// stream together; field by field it costs a tenth. TestEventMessage holds
// it to encoding/json's output for every field of inspect.Event.
func eventMessage(kind string, ev *inspect.Event) ([]byte, error) {
	return appendEventMessage(make([]byte, 0, 512), kind, ev)
}

// appendEventMessage appends to b what eventMessage returns.
func appendEventMessage(b []byte, kind string, ev *inspect.Event) ([]byte, error) {
	if y := ev.Time.Year(); y < 0 || y > 9999 || math.IsNaN(ev.DurationMS) ||
		math.IsInf(ev.DurationMS, 0) {
		// What encoding/json refuses, it refuses here too.
		data, err := json.Marshal(streamMessage{Type: kind, Event: ev})
		return append(b, data...), err
	}
	b = append(b, `{"type":`...)
	b = appendString(b, kind)
	b = append(b, `,"event":{"id":`...)
	b = strconv.AppendInt(b, ev.ID, 10)
	b = append(b, `,"time":"`...)
	b = ev.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","duration_ms":`...)
	b = appendFloat(b, ev.DurationMS)
	b = appendField(b, "source", ev.Source)
	b = appendField(b, "sensor", ev.Sensor)
	b = appendField(b, "client_ip", ev.ClientIP)
	b = appendField(b, "client_user", ev.ClientUser)
	b = appendField(b, "method", ev.Method)
	b = appendField(b, "host", ev.Host)
	b = append(b, `,"port":`...)
	b = strconv.AppendInt(b, int64(ev.Port), 10)
	b = appendField(b, "url", ev.URL)
	b = appendField(b, "sni", ev.SNI)
	b = appendField(b, "endpoint", string(ev.Endpoint))
	b = appendField(b, "outcome", string(ev.Outcome))
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(ev.Status), 10)
	b = append(b, `,"upstream_status":`...)
	b = strconv.AppendInt(b, int64(ev.UpstreamStatus), 10)
	b = append(b, `,"bytes_up":`...)
	b = strconv.AppendInt(b, ev.BytesUp, 10)
	b = append(b, `,"bytes_down":`...)
	b = strconv.AppendInt(b, ev.BytesDown, 10)
	b = appendField(b, "close", string(ev.Close))
	b = appendField(b, "tls_version", ev.TLSVersion)
	b = appendField(b, "tls_alert", ev.TLSAlert)
	b = appendField(b, "tls_issuer", ev.TLSIssuer)
	b = appendField(b, "detail", ev.Detail)
	b = appendField(b, "diagnosis", ev.Diagnosis)
	b = append(b, `,"lasterror":`...)
	b = strconv.AppendUint(b, uint64(ev.LastError), 10)
	return append(b, "}}"...), nil
}

// appendField appends ,"name":"value".
func appendField(b []byte, name, value string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, value)
}

// appendString appends s as a JSON string. Plain printable ASCII, nearly
// every value, is copied as it is; anything else is left to encoding/json,
// with its escapes (HTML characters, control characters, invalid UTF-8,
// line separators).
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' ||
			c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendFloat appends f as encoding/json writes a float64: the shortest
// decimal form, in exponent form only for very small or large magnitudes.
func appendFloat(b []byte, f float64) []byte {
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// 1e-07 is written 1e-7.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
