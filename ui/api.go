package ui

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// errorBody is the JSON of every error answer. Param names the query
// parameter at fault, when one is.
type errorBody struct {
	Error string `json:"error"`
	Param string `json:"param,omitempty"`
}

// serveEvents answers {"events":[...]}, newest first; with format=csv, the
// same events as a CSV file, and with format=json, the JSON as a file.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.Query(), time.Now())
	if err != nil {
		writeParamError(w, err)
		return
	}
	format := r.URL.Query().Get("format")
	if format != "" && format != "json" && format != "csv" {
		writeError(w, http.StatusBadRequest, "format", "format: want json or csv")
		return
	}
	if s.deps.Events == nil {
		writeError(w, http.StatusServiceUnavailable, "", "no event store")
		return
	}

	events, err := s.deps.Events.Events(r.Context(), f)
	if err != nil {
		// The client gets a short reason; the cause, which may name
		// files or SQL, goes to the log.
		s.log.Error("querying events", keyErr, err)
		writeError(w, http.StatusInternalServerError, "", "querying the event store failed")
		return
	}
	if len(events) > f.Limit {
		events = events[:f.Limit]
	}
	events = utcEvents(events)

	// An explicit format is an export: the browser saves it as a file.
	if format != "" {
		name := "tetrascope-events-" + time.Now().UTC().Format("20060102-150405") + "." + format
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	}
	if format == "csv" {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8; header=present")
		if err := writeEventsCSV(w, events); err != nil {
			// The header is out: the client sees a short file.
			s.log.Debug("writing events csv", keyErr, err)
		}
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Events []inspect.Event `json:"events"`
	}{events})
}

// serveActive answers {"active":[...]}: the tunnels open now.
func (s *Server) serveActive(w http.ResponseWriter, r *http.Request) {
	var active []inspect.Event
	if s.deps.Active != nil {
		active = s.deps.Active()
	}
	writeJSON(w, http.StatusOK, struct {
		Active []inspect.Event `json:"active"`
	}{utcEvents(active)})
}

// serveClients answers {"clients":[...]}: every client's health, failing
// first, narrowed by the client, user, sensor, state and diagnosis
// parameters.
func (s *Server) serveClients(w http.ResponseWriter, r *http.Request) {
	cq, err := parseClientQuery(r.URL.Query())
	if err != nil {
		writeParamError(w, err)
		return
	}
	if s.deps.Clients == nil {
		writeError(w, http.StatusServiceUnavailable, "", "no client state")
		return
	}

	out := []inspect.Client{}
	for _, c := range s.deps.Clients() {
		if cq.match(&c) {
			out = append(out, c)
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Clients []inspect.Client `json:"clients"`
	}{out})
}

// utcEvents returns events with their times in UTC, as the contract says,
// and never nil, so that an empty list encodes as [] rather than null.
func utcEvents(events []inspect.Event) []inspect.Event {
	out := make([]inspect.Event, len(events))
	for i, ev := range events {
		ev.Time = ev.Time.UTC()
		out[i] = ev
	}
	return out
}

// writeParamError answers 400 for a bad query parameter.
func writeParamError(w http.ResponseWriter, err error) {
	var pe *paramError
	if errors.As(err, &pe) {
		writeError(w, http.StatusBadRequest, pe.param, pe.Error())
		return
	}
	writeError(w, http.StatusBadRequest, "", err.Error())
}

// writeError answers status with an errorBody.
func writeError(w http.ResponseWriter, status int, param, msg string) {
	writeJSON(w, status, errorBody{Error: msg, Param: param})
}

// writeJSON answers status with v as JSON. An encoding error cannot be
// reported once the header is out; the types written here always encode.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
