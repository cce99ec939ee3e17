package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/pipeline"
	"github.com/tetrascope/tetrascope/proxy"
	"github.com/tetrascope/tetrascope/resolve"
	"github.com/tetrascope/tetrascope/store"
	"github.com/tetrascope/tetrascope/ui"
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
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return serve(ctx, cfg, newLogger(cfg.Log.Level))
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

func newLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// serve runs the proxy, the pipeline and the UI until ctx is done. The order
// of the stop matters: the proxy drains its tunnels first, then the
// pipeline flushes what they reported, then the page closes, and the store
// closes last.
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

	st, err := store.Open(cfg.DB)
	if err != nil {
		return err
	}
	defer st.Close()
	lastID, err := st.MaxID(ctx, cfg.Sensor)
	if err != nil {
		return fmt.Errorf("reading the last event id: %w", err)
	}

	var px *proxy.Server
	var pl *pipeline.Pipeline
	page := ui.New(ui.Config{Listen: cfg.UI.Listen, Token: cfg.UI.Token, Sensor: cfg.Sensor}, ui.Deps{
		Events: st,
		Active: func() []inspect.Event { return px.Active() },
		Health: func() []string { return health(ctx, st, pl) },
		Stats: func() map[string]any {
			s := pl.Stats()
			return map[string]any{
				"events_total": s.Queued, "dropped": s.Dropped, "stored": s.Stored,
				"store_errors": s.StoreErrors, "active": len(px.Active()),
				"connections": px.Connections(),
			}
		},
		Logger: log.With("component", "ui"),
	})
	pl = pipeline.New(pipeline.Config{Queue: cfg.Events.Queue, RecordOther: cfg.Events.RecordOther,
		Check: store.Check},
		st, page.Publish, log.With("component", "pipeline"))
	px, err = proxy.New(proxy.Config{
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
		FirstID:           lastID,
		Upstream:          up,
		Htpasswd:          cfg.Auth.Htpasswd,
		Realm:             cfg.Auth.Realm,
	}, proxy.Deps{Resolver: res, Catalog: catalog, Recorder: pl, Logger: log.With("component", "proxy")})
	if err != nil {
		return err
	}
	log.Info("tetrascope starting", "version", version, "sensor", cfg.Sensor,
		"listen", cfg.Listen, "ui", cfg.UI.Listen, "db", cfg.DB,
		"allow_ports", cfg.Allow.ConnectPorts, "dns_servers", cfg.DNS.Servers,
		"resolve_overrides", len(static), "upstream", redactedURL(cfg.Upstream.URL),
		"client_auth", cfg.Auth.Htpasswd != "")

	pipeCtx, stopPipe := context.WithCancel(context.Background())
	uiCtx, stopUI := context.WithCancel(context.Background())
	g := new(errgroup.Group)
	g.Go(func() error { return pl.Run(pipeCtx) })
	g.Go(func() error { return page.Run(uiCtx) })
	g.Go(func() error { prune(ctx, st, cfg.Retention, log); return nil })

	perr := px.Run(ctx)
	stopPipe()
	time.Sleep(10 * time.Millisecond) // let the last events reach the stream
	stopUI()
	gerr := g.Wait()
	log.Info("tetrascope stopped", "events", pl.Stats().Stored, "dropped", pl.Stats().Dropped)
	if perr != nil {
		return perr
	}
	return gerr
}

// health lists why the service is degraded.
func health(ctx context.Context, st *store.Store, pl *pipeline.Pipeline) []string {
	var why []string
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := st.Ping(c); err != nil {
		why = append(why, "store: "+err.Error())
	}
	return append(why, pl.Degraded()...)
}

// prune deletes events older than the retention, hourly.
func prune(ctx context.Context, st *store.Store, retention time.Duration, log *slog.Logger) {
	if retention <= 0 {
		return
	}
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		n, err := st.Prune(ctx, time.Now().Add(-retention))
		if err != nil && ctx.Err() == nil {
			log.Error("pruning old events", "error", err)
		} else if n > 0 {
			log.Info("pruned old events", "events", n, "retention", retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// warnRisky logs configurations that make an open proxy.
func warnRisky(cfg *Config, log *slog.Logger) {
	for _, c := range cfg.Allow.Clients {
		if c == "0.0.0.0/0" || c == "::/0" {
			if cfg.Auth.Htpasswd == "" {
				log.Warn("allow.clients admits every address and no authentication is set: "+
					"this is an open proxy", "allow_clients", strings.Join(cfg.Allow.Clients, ","))
			}
		}
	}
	if !strings.HasPrefix(cfg.UI.Listen, "127.") && !strings.HasPrefix(cfg.UI.Listen, "[::1]") &&
		!strings.HasPrefix(cfg.UI.Listen, "localhost") && cfg.UI.Token == "" {
		log.Warn("the page and API listen beyond loopback without ui.token", "ui", cfg.UI.Listen)
	}
}
