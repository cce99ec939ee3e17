package tlsrec

import (
	"crypto/x509/pkix"
	"encoding/asn1"
	"strconv"
	"strings"
)

// alertNames holds the IANA names of the TLS alert descriptions, without the
// _RESERVED suffix of those retired in TLS 1.3.
var alertNames = [...]string{
	0:   "close_notify",
	10:  "unexpected_message",
	20:  "bad_record_mac",
	21:  "decryption_failed",
	22:  "record_overflow",
	30:  "decompression_failure",
	40:  "handshake_failure",
	41:  "no_certificate",
	42:  "bad_certificate",
	43:  "unsupported_certificate",
	44:  "certificate_revoked",
	45:  "certificate_expired",
	46:  "certificate_unknown",
	47:  "illegal_parameter",
	48:  "unknown_ca",
	49:  "access_denied",
	50:  "decode_error",
	51:  "decrypt_error",
	52:  "too_many_cids_requested",
	60:  "export_restriction",
	70:  "protocol_version",
	71:  "insufficient_security",
	80:  "internal_error",
	86:  "inappropriate_fallback",
	90:  "user_canceled",
	100: "no_renegotiation",
	109: "missing_extension",
	110: "unsupported_extension",
	111: "certificate_unobtainable",
	112: "unrecognized_name",
	113: "bad_certificate_status_response",
	114: "bad_certificate_hash_value",
	115: "unknown_psk_identity",
	116: "certificate_required",
	117: "general_error",
	120: "no_application_protocol",
	121: "ech_required",
}

// AlertName returns the IANA name of a TLS alert description in snake case
// ("unknown_ca"), or "alert_N" for a code without a name.
func AlertName(desc uint8) string {
	if int(desc) < len(alertNames) && alertNames[desc] != "" {
		return alertNames[desc]
	}
	return "alert_" + strconv.Itoa(int(desc))
}

// VersionName returns the name of a protocol version as carried in
// ServerHello ("TLS 1.2" for 0x0303), "0x" and four hex digits for one
// without a name, and "" for 0.
func VersionName(v uint16) string {
	switch v {
	case 0:
		return ""
	case 0x0300:
		return "SSL 3.0"
	case 0x0301:
		return "TLS 1.0"
	case 0x0302:
		return "TLS 1.1"
	case 0x0303:
		return "TLS 1.2"
	case 0x0304:
		return "TLS 1.3"
	}
	const hex = "0123456789abcdef"
	return string([]byte{'0', 'x', hex[v>>12], hex[v>>8&15], hex[v>>4&15], hex[v&15]})
}

// maxNameLen bounds the issuer and subject strings kept from a certificate,
// which come from the peer.
const maxNameLen = 512

// certPrefix is the start of an X.509 certificate, up to its subject. The
// rest is left unparsed: encoding/asn1 accepts elements after the last
// field, and a partial parse also reads certificates that crypto/x509
// rejects (such as negative serial numbers from some intercepting proxies).
type certPrefix struct {
	TBS struct {
		Version      int `asn1:"optional,explicit,default:0,tag:0"`
		SerialNumber asn1.RawValue
		Signature    asn1.RawValue
		Issuer       asn1.RawValue
		Validity     asn1.RawValue
		Subject      asn1.RawValue
	}
}

// certNames returns the issuer and subject of a DER certificate as RFC 2253
// strings, empty when the certificate cannot be read.
func certNames(der []byte) (issuer, subject string) {
	var c certPrefix
	if _, err := asn1.Unmarshal(der, &c); err != nil {
		return "", ""
	}
	return distinguishedName(c.TBS.Issuer.FullBytes), distinguishedName(c.TBS.Subject.FullBytes)
}

func distinguishedName(der []byte) string {
	var rdns pkix.RDNSequence
	if rest, err := asn1.Unmarshal(der, &rdns); err != nil || len(rest) != 0 {
		return ""
	}
	var name pkix.Name
	name.FillFromRDNSequence(&rdns)
	s := name.String()
	if len(s) > maxNameLen {
		s = strings.ToValidUTF8(s[:maxNameLen], "")
	}
	return s
}
