package store

// int tetrascope_register_bulk(void);
import "C"

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/tetrascope/tetrascope/inspect"
)

// Through database/sql, every event costs a trip from Go to C per column
// and another for the step, plus the conversions of database/sql itself:
// about half of an insert's time. Append therefore packs a batch's rows
// into one blob and hands it to tetrascope_insert_rows (bulk.c), an SQL
// function that runs the prepared insert for each row inside SQLite, so a
// batch crosses once. It runs on the writer connection, in Append's
// transaction, like any other statement.

func init() {
	if rc := C.tetrascope_register_bulk(); rc != 0 {
		panic(fmt.Sprintf("store: registering tetrascope_insert_rows: SQLite code %d", rc))
	}
}

// insertRowsSQL calls the bulk function with the insert, its number of
// values and the packed rows.
const insertRowsSQL = "SELECT tetrascope_insert_rows(?, ?, ?)"

// bulkRows and bulkBytes bound one call of tetrascope_insert_rows: how
// long a cancelled Append runs on, and the blob (a few hundred bytes per
// event, far below SQLite's limit of 1e9 bytes on a value even when the
// configured limits let requests make events of hundreds of KiB).
const (
	bulkRows  = 2048
	bulkBytes = 16 << 20
)

// The value tags of the packed rows, as bulk.c reads them: a tag byte,
// then eight little-endian bytes for a number, or a four-byte
// little-endian length and the bytes for a text.
const (
	tagInt   = 'i'
	tagFloat = 'f'
	tagText  = 't'
)

func packInt(b []byte, v int64) []byte {
	return binary.LittleEndian.AppendUint64(append(b, tagInt), uint64(v))
}

func packFloat(b []byte, v float64) []byte {
	return binary.LittleEndian.AppendUint64(append(b, tagFloat), math.Float64bits(v))
}

func packText(b []byte, s string) []byte {
	b = binary.LittleEndian.AppendUint32(append(b, tagText), uint32(len(s)))
	return append(b, s...)
}

// packEvent appends e's columns in the order of eventColumns. Texts are
// bounded far below 4 GiB by everything that makes events (request
// lines, log lines, the API's body limit).
func packEvent(b []byte, e *inspect.Event) []byte {
	b = packInt(b, e.ID)
	b = append(b, tagText, 0, 0, 0, 0)
	at := len(b)
	b = e.Time.UTC().AppendFormat(b, timeLayout)
	binary.LittleEndian.PutUint32(b[at-4:], uint32(len(b)-at))
	b = packFloat(b, e.DurationMS)
	b = packText(b, e.Source)
	b = packText(b, e.Sensor)
	b = packText(b, e.ClientIP)
	b = packText(b, e.ClientUser)
	b = packText(b, e.Method)
	b = packText(b, e.Host)
	b = packInt(b, int64(e.Port))
	b = packText(b, e.URL)
	b = packText(b, e.SNI)
	b = packText(b, string(e.Endpoint))
	b = packText(b, string(e.Outcome))
	b = packInt(b, int64(e.Status))
	b = packInt(b, int64(e.UpstreamStatus))
	b = packInt(b, e.BytesUp)
	b = packInt(b, e.BytesDown)
	b = packText(b, string(e.Close))
	b = packText(b, e.TLSVersion)
	b = packText(b, e.TLSAlert)
	b = packText(b, e.TLSIssuer)
	b = packText(b, e.Detail)
	b = packText(b, e.Diagnosis)
	return packInt(b, int64(e.LastError))
}
