package ui

import (
	"encoding/csv"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// eventColumn is one column of the events CSV: an Event field and its JSON
// name, which is the header.
type eventColumn struct {
	name  string
	index int
}

// eventColumns are the columns of the events CSV, in the order of the
// Event struct, taken from its JSON tags so that a new field becomes a new
// column by itself.
var eventColumns = func() []eventColumn {
	t := reflect.TypeFor[inspect.Event]()
	cols := make([]eventColumn, 0, t.NumField())
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		cols = append(cols, eventColumn{name: name, index: i})
	}
	return cols
}()

var timeType = reflect.TypeFor[time.Time]()

// writeEventsCSV writes events as RFC 4180 CSV (CRLF line ends), one row
// per event under a header of field names.
//
// A text cell that a spreadsheet would take for a formula (one starting
// with =, +, -, @, a tab or a carriage return) gets a leading apostrophe:
// hosts, URLs and details come from the network, and opening an export must
// not run what a client put there.
func writeEventsCSV(w io.Writer, events []inspect.Event) error {
	cw := csv.NewWriter(w)
	cw.UseCRLF = true

	row := make([]string, len(eventColumns))
	for i, c := range eventColumns {
		row[i] = c.name
	}
	if err := cw.Write(row); err != nil {
		return fmt.Errorf("writing csv header: %w", err)
	}
	for i := range events {
		v := reflect.ValueOf(&events[i]).Elem()
		for j, c := range eventColumns {
			row[j] = csvCell(v.Field(c.index))
		}
		if err := cw.Write(row); err != nil {
			return fmt.Errorf("writing csv row: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("writing csv: %w", err)
	}
	return nil
}

// csvCell formats one field: times in RFC 3339 UTC with fraction, numbers
// in decimal, text defused for spreadsheets.
func csvCell(v reflect.Value) string {
	if v.Type() == timeType {
		t := v.Interface().(time.Time)
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	switch v.Kind() {
	case reflect.String:
		return defuse(v.String())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'f', -1, 64)
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	}
	// TestEventsCSVColumns keeps every field of Event in the cases above.
	return fmt.Sprint(v.Interface())
}

// defuse prefixes text that a spreadsheet would evaluate with an
// apostrophe.
func defuse(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
