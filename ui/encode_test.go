package ui

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// filledEvent sets every field of an Event by reflection, strings to s, so
// that a field added to inspect.Event and missed by eventMessage fails
// TestEventMessage.
func filledEvent(t *testing.T, s string, n int64, f float64, tm time.Time) inspect.Event {
	t.Helper()
	var ev inspect.Event
	v := reflect.ValueOf(&ev).Elem()
	for i := range v.NumField() {
		fv := v.Field(i)
		switch fv.Kind() {
		case reflect.String:
			fv.SetString(s)
		case reflect.Int, reflect.Int64:
			fv.SetInt(n)
		case reflect.Uint32:
			fv.SetUint(uint64(n))
		case reflect.Float64:
			fv.SetFloat(f)
		case reflect.Struct:
			fv.Set(reflect.ValueOf(tm))
		default:
			t.Fatalf("field %s has kind %s: teach filledEvent and eventMessage about it",
				v.Type().Field(i).Name, fv.Kind())
		}
	}
	return ev
}

// TestEventMessage: the stream's own encoding of an event is byte for byte
// what encoding/json makes of it.
func TestEventMessage(t *testing.T) {
	plus2 := time.FixedZone("", 2*3600)
	cases := []inspect.Event{
		{},
		ended(7, "10.0.0.1", inspect.TLSAborted),
		filledEvent(t, "tetra-defs.amp.cisco.com", 443, 12.345, time.Date(2026, 12, 4, 10, 0, 0, 123456789, time.UTC)),
		filledEvent(t, `a "quoted" \ <b>&amp; tab	nl
 é 日本 `+"\u2028 \xff", -1, 1e-7, time.Date(2026, 1, 2, 3, 4, 5, 0, plus2)),
		filledEvent(t, "", math.MaxInt64, 1e21, time.Time{}),
		filledEvent(t, "x", 0, -0.5, time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC)),
		filledEvent(t, "x", 1, 123456789.125, time.Unix(1, 0)),
	}
	for i, ev := range cases {
		for _, kind := range []string{KindOpen, KindEvent} {
			want, err := json.Marshal(streamMessage{Type: kind, Event: &ev})
			if err != nil {
				t.Fatal(err)
			}
			got, err := eventMessage(kind, &ev)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("case %d %s:\n got %s (%v)\nwant %s", i, kind, got, err, want)
			}
		}
	}

	// What encoding/json refuses is refused.
	for _, ev := range []inspect.Event{
		{DurationMS: math.NaN()},
		{DurationMS: math.Inf(1)},
		{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if got, err := eventMessage(KindEvent, &ev); err == nil {
			t.Errorf("event %+v encoded as %s; want an error", ev, got)
		}
	}
}

func BenchmarkEventMessage(b *testing.B) {
	ev := ended(7, "10.0.0.1", inspect.OK)
	ev.Detail = "handshake completed; closed by the client"
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(streamMessage{Type: KindEvent, Event: &ev})
		}
	})
	b.Run("own", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = eventMessage(KindEvent, &ev)
		}
	})
}
