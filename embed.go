// Package tetrascope holds what the binary embeds from the top of the
// repository: the documented default configuration.
package tetrascope

import _ "embed"

// DefaultConfig is config.yaml, the documented defaults.
//
//go:embed config.yaml
var DefaultConfig []byte
