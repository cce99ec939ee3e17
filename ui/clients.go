package ui

import (
	"net/url"
	"slices"
	"strings"

	"github.com/tetrascope/tetrascope/inspect"
)

// clientQuery selects rows of /api/v1/clients. The zero clientQuery matches
// every client.
type clientQuery struct {
	ip        string // exact client address
	user      string // the latest user or any user seen, case-insensitive
	sensor    string
	state     inspect.ClientState
	diagnosis string // one of the client's current diagnoses
}

// parseClientQuery reads the parameters of /api/v1/clients: client, user,
// sensor, state and diagnosis, each optional.
func parseClientQuery(q url.Values) (clientQuery, error) {
	cq := clientQuery{
		ip:     strings.TrimSpace(q.Get("client")),
		user:   strings.TrimSpace(q.Get("user")),
		sensor: strings.TrimSpace(q.Get("sensor")),
	}
	if v := strings.TrimSpace(q.Get("state")); v != "" {
		cq.state = inspect.ClientState(v)
		if !slices.Contains(clientStates, cq.state) {
			return cq, &paramError{"state", "want one of healthy, failing, silent, unknown"}
		}
	}
	if v := strings.TrimSpace(q.Get("diagnosis")); v != "" {
		if !slices.Contains(inspect.DiagnosisNames, v) {
			return cq, &paramError{"diagnosis",
				"want one of " + strings.Join(inspect.DiagnosisNames, ", ")}
		}
		cq.diagnosis = v
	}
	return cq, nil
}

// clientStates lists the states a client can be in.
var clientStates = []inspect.ClientState{
	inspect.StateHealthy, inspect.StateFailing, inspect.StateSilent, inspect.StateUnknown,
}

// match reports whether c passes every condition of cq.
func (cq *clientQuery) match(c *inspect.Client) bool {
	if cq.ip != "" && c.ClientIP != cq.ip ||
		cq.user != "" && !hasUser(c, cq.user) ||
		cq.sensor != "" && c.Sensor != cq.sensor ||
		cq.state != "" && c.State != cq.state {
		return false
	}
	if cq.diagnosis == "" {
		return true
	}
	return slices.ContainsFunc(c.Diagnoses, func(d inspect.Diagnosis) bool {
		return d.Name == cq.diagnosis
	})
}

// clientMatch applies the client, user and sensor conditions of a
// viewer's event filter to a client; the others describe events and do not
// apply.
func clientMatch(f *inspect.Filter, c *inspect.Client) bool {
	cq := clientQuery{ip: f.ClientIP, user: f.User, sensor: f.Sensor}
	return cq.match(c)
}

// hasUser reports whether user is the client's latest user or one of the
// users seen from it, compared as the event filter compares users.
func hasUser(c *inspect.Client, user string) bool {
	if strings.EqualFold(c.ClientUser, user) {
		return true
	}
	return slices.ContainsFunc(c.Users, func(u string) bool { return strings.EqualFold(u, user) })
}
