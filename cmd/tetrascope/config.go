package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/tetrascope/tetrascope"
	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/proxy"
	"github.com/tetrascope/tetrascope/resolve"
)

// Config is the whole configuration, decoded once from config.yaml, the
// user's file, the environment and the flags. Its keys are documented in
// config.yaml.
type Config struct {
	// File is the --config file, empty when none; it is not a key.
	File string `mapstructure:"-"`

	Sensor    string          `mapstructure:"sensor"`
	Listen    string          `mapstructure:"listen"`
	UI        UIConfig        `mapstructure:"ui"`
	DB        string          `mapstructure:"db"`
	Retention time.Duration   `mapstructure:"retention"`
	Upstream  UpstreamConfig  `mapstructure:"upstream"`
	Auth      AuthConfig      `mapstructure:"auth"`
	Allow     AllowConfig     `mapstructure:"allow"`
	Resolve   []string        `mapstructure:"resolve"`
	DNS       DNSConfig       `mapstructure:"dns"`
	Endpoints EndpointsConfig `mapstructure:"endpoints"`
	Correl    CorrelConfig    `mapstructure:"correlation"`
	Timeouts  TimeoutsConfig  `mapstructure:"timeouts"`
	Limits    LimitsConfig    `mapstructure:"limits"`
	Events    EventsConfig    `mapstructure:"events"`
	Probe     ProbeConfig     `mapstructure:"probe"`
	Log       LogConfig       `mapstructure:"log"`
}

// UIConfig is the ui.* keys.
type UIConfig struct {
	Listen string `mapstructure:"listen"`
	Token  string `mapstructure:"token"`
}

// UpstreamConfig is the upstream.* keys.
type UpstreamConfig struct {
	URL                   string   `mapstructure:"url"`
	Username              string   `mapstructure:"username"`
	Password              string   `mapstructure:"password"`
	PasswordFile          string   `mapstructure:"password_file"`
	PassClientCredentials bool     `mapstructure:"pass_client_credentials"`
	Direct                []string `mapstructure:"direct"`
}

// AuthConfig is the auth.* keys.
type AuthConfig struct {
	Htpasswd string `mapstructure:"htpasswd"`
	Realm    string `mapstructure:"realm"`
}

// AllowConfig is the allow.* keys.
type AllowConfig struct {
	Clients      []string `mapstructure:"clients"`
	ConnectPorts []int    `mapstructure:"connect_ports"`
	LinkLocal    bool     `mapstructure:"link_local"`
}

// DNSConfig is the dns.* keys.
type DNSConfig struct {
	Servers []string `mapstructure:"servers"`
}

// EndpointsConfig is the endpoints.* keys.
type EndpointsConfig struct {
	Tetra      []string `mapstructure:"tetra"`
	Revocation []string `mapstructure:"revocation"`
	AMP        []string `mapstructure:"amp"`
}

// CorrelConfig is the correlation.* keys.
type CorrelConfig struct {
	UpdateInterval   time.Duration `mapstructure:"update_interval"`
	RevocationWindow time.Duration `mapstructure:"revocation_window"`
	AuthWindow       time.Duration `mapstructure:"auth_window"`
	ExpectedIssuers  []string      `mapstructure:"expected_issuers"`
}

// TimeoutsConfig is the timeouts.* keys.
type TimeoutsConfig struct {
	Connect       time.Duration `mapstructure:"connect"`
	Idle          time.Duration `mapstructure:"idle"`
	ReadHeader    time.Duration `mapstructure:"read_header"`
	ShutdownGrace time.Duration `mapstructure:"shutdown_grace"`
}

// LimitsConfig is the limits.* keys.
type LimitsConfig struct {
	MaxHeaderBytes int `mapstructure:"max_header_bytes"`
	MaxConnections int `mapstructure:"max_connections"`
}

// EventsConfig is the events.* keys.
type EventsConfig struct {
	RecordOther bool `mapstructure:"record_other"`
	Queue       int  `mapstructure:"queue"`
}

// ProbeConfig is the probe.* keys.
type ProbeConfig struct {
	Interval string `mapstructure:"interval"`
}

// LogConfig is the log.* keys.
type LogConfig struct {
	Level string `mapstructure:"level"`
}

// configError is a bad configuration value or flag: exit status 2.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

func badConfig(format string, a ...any) error {
	return &configError{fmt.Sprintf(format, a...)}
}

// flagKeys maps flags to the config keys they set.
var flagKeys = map[string]string{
	"sensor":        "sensor",
	"listen":        "listen",
	"ui":            "ui.listen",
	"db":            "db",
	"upstream":      "upstream.url",
	"htpasswd":      "auth.htpasswd",
	"allow-clients": "allow.clients",
	"allow-ports":   "allow.connect_ports",
	"resolve":       "resolve",
	"dns":           "dns.servers",
	"log-level":     "log.level",
}

