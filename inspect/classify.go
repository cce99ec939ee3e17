package inspect

import (
	"fmt"
	"net/http"

	"github.com/tetrascope/tetrascope/inspect/tlsrec"
)

// Observation is what a sensor saw of one connection or request, before
// classification. A sensor that already knows the outcome (a refused
// connect, a policy denial) sets Event.Outcome and Event.Detail; Classify
// then only completes the event.
type Observation struct {
	Event Event

	// TLS is what the record sniffer saw of a tunnel; nil for plain HTTP
	// and for tunnels that never opened.
	TLS *tlsrec.Result

	// ContentLength is the length the origin announced for a plain-HTTP
	// body, -1 when unknown. BodyErr is why reading that body failed.
	ContentLength int64
	BodyErr       string
}

// Classify fills in the outcome, detail and lasterror of o.Event from what
// was observed, and returns the event.
func Classify(o *Observation) Event {
	ev := &o.Event
	if ev.Endpoint == "" {
		ev.Endpoint = EndpointOther
	}
	if o.TLS != nil {
		ev.SNI = o.TLS.SNI
		ev.TLSVersion = o.TLS.Version
		ev.TLSAlert = o.TLS.Alert
		ev.TLSIssuer = o.TLS.LeafIssuer
	}
	if ev.Outcome == "" {
		if ev.Method == http.MethodConnect {
			ev.Outcome, ev.Detail = classifyTunnel(ev, o.TLS)
		} else {
			ev.Outcome, ev.Detail = classifyHTTP(ev, o)
		}
	}
	code, _ := EventLastError(ev.Endpoint, ev.Outcome)
	ev.LastError = uint32(code)
	return *ev
}

func classifyTunnel(ev *Event, r *tlsrec.Result) (Outcome, string) {
	if r == nil {
		r = &tlsrec.Result{}
	}
	clean := ev.Close == ClientFIN || ev.Close == ServerFIN

	switch {
	case r.NotTLS:
		if clean {
			return OK, "tunnel carried no TLS; closed cleanly (" + string(ev.Close) + ")"
		}
		return DownloadAborted, "tunnel carried no TLS; " + endedBy(ev)
	case r.Capped && !r.Complete:
		// TODO: a handshake larger than the sniffer's caps is not followed
		// to its end, so such tunnels are judged by how they closed only.
		if clean {
			return OK, "handshake too large to follow; closed cleanly (" + string(ev.Close) + ")"
		}
		return DownloadAborted, "handshake too large to follow; " + endedBy(ev)
	case r.Complete && clean:
		return OK, ""
	case r.Complete:
		return DownloadAborted, fmt.Sprintf("%s after the handshake, %d bytes down",
			endedBy(ev), ev.BytesDown)
	}

	// The handshake never completed: say how far it got.
	var why string
	switch {
	case r.Alert != "":
		why = fmt.Sprintf("%s sent TLS alert %s during the handshake", side(r.AlertFrom), r.Alert)
	case !r.ClientHello && ev.BytesUp == 0:
		why = "client closed the tunnel without sending a ClientHello"
	case !r.ClientHello:
		why = "no complete ClientHello from the client"
	case !r.ServerHello:
		why = "no ServerHello from the server; " + endedBy(ev)
	case r.ServerFlightDone && (ev.Close == ClientFIN || ev.Close == ClientRST):
		why = "client closed right after the server's certificate flight " +
			"(certificate not trusted, or its revocation check failed)"
		if r.EncryptedAlertLikely {
			why += "; an encrypted alert-sized record crossed first (TLS 1.3)"
		}
	default:
		why = "handshake did not complete; " + endedBy(ev)
	}
	return TLSAborted, why
}

func classifyHTTP(ev *Event, o *Observation) (Outcome, string) {
	bodyless := ev.Method == http.MethodHead || ev.UpstreamStatus == http.StatusNoContent ||
		ev.UpstreamStatus == http.StatusNotModified || (ev.UpstreamStatus >= 100 && ev.UpstreamStatus < 200)
	switch {
	case !bodyless && o.ContentLength >= 0 && ev.BytesDown < o.ContentLength:
		return DownloadAborted, fmt.Sprintf("body cut short: %d of %d bytes", ev.BytesDown, o.ContentLength)
	case o.BodyErr != "":
		return DownloadAborted, fmt.Sprintf("body cut short after %d bytes: %s", ev.BytesDown, o.BodyErr)
	case ev.UpstreamStatus >= 400:
		what := "origin"
		if ev.Endpoint == EndpointRevocation {
			what = "revocation server"
		}
		return HTTPError, fmt.Sprintf("%s answered %d %s", what, ev.UpstreamStatus,
			http.StatusText(ev.UpstreamStatus))
	}
	return OK, ""
}

func endedBy(ev *Event) string {
	switch ev.Close {
	case ClientFIN:
		return "closed by the client"
	case ServerFIN:
		return "closed by the server"
	case ClientRST:
		return "reset by the client"
	case ServerRST:
		return "reset by the server"
	case IdleTimeout:
		return "idle timeout"
	case ProxyShutdown:
		return "proxy shut down"
	}
	return "ended"
}

func side(d tlsrec.Direction) string {
	if d == tlsrec.ServerToClient {
		return "server"
	}
	return "client"
}
