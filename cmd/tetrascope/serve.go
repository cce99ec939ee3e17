package main

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/proxy"
	"github.com/tetrascope/tetrascope/resolve"
)

func newServe() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the inspecting forward proxy and the live page",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			log := newLogger(cfg.Log.Level)
			return serve(signalContext(log), cfg, log)
		},
	}
	f := cmd.Flags()
	f.String("config", "", "YAML file with the keys to change from the defaults")
	f.String("sensor", "", "name of this instance, stored with every event (default: host name)")
	f.String("listen", "", "proxy address (default :3128)")
	f.String("ui", "", "address of the page and API (default 127.0.0.1:8128)")
	f.String("db", "", "SQLite database file (default tetrascope.db)")
	f.String("upstream", "", "upstream proxy URL, http://host:port")
	f.String("htpasswd", "", "htpasswd file for client authentication")
	f.StringSlice("allow-clients", nil, "client addresses or CIDR ranges allowed (list)")
	f.IntSlice("allow-ports", nil, "ports a CONNECT may reach (list, default 443)")
	f.StringSlice("resolve", nil, "static name override HOST=IP (repeatable)")
	f.StringSlice("dns", nil, "DNS server IP[:port] for target names (repeatable)")
	f.String("log-level", "", "debug, info, warn or error")
	return cmd
}

// signalContext is done at the first SIGINT or SIGTERM; a second one ends
// the process at once, without waiting for the grace period.
func signalContext(log *slog.Logger) context.Context {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
		log.Info("stopping: open tunnels get the grace period; signal again to stop at once")
	}()
	return ctx
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// serve runs the proxy with the shared runtime until ctx is done.
func serve(ctx context.Context, cfg *Config, log *slog.Logger) error {
	clients, _ := cfg.clientPrefixes()
	static, _ := cfg.overrides()
	catalog, _ := cfg.catalog()
	res, err := resolve.New(static, cfg.DNS.Servers, cfg.Timeouts.Connect)
	if err != nil {
		return badConfig("dns.servers: %v", err)
	}
	up, err := cfg.upstream()
	if err != nil {
		return err
	}
	warnRisky(cfg, log)

	rt, err := newRuntime(ctx, cfg, log)
	if err != nil {
		return err
	}
	px, err := proxy.New(proxy.Config{
		Listen:            cfg.Listen,
		Sensor:            cfg.Sensor,
		AllowClients:      clients,
		AllowPorts:        cfg.Allow.ConnectPorts,
		AllowLinkLocal:    cfg.Allow.LinkLocal,
		ConnectTimeout:    cfg.Timeouts.Connect,
		IdleTimeout:       cfg.Timeouts.Idle,
		ReadHeaderTimeout: cfg.Timeouts.ReadHeader,
		ShutdownGrace:     cfg.Timeouts.ShutdownGrace,
		MaxHeaderBytes:    cfg.Limits.MaxHeaderBytes,
		MaxConnections:    cfg.Limits.MaxConnections,
		FirstID:           rt.lastID,
		Upstream:          up,
		Htpasswd:          cfg.Auth.Htpasswd,
		Realm:             cfg.Auth.Realm,
		OtherListeners:    []string{cfg.UI.Listen},
	}, proxy.Deps{IDs: rt.ids, Resolver: res, Catalog: catalog, Recorder: rt.pipe,
		Logger: log.With("component", "proxy")})
	if err != nil {
		rt.close()
		return badConfig("%v", err)
	}
	rt.active = px.Active
	rt.tunnels = px.Tunnels
	rt.stats = func(m map[string]any) {
		m["active"] = px.Tunnels()
		m["connections"] = px.Connections()
		m["refused_busy"] = px.Refused()
	}
	log.Info("tetrascope starting", "version", version, "sensor", cfg.Sensor,
		"listen", cfg.Listen, "ui", cfg.UI.Listen, "db", cfg.DB,
		"allow_ports", cfg.Allow.ConnectPorts, "dns_servers", cfg.DNS.Servers,
		"resolve_overrides", len(static), "upstream", redactedURL(cfg.Upstream.URL),
		"client_auth", cfg.Auth.Htpasswd != "")
	if cfg.Probe.Interval != "" {
		every, _ := time.ParseDuration(cfg.Probe.Interval) // checked by Validate
		host := inspect.DefaultTetraHosts[0]
		if len(cfg.Endpoints.Tetra) > 0 && !strings.HasPrefix(cfg.Endpoints.Tetra[0], "*") {
			host = cfg.Endpoints.Tetra[0]
		}
		pc, err := probeConfig(cfg, probeFlags{host: host, port: 443, path: "/"})
		if err != nil {
			rt.close()
			return err
		}
		go runProbes(ctx, every, pc, rt.ids, cfg.Sensor, rt.pipe, log.With("component", "probe"))
	}
	return rt.run(ctx, px)
}

// warnRisky logs configurations that make an open proxy.
func warnRisky(cfg *Config, log *slog.Logger) {
	if !onLoopback(cfg.Listen) && !hasPrivateOnly(cfg.Allow.Clients) && cfg.Auth.Htpasswd == "" {
		log.Warn("the proxy listens beyond loopback, admits public addresses and asks no "+
			"credentials", "listen", cfg.Listen, "allow_clients", strings.Join(cfg.Allow.Clients, ","))
	}
	if !onLoopback(cfg.UI.Listen) && cfg.UI.Token == "" {
		log.Warn("the page and API listen beyond loopback without ui.token", "ui", cfg.UI.Listen)
	}

	// Files holding secrets should be readable by their owner only.
	secrets := map[string]bool{
		cfg.Upstream.PasswordFile: true,
		cfg.Auth.Htpasswd:         true,
		cfg.File:                  cfg.Upstream.Password != "" || cfg.UI.Token != "",
	}
	for path, secret := range secrets {
		if path == "" || !secret {
			continue
		}
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			log.Warn("a file with credentials is readable by others; chmod 600 it",
				"file", path, "mode", fi.Mode().Perm().String())
		}
	}
}

// onLoopback reports whether a listen address is bound to loopback only.
func onLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// localRanges are the loopback, private, shared (CGNAT) and link-local
// ranges: clients there are not the internet.
var localRanges = []netip.Prefix{
	netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"), netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
}

// hasPrivateOnly reports whether every allowed client range lies inside
// one of the local ranges.
func hasPrivateOnly(clients []string) bool {
	for _, c := range clients {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			a, aerr := netip.ParseAddr(c)
			if aerr != nil {
				return false
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		inside := false
		for _, r := range localRanges {
			if r.Contains(p.Addr()) && p.Bits() >= r.Bits() {
				inside = true
				break
			}
		}
		if !inside {
			return false
		}
	}
	return true
}
