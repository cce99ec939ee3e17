package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tetrascope/tetrascope/probe"
)

func newProbe() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Check from this host the path endpoints take to the definition servers",
		Long: "probe runs, from a machine in the endpoints' network, the checks an admin\n" +
			"would run by hand: name resolution, TCP to the proxy, proxy authentication,\n" +
			"the CONNECT, the TLS handshake and certificate chain, the CRL and OCSP\n" +
			"servers the certificate names (fetched through the proxy), and one HTTP\n" +
			"request over the tunnel. It says which step fails, what to check, and the\n" +
			"lasterror an endpoint on the same path would most likely record.\n\n" +
			"Proxy credentials come from the --upstream URL (http://USER@host:port) or\n" +
			"upstream.username, with the password from the URL, upstream.password_file\n" +
			"or TETRASCOPE_UPSTREAM_PASSWORD. The password is never printed.\n\n" +
			"Exit status: 0 when every step passes, 1 when one fails, 2 for bad usage.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := readProbeFlags(cmd.Flags())
			if err != nil {
				return err
			}
			cfg, err := loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			pc, err := probeConfig(cfg, opts)
			if err != nil {
				return err
			}

			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			rep := probe.Run(ctx, pc)
			if err := writeProbe(cmd.OutOrStdout(), rep, opts.format); err != nil {
				return fmt.Errorf("writing the report: %w", err)
			}
			if f, failed := rep.Failed(); failed {
				return fmt.Errorf("probe failed at %s", f.Name)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.String("config", "", "YAML file with the keys to change from the defaults")
	f.String("upstream", "", "the endpoints' proxy, http://[USER@]host:port (default: direct)")
	f.String("region", "nam", "cloud region of the definition server: nam, eu or apjc")
	f.String("host", "", "definition server name (overrides --region)")
	f.Int("port", 443, "definition server port")
	f.String("path", "/", "path of the HTTP request sent over the tunnel")
	f.StringSlice("resolve", nil, "static name override HOST=IP (repeatable)")
	f.StringSlice("dns", nil, "DNS server IP[:port] instead of the system resolver (repeatable)")
	f.String("ca", "", "PEM file of extra trust roots (default: the system roots and SSL_CERT_FILE)")
	f.String("format", "text", "output: text or json")
	return cmd
}

// probeFlags are the probe's own flags, which are not config keys.
type probeFlags struct {
	host   string
	port   int
	path   string
	ca     string
	format string
}

// readProbeFlags checks the probe's own flags; every error is bad usage.
func readProbeFlags(fs *pflag.FlagSet) (probeFlags, error) {
	var o probeFlags
	region, _ := fs.GetString("region")
	o.host, _ = fs.GetString("host")
	o.port, _ = fs.GetInt("port")
	o.path, _ = fs.GetString("path")
	o.ca, _ = fs.GetString("ca")
	o.format, _ = fs.GetString("format")

	usage := func(format string, a ...any) (probeFlags, error) {
		return probeFlags{}, &usageError{fmt.Errorf(format, a...)}
	}
	regionHost, ok := probe.RegionHost(region)
	if !ok {
		return usage("--region %q: want nam, eu or apjc", region)
	}
	if o.host == "" {
		o.host = regionHost
	}
	o.host = strings.TrimSpace(o.host)
	if _, err := netip.ParseAddr(o.host); err != nil &&
		(o.host == "" || strings.ContainsAny(o.host, ":/@ \t")) {
		return usage("--host %q: want a host name or address, without scheme or port (see --port)",
			o.host)
	}
	if o.port < 1 || o.port > 65535 {
		return usage("--port %d is not a TCP port", o.port)
	}
	if !strings.HasPrefix(o.path, "/") || strings.ContainsFunc(o.path, func(r rune) bool {
		return r <= ' ' || r == 0x7f
	}) {
		return usage("--path %q: want an absolute path such as /", o.path)
	}
	o.format = strings.ToLower(o.format)
	if o.format != "text" && o.format != "json" {
		return usage("--format %q: want text or json", o.format)
	}
	return o, nil
}

// probeConfig builds the probe's settings from the configuration and the
// probe's flags.
func probeConfig(cfg *Config, o probeFlags) (probe.Config, error) {
	pc := probe.Config{
		Host:            o.host,
		Port:            o.port,
		Path:            o.path,
		DNSServers:      cfg.DNS.Servers,
		ExpectedIssuers: cfg.Correl.ExpectedIssuers,
		Timeout:         cfg.Timeouts.Connect,
		UserAgent:       "tetrascope-probe/" + version,
	}
	pc.Overrides, _ = cfg.overrides() // checked by Validate

	if cfg.Upstream.URL != "" {
		u, err := url.Parse(cfg.Upstream.URL)
		if err != nil {
			return pc, badConfig("upstream.url: %q is not a URL", redactedURL(cfg.Upstream.URL))
		}
		pc.Username, pc.Password, err = probeCredentials(cfg, u)
		if err != nil {
			return pc, err
		}
		u.User = nil
		pc.Proxy = u
	}

	if o.ca != "" {
		data, err := os.ReadFile(o.ca)
		if err != nil {
			return pc, &usageError{fmt.Errorf("--ca: %w", err)}
		}
		roots, err := x509.SystemCertPool()
		if err != nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(data) {
			return pc, &usageError{fmt.Errorf("--ca %s: no PEM certificate in it", o.ca)}
		}
		pc.Roots = roots
	}
	return pc, nil
}

// probeCredentials picks the proxy credentials: the user of the URL, else
// upstream.username; the password of the URL, else upstream.password_file,
// else upstream.password (TETRASCOPE_UPSTREAM_PASSWORD).
func probeCredentials(cfg *Config, u *url.URL) (user, password string, err error) {
	user = cfg.Upstream.Username
	if u.User != nil && u.User.Username() != "" {
		user = u.User.Username()
	}
	if user == "" {
		return "", "", nil
	}
	if p, ok := u.User.Password(); ok {
		return user, p, nil
	}
	if cfg.Upstream.PasswordFile != "" {
		data, err := os.ReadFile(cfg.Upstream.PasswordFile)
		if err != nil {
			return "", "", badConfig("upstream.password_file: %v", err)
		}
		return user, strings.TrimRight(string(data), "\r\n"), nil
	}
	return user, cfg.Upstream.Password, nil
}

func writeProbe(w io.Writer, rep probe.Report, format string) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.WriteText(w)
}
