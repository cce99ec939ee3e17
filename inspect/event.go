// Package inspect is the domain core of tetrascope: the vocabulary shared by
// every other package (events, outcomes, endpoints, lasterror codes), the
// endpoint catalog and the classification of what a proxy observed into an
// outcome. It imports no other package of the project.
package inspect

import "time"

// Outcome names how one connection or request ended, from the proxy's point
// of view. The zero value means "not known yet" (a connection still open).
type Outcome string

// The outcomes of DESIGN.md; the strings are the contract.
const (
	OK                  Outcome = "ok"
	DNSFailure          Outcome = "dns_failure"
	ConnectRefused      Outcome = "connect_refused"
	ConnectTimeout      Outcome = "connect_timeout"
	UpstreamUnreachable Outcome = "upstream_unreachable"
	UpstreamRefused     Outcome = "upstream_refused"
	AuthRequired        Outcome = "auth_required"
	AuthFailed          Outcome = "auth_failed"
	TLSAborted          Outcome = "tls_aborted"
	DownloadAborted     Outcome = "download_aborted"
	HTTPError           Outcome = "http_error"
	Denied              Outcome = "denied"
	BadRequest          Outcome = "bad_request"
	Unreachable         Outcome = "unreachable"
)

// Outcomes lists every outcome in a fixed order, for reports and counters.
var Outcomes = []Outcome{
	OK, DNSFailure, ConnectRefused, ConnectTimeout, UpstreamUnreachable,
	UpstreamRefused, AuthRequired, AuthFailed, TLSAborted, DownloadAborted,
	HTTPError, Denied, BadRequest, Unreachable,
}

// Valid reports whether o is one of the named outcomes.
func (o Outcome) Valid() bool {
	for _, k := range Outcomes {
		if o == k {
			return true
		}
	}
	return false
}

// Failure reports whether o is a failure: anything but ok and the normal
// first step of an authentication challenge. The zero Outcome is not a
// failure.
func (o Outcome) Failure() bool {
	return o != "" && o != OK && o != AuthRequired
}

// Endpoint is the class of a target host. The zero value is treated as
// EndpointOther.
type Endpoint string

// The endpoint classes of DESIGN.md.
const (
	EndpointTetra      Endpoint = "tetra"
	EndpointRevocation Endpoint = "revocation"
	EndpointAMP        Endpoint = "amp"
	EndpointOther      Endpoint = "other"
)

// Endpoints lists every endpoint class in a fixed order.
var Endpoints = []Endpoint{EndpointTetra, EndpointRevocation, EndpointAMP, EndpointOther}

// Valid reports whether e is one of the named endpoint classes.
func (e Endpoint) Valid() bool {
	switch e {
	case EndpointTetra, EndpointRevocation, EndpointAMP, EndpointOther:
		return true
	}
	return false
}

// Updates reports whether traffic of class e takes part in definition
// updates (tetra downloads and the revocation checks before them); only such
// traffic carries a lasterror.
func (e Endpoint) Updates() bool {
	return e == EndpointTetra || e == EndpointRevocation
}

// Close says how a tunnel or request ended. The zero value means it never
// opened.
type Close string

// The close reasons of DESIGN.md.
const (
	ClientFIN     Close = "client_fin"
	ServerFIN     Close = "server_fin"
	ClientRST     Close = "client_rst"
	ServerRST     Close = "server_rst"
	IdleTimeout   Close = "idle_timeout"
	ProxyShutdown Close = "proxy_shutdown"
)

// Sources of events.
const (
	SourceProxy    = "proxy"
	SourceSquidLog = "squidlog"
	SourceProbe    = "probe"
)

// Event is one connection or request as seen by a sensor. Its JSON names are
// the field names of the API, the stream, the store and the reports. An
// Event with an empty Outcome is a connection still open.
type Event struct {
	ID             int64     `json:"id"`
	Time           time.Time `json:"time"`
	DurationMS     float64   `json:"duration_ms"`
	Source         string    `json:"source"`
	Sensor         string    `json:"sensor"`
	ClientIP       string    `json:"client_ip"`
	ClientUser     string    `json:"client_user"`
	Method         string    `json:"method"`
	Host           string    `json:"host"`
	Port           int       `json:"port"`
	URL            string    `json:"url"`
	SNI            string    `json:"sni"`
	Endpoint       Endpoint  `json:"endpoint"`
	Outcome        Outcome   `json:"outcome"`
	Status         int       `json:"status"`
	UpstreamStatus int       `json:"upstream_status"`
	BytesUp        int64     `json:"bytes_up"`
	BytesDown      int64     `json:"bytes_down"`
	Close          Close     `json:"close"`
	TLSVersion     string    `json:"tls_version"`
	TLSAlert       string    `json:"tls_alert"`
	TLSIssuer      string    `json:"tls_issuer"`
	Detail         string    `json:"detail"`
	Diagnosis      string    `json:"diagnosis"`
	LastError      uint32    `json:"lasterror"`
}

// Stored reports whether e belongs in the store: traffic that concerns
// definition updates or the connector, and denied or malformed requests
// whatever their target, because they say something about the client.
// recordOther adds every other event.
func (e *Event) Stored(recordOther bool) bool {
	if recordOther || e.Outcome == Denied || e.Outcome == BadRequest {
		return true
	}
	return e.Endpoint != EndpointOther && e.Endpoint != ""
}
