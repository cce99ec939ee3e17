package inspect

// Patterns is a set of host patterns (names, or "*.domain" for every name
// below a domain), matched like the endpoint catalog. A nil *Patterns
// matches nothing.
type Patterns struct{ c *Catalog }

// NewPatterns checks and compiles host patterns.
func NewPatterns(list []string) (*Patterns, error) {
	c := &Catalog{exact: make(map[string]Endpoint)}
	for _, p := range list {
		if err := c.add(p, EndpointTetra); err != nil {
			return nil, err
		}
	}
	return &Patterns{c}, nil
}

// Match reports whether host matches one of the patterns.
func (p *Patterns) Match(host string) bool {
	return p != nil && p.c.Classify(host) == EndpointTetra
}