// loadConfig reads the embedded defaults, then the file named by --config,
// then the environment and the flags set in fs.
func loadConfig(fs *pflag.FlagSet) (*Config, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(tetrascope.DefaultConfig)); err != nil {
		return nil, fmt.Errorf("reading the embedded defaults: %w", err)
	}
	if f := fs.Lookup("config"); f != nil && f.Value.String() != "" {
		data, err := os.ReadFile(f.Value.String())
		if err != nil {
			return nil, badConfig("--config: %v", err)
		}
		if err := v.MergeConfig(bytes.NewReader(data)); err != nil {
			return nil, badConfig("--config %s: not valid YAML: %v", f.Value.String(), err)
		}
	}
	var lists []string
	for _, key := range v.AllKeys() {
		if _, ok := v.Get(key).([]any); ok {
			lists = append(lists, key)
		}
	}
	v.SetEnvPrefix("TETRASCOPE")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	flagged := map[string]bool{}
	for name, key := range flagKeys {
		if f := fs.Lookup(name); f != nil {
			if err := v.BindPFlag(key, f); err != nil {
				return nil, fmt.Errorf("binding --%s: %w", name, err)
			}
			flagged[key] = f.Changed
		}
	}
	// A list key's environment variable is a comma-separated list; a flag
	// still wins over it.
	for _, key := range lists {
		env := "TETRASCOPE_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
		if val, set := os.LookupEnv(env); set && !flagged[key] {
			v.Set(key, splitList(val))
		}
	}

	var c Config
	err := v.UnmarshalExact(&c, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		durationHook,
		mapstructure.StringToSliceHookFunc(","),
	)))
	if err != nil {
		return nil, badConfig("configuration: %v", cleanDecodeError(err))
	}
	if f := fs.Lookup("config"); f != nil {
		c.File = f.Value.String()
	}
	if c.Sensor == "" {
		c.Sensor, _ = os.Hostname()
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// cleanDecodeError keeps mapstructure's message but drops its preamble.
func cleanDecodeError(err error) string {
	s := err.Error()
	if i := strings.Index(s, "error(s)"); i >= 0 {
		if j := strings.Index(s[i:], ":"); j >= 0 {
			s = s[i+j+1:]
		}
	}
	var parts []string
	for _, line := range strings.Split(s, "\n") {
		if line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "*")); line != "" {
			parts = append(parts, line)
		}
	}
	return strings.Join(parts, "; ")
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Validate checks every value and names the key of the first bad one.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, badConfig("%s: %s", key, fmt.Sprintf(format, a...)))
	}
	if err := checkListen(c.Listen); err != nil {
		bad("listen", "%v", err)
	}
	if err := checkListen(c.UI.Listen); err != nil {
		bad("ui.listen", "%v", err)
	}
	if strings.TrimSpace(c.DB) == "" {
		bad("db", "empty: name a database file")
	}
	if c.Retention < 0 {
		bad("retention", "negative duration %v", c.Retention)
	}
	if c.Upstream.URL != "" {
		u, err := url.Parse(c.Upstream.URL)
		if err != nil || u.Scheme != "http" || u.Hostname() == "" {
			bad("upstream.url", "%q: want http://host:port", redactedURL(c.Upstream.URL))
		}
	}
	if c.Upstream.Password != "" && c.Upstream.PasswordFile != "" {
		bad("upstream.password_file", "set either upstream.password or upstream.password_file")
	}
	if c.Upstream.PassClientCredentials && c.Upstream.Username != "" {
		bad("upstream.pass_client_credentials",
			"cannot pass the clients' credentials and send upstream.username's too")
	}
	if c.Upstream.PassClientCredentials && c.Auth.Htpasswd != "" {
		bad("upstream.pass_client_credentials",
			"clients authenticate to this proxy (auth.htpasswd): their credentials are ours")
	}
	if _, err := inspect.NewPatterns(c.Upstream.Direct); err != nil {
		bad("upstream.direct", "%v", err)
	}
	if c.Auth.Htpasswd != "" {
		if _, err := os.Stat(c.Auth.Htpasswd); err != nil {
			bad("auth.htpasswd", "%v", err)
		}
	}
	if _, err := c.clientPrefixes(); err != nil {
		bad("allow.clients", "%v", err)
	}
	for _, p := range c.Allow.ConnectPorts {
		if p < 1 || p > 65535 {
			bad("allow.connect_ports", "%d is not a TCP port", p)
		}
	}
	if _, err := c.overrides(); err != nil {
		bad("resolve", "%v", err)
	}
	for _, s := range c.DNS.Servers {
		if _, err := resolve.ServerAddr(s); err != nil {
			bad("dns.servers", "%v", err)
		}
	}
	if _, err := c.catalog(); err != nil {
		errs = append(errs, badConfig("%v", err))
	}
	for key, d := range map[string]time.Duration{
		"timeouts.connect":              c.Timeouts.Connect,
		"timeouts.idle":                 c.Timeouts.Idle,
		"timeouts.read_header":          c.Timeouts.ReadHeader,
		"timeouts.shutdown_grace":       c.Timeouts.ShutdownGrace,
		"correlation.update_interval":   c.Correl.UpdateInterval,
		"correlation.revocation_window": c.Correl.RevocationWindow,
		"correlation.auth_window":       c.Correl.AuthWindow,
	} {
		if d <= 0 {
			bad(key, "must be a positive duration such as 30s, got %v", d)
		}
	}
	if c.Limits.MaxHeaderBytes < 1024 {
		bad("limits.max_header_bytes", "%d is too small (at least 1024)", c.Limits.MaxHeaderBytes)
	}
	if c.Limits.MaxConnections < 1 {
		bad("limits.max_connections", "must be at least 1, got %d", c.Limits.MaxConnections)
	}
	if c.Events.Queue < 1 {
		bad("events.queue", "must be at least 1, got %d", c.Events.Queue)
	}
	if c.Probe.Interval != "" {
		if d, err := time.ParseDuration(c.Probe.Interval); err != nil || d < time.Minute {
			bad("probe.interval", "%q: want a duration of at least 1m, or empty for none",
				c.Probe.Interval)
		}
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q: want debug, info, warn or error", c.Log.Level)
	}
	return errors.Join(errs...)
}

