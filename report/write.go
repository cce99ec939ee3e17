package report

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// Formats are the output formats of a report, by the names of --format and
// format=.
var Formats = []string{"csv", "json", "html"}

// Write writes rep in format, one of Formats.
func Write(w io.Writer, rep *Report, format string) error {
	switch format {
	case "csv":
		return WriteCSV(w, rep)
	case "json":
		return WriteJSON(w, rep)
	case "html":
		return WriteHTML(w, rep)
	}
	return fmt.Errorf("unknown report format %q: want csv, json or html", format)
}

// ContentType returns the media type of format, one of Formats.
func ContentType(format string) string {
	switch format {
	case "csv":
		return "text/csv; charset=utf-8; header=present"
	case "json":
		return "application/json"
	}
	return "text/html; charset=utf-8"
}

// CSVHeader returns the columns of the report CSV: the client fields of
// DESIGN.md in their order with counts spread into one column per outcome
// (named by the outcome), then what the report adds.
func CSVHeader() []string {
	h := []string{"client_ip", "client_user", "users", "sensor", "first_seen", "last_seen",
		"last_tetra_ok", "tetra_attempts", "tetra_failures"}
	for _, o := range inspect.Outcomes {
		h = append(h, string(o))
	}
	return append(h, "state", "diagnosis", "diagnoses", "expected_lasterror",
		"lasterror_basis", "reported_lasterror", "agreement",
		"host_name", "failures", "failing_since", "lasterror_reason", "expected_meaning",
		"advice", "agreement_meaning", "matched_by", "endpoint_host", "endpoint_ip",
		"defversion", "last_update")
}

// WriteCSV writes the client table of rep as RFC 4180 CSV (CRLF line
// ends) under CSVHeader: one row per client, then one per imported
// endpoint this proxy never saw (state unknown, agreement not_seen). Lists
// (users, diagnoses) are joined with ';', times are RFC 3339 in UTC, an
// absent time or value is an empty cell. A cell starting with =, +, -, @,
// a tab or a carriage return gets a leading apostrophe, so that a
// spreadsheet does not run what a client or an imported file put there.
func WriteCSV(w io.Writer, rep *Report) error {
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	if err := cw.Write(CSVHeader()); err != nil {
		return fmt.Errorf("writing report csv: %w", err)
	}
	for i := range rep.Clients {
		if err := cw.Write(csvRow(&rep.Clients[i])); err != nil {
			return fmt.Errorf("writing report csv: %w", err)
		}
	}
	for i := range rep.NotSeen {
		if err := cw.Write(csvNotSeen(&rep.NotSeen[i])); err != nil {
			return fmt.Errorf("writing report csv: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("writing report csv: %w", err)
	}
	return nil
}

func csvRow(r *Row) []string {
	rec := []string{r.ClientIP, r.ClientUser, strings.Join(r.Users, ";"), r.Sensor,
		csvTime(&r.FirstSeen), csvTime(&r.LastSeen), csvTime(r.LastTetraOK),
		strconv.Itoa(r.TetraAttempts), strconv.Itoa(r.TetraFailures)}
	for _, o := range inspect.Outcomes {
		rec = append(rec, strconv.Itoa(r.Counts[o]))
	}
	names := make([]string, len(r.Diagnoses))
	for i, d := range r.Diagnoses {
		names[i] = d.Name
	}
	reported := ""
	if r.ReportedLastError != nil {
		reported = strconv.FormatUint(uint64(*r.ReportedLastError), 10)
	}
	rec = append(rec, string(r.State), r.Diagnosis, strings.Join(names, ";"),
		strconv.FormatUint(uint64(r.ExpectedLastError), 10), string(r.LastErrorBasis),
		reported, r.Agreement, r.HostName, strconv.Itoa(r.Failures), csvTime(r.FailingSince),
		r.LastErrorReason, r.ExpectedMeaning, r.Advice, r.AgreementMeaning, r.MatchedBy)
	if ep := r.Reported; ep != nil {
		rec = append(rec, ep.Host, ep.IP, ep.DefVersion, ep.LastUpdate)
	} else {
		rec = append(rec, "", "", "", "")
	}
	return defuse(rec)
}

func csvNotSeen(n *NotSeen) []string {
	rec := []string{n.IP, "", "", "", "", "", "", "0", "0"}
	for range inspect.Outcomes {
		rec = append(rec, "0")
	}
	rec = append(rec, string(inspect.StateUnknown), "", "",
		strconv.FormatUint(uint64(n.ExpectedLastError), 10), string(n.LastErrorBasis),
		strconv.FormatUint(uint64(n.LastError), 10), n.Agreement, n.Host, "0", "",
		"never seen at this proxy", "", "", n.AgreementMeaning, "",
		n.Host, n.IP, n.DefVersion, n.LastUpdate)
	return defuse(rec)
}

func csvTime(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// defuse puts an apostrophe before cells a spreadsheet would take for a
// formula.
func defuse(rec []string) []string {
	for i, c := range rec {
		if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
			rec[i] = "'" + c
		}
	}
	return rec
}

// WriteJSON writes rep as one indented JSON object (docs/report.md),
// ending in a newline. Maps come with sorted keys and lists in a fixed
// order, so the same report always gives the same bytes.
func WriteJSON(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(rep); err != nil {
		return fmt.Errorf("writing report json: %w", err)
	}
	return nil
}
