package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/resolve"
)

// dialError is a failed attempt to reach a target, with the outcome and
// the status the client is answered with.
type dialError struct {
	outcome inspect.Outcome
	status  int
	detail  string
}

func (e *dialError) Error() string { return e.detail }

// dial resolves host and connects to the first of its addresses that
// answers. Its errors are *dialError.
func (s *Server) dial(ctx context.Context, host string, port int) (*net.TCPConn, error) {
	addrs, err := s.deps.Resolver.Lookup(ctx, host)
	if err != nil {
		var re *resolve.Error
		if errors.As(err, &re) && !re.NotFound {
			return nil, &dialError{inspect.DNSFailure, http.StatusBadGateway,
				"name lookup failed: " + re.Reason}
		}
		detail := "name does not resolve"
		if errors.As(err, &re) {
			detail += ": " + re.Reason
		}
		return nil, &dialError{inspect.DNSFailure, http.StatusBadGateway, detail}
	}

	ctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	var last *dialError
	for _, a := range addrs {
		ap := netip.AddrPortFrom(a, uint16(port))
		if why := s.forbidden(ap); why != "" {
			last = &dialError{inspect.Denied, http.StatusForbidden, why}
			continue
		}
		c, err := dialer.DialContext(ctx, "tcp", ap.String())
		if err == nil {
			return c.(*net.TCPConn), nil
		}
		last = connectError(ap, err)
		if last.outcome == inspect.ConnectTimeout {
			break // the timeout covers all addresses
		}
	}
	return nil, last
}

// forbidden says why the proxy refuses to connect to ap, or nothing.
func (s *Server) forbidden(ap netip.AddrPort) string {
	a := ap.Addr()
	if s.isOwn(ap) {
		return fmt.Sprintf("target %s is this proxy itself (a loop)", ap)
	}
	if !s.cfg.AllowLinkLocal && (a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast()) {
		return fmt.Sprintf("target %s is link-local (metadata services); see allow.link_local", a)
	}
	if a.IsUnspecified() || a.IsMulticast() {
		return fmt.Sprintf("target %s is not a unicast address", a)
	}
	return ""
}

func connectError(ap netip.AddrPort, err error) *dialError {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return &dialError{inspect.ConnectRefused, http.StatusBadGateway,
			fmt.Sprintf("connection to %s refused", ap)}
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return &dialError{inspect.ConnectTimeout, http.StatusGatewayTimeout,
			fmt.Sprintf("connection to %s timed out", ap)}
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return &dialError{inspect.ConnectRefused, http.StatusBadGateway,
			fmt.Sprintf("%s is unreachable (no route)", ap)}
	}
	return &dialError{inspect.ConnectRefused, http.StatusBadGateway,
		fmt.Sprintf("connecting to %s: %v", ap, unwrapSyscall(err))}
}

func unwrapSyscall(err error) error {
	var se *net.OpError
	if errors.As(err, &se) {
		return se.Err
	}
	return err
}