func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want [host]:port", addr)
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil && host != "localhost" {
			return fmt.Errorf("%q: host must be an IP address", addr)
		}
	}
	var p int
	if _, err := fmt.Sscanf(port, "%d", &p); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q: bad port", addr)
	}
	return nil
}

// clientPrefixes parses allow.clients; a bare address is a single host.
func (c *Config) clientPrefixes() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range c.Allow.Clients {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or CIDR range", s)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// overrides parses the resolve list.
func (c *Config) overrides() (map[string][]netip.Addr, error) {
	out := make(map[string][]netip.Addr)
	for _, s := range c.Resolve {
		h, a, err := resolve.ParseOverride(s)
		if err != nil {
			return nil, err
		}
		out[h] = append(out[h], a)
	}
	return out, nil
}

func (c *Config) catalog() (*inspect.Catalog, error) {
	return inspect.NewCatalog(c.Endpoints.Tetra, c.Endpoints.Revocation, c.Endpoints.AMP)
}

// upstream builds the proxy's upstream settings; credentials may come from
// the URL, the keys, or a password file.
func (c *Config) upstream() (proxy.Upstream, error) {
	var up proxy.Upstream
	if c.Upstream.URL == "" {
		return up, nil
	}
	u, err := url.Parse(c.Upstream.URL)
	if err != nil {
		return up, badConfig("upstream.url: %v", err)
	}
	up.Username, up.Password = c.Upstream.Username, c.Upstream.Password
	if u.User != nil && up.Username == "" {
		up.Username = u.User.Username()
		if p, ok := u.User.Password(); ok {
			up.Password = p
		}
	}
	u.User = nil
	up.URL = u
	if c.Upstream.PasswordFile != "" {
		data, err := os.ReadFile(c.Upstream.PasswordFile)
		if err != nil {
			return up, badConfig("upstream.password_file: %v", err)
		}
		up.Password = strings.TrimRight(string(data), "\r\n")
	}
	up.PassClientCredentials = c.Upstream.PassClientCredentials
	up.Direct, _ = inspect.NewPatterns(c.Upstream.Direct)
	return up, nil
}

// redactedURL hides the password of a URL for logs and messages.
func redactedURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// correlation is the correlation.* keys for inspect.
func (c *Config) correlation() inspect.Correlation {
	return inspect.Correlation{
		UpdateInterval:   c.Correl.UpdateInterval,
		RevocationWindow: c.Correl.RevocationWindow,
		AuthWindow:       c.Correl.AuthWindow,
		ExpectedIssuers:  c.Correl.ExpectedIssuers,
	}
}

// durationHook reads durations written with a unit ("30s", "5m"). A bare
// number is refused rather than taken as nanoseconds.
func durationHook(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeOf(time.Duration(0)) {
		return data, nil
	}
	switch from.Kind() {
	case reflect.String:
		d, err := time.ParseDuration(strings.TrimSpace(data.(string)))
		if err != nil {
			return nil, fmt.Errorf("%q is not a duration (write it with a unit: 30s, 5m, 1h)",
				data)
		}
		return d, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return nil, fmt.Errorf("%v has no unit (write it with one: 30s, 5m, 1h)", data)
	}
	return data, nil
}
