package inspect

import (
	"fmt"
	"mime"
	"net/url"
	"strings"
)

// Catalog classifies target hosts into endpoint classes by name. Patterns are
// host names, optionally starting with "*." to match any name below a domain
// (not the domain itself). Matching is case-insensitive and ignores a
// trailing dot. The zero Catalog classifies everything as EndpointOther.
type Catalog struct {
	exact map[string]Endpoint
	// suffixes holds ".domain" strings of wildcard patterns, in the order
	// tetra, revocation, amp: the first class that matches wins.
	suffixes []suffixClass
}

type suffixClass struct {
	suffix   string
	endpoint Endpoint
}

// DefaultTetraHosts are the TETRA definition hosts of DOMAIN.md.
var DefaultTetraHosts = []string{
	"tetra-defs.amp.cisco.com",
	"tetra-defs.eu.amp.cisco.com",
	"tetra-defs.apjc.amp.cisco.com",
}

// NewCatalog builds a catalog from the host patterns of each class. When a
// name matches several classes, tetra wins over revocation, and revocation
// over amp; an exact name wins over a wildcard.
func NewCatalog(tetra, revocation, amp []string) (*Catalog, error) {
	c := &Catalog{exact: make(map[string]Endpoint)}
	classes := []struct {
		endpoint Endpoint
		patterns []string
	}{
		{EndpointTetra, tetra},
		{EndpointRevocation, revocation},
		{EndpointAMP, amp},
	}
	for _, class := range classes {
		for _, p := range class.patterns {
			if err := c.add(p, class.endpoint); err != nil {
				return nil, fmt.Errorf("endpoints.%s: %w", class.endpoint, err)
			}
		}
	}
	return c, nil
}

func (c *Catalog) add(pattern string, e Endpoint) error {
	p := normalizeHost(pattern)
	wild := strings.HasPrefix(p, "*.")
	name := strings.TrimPrefix(p, "*.")
	if name == "" || strings.ContainsAny(name, "*/:@ ") {
		return fmt.Errorf("bad host pattern %q: want a host name or *.domain", pattern)
	}
	if wild {
		c.suffixes = append(c.suffixes, suffixClass{"." + name, e})
		return nil
	}
	if _, dup := c.exact[name]; !dup {
		c.exact[name] = e
	}
	return nil
}

// Classify returns the endpoint class of host (a name or an address, without
// a port).
func (c *Catalog) Classify(host string) Endpoint {
	if c == nil {
		return EndpointOther
	}
	h := normalizeHost(host)
	if e, ok := c.exact[h]; ok {
		return e
	}
	for _, s := range c.suffixes {
		if strings.HasSuffix(h, s.suffix) {
			return s.endpoint
		}
	}
	return EndpointOther
}

// ClassifyRequest returns the endpoint class of a plain-HTTP request: by its
// host first, and, for a host the catalog does not know, by its form, since
// revocation traffic for other certificate authorities has other names
// (DOMAIN.md: recognise revocation traffic by its form).
func (c *Catalog) ClassifyRequest(method, host string, u *url.URL, contentType string) Endpoint {
	e := c.Classify(host)
	if e != EndpointOther {
		return e
	}
	if IsRevocationRequest(method, u, contentType) {
		return EndpointRevocation
	}
	return EndpointOther
}

// IsRevocationRequest reports whether a plain-HTTP request has the form of
// an OCSP query or a CRL download: a POST of application/ocsp-request, a GET
// whose path ends in .crl, or a GET below an OCSP-looking path carrying a
// base64 request.
func IsRevocationRequest(method string, u *url.URL, contentType string) bool {
	if mt, _, err := mime.ParseMediaType(contentType); err == nil && mt == "application/ocsp-request" {
		return true
	}
	if u == nil || (method != "GET" && method != "HEAD") {
		return false
	}
	p := strings.ToLower(u.Path)
	if strings.HasSuffix(p, ".crl") {
		return true
	}
	// RFC 6960 appendix A.1: GET {url}/{url-encoding of base64 of the
	// DER request}; the DER of an OCSP request starts with 0x30, "MA" or
	// "ME" in base64.
	seg := p[strings.LastIndexByte(p, '/')+1:]
	return strings.Contains(p, "ocsp") && len(seg) > 40 && strings.HasPrefix(seg, "m")
}

// IsRevocationResponse reports whether a response content type is one of
// the revocation types (application/ocsp-response, application/pkix-crl).
func IsRevocationResponse(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/ocsp-response" || mt == "application/pkix-crl" ||
		mt == "application/x-pkcs7-crl"
}

func normalizeHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
}
