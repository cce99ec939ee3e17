package inspect

import "strings"

// SquidErrorOutcome maps a Squid error page name (the X-Squid-Error header
// of an upstream Squid, or %err_code in its log), with its detail such as
// an errno, to an outcome. ok is false for names that say nothing about the
// target. Squid 5 answers ERR_CANNOT_FORWARD for a name it cannot resolve,
// so that maps to unreachable: the upstream does not say more.
func SquidErrorOutcome(name, detail string) (o Outcome, ok bool) {
	switch strings.ToUpper(strings.TrimSpace(name)) {
	case "ERR_DNS_FAIL":
		return DNSFailure, true
	case "ERR_CONNECT_FAIL":
		// Squid appends the errno: 110 is ETIMEDOUT on Linux.
		d := strings.ToLower(detail)
		if strings.Contains(d, "110") || strings.Contains(d, "timed out") ||
			strings.Contains(d, "timeout") {
			return ConnectTimeout, true
		}
		return ConnectRefused, true
	case "ERR_CANNOT_FORWARD", "ERR_GATEWAY_FAILURE", "ERR_FORWARDING_DENIED":
		return Unreachable, true
	case "ERR_READ_TIMEOUT", "ERR_LIFETIME_EXP":
		return ConnectTimeout, true
	case "ERR_ACCESS_DENIED", "ERR_TOO_BIG", "ERR_UNSUP_REQ", "ERR_SECURE_CONNECT_FAIL":
		return UpstreamRefused, true
	case "ERR_CACHE_ACCESS_DENIED", "ERR_PROXY_AUTH_REQUIRED":
		return AuthRequired, true
	case "ERR_INVALID_REQ", "ERR_INVALID_URL", "ERR_INVALID_RESP":
		return BadRequest, true
	case "ERR_READ_ERROR", "ERR_WRITE_ERROR", "ERR_ZERO_SIZE_OBJECT":
		return DownloadAborted, true
	}
	return "", false
}
