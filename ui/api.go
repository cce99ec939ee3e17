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

// serveEvents answers {"events":[...]}, newest first.
func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.Query(), time.Now())
	if err != nil {
		writeParamError(w, err)
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
	writeJSON(w, http.StatusOK, struct {
		Events []inspect.Event `json:"events"`
	}{utcEvents(events)})
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
