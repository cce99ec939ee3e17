package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tetrascope/tetrascope/inspect"
	"github.com/tetrascope/tetrascope/metrics"
	"github.com/tetrascope/tetrascope/pipeline"
	"github.com/tetrascope/tetrascope/report"
	"github.com/tetrascope/tetrascope/store"
	"github.com/tetrascope/tetrascope/ui"
)

// sensor is what feeds the pipeline: the proxy or the log follower.
type sensor interface {
	Run(ctx context.Context) error
}

// runtime is what serve and tail share: the store, the pipeline from the
// sensor to the store and the stream, and the page.
type runtime struct {
	cfg    *Config
	log    *slog.Logger
	store  *store.Store
	pipe   *pipeline.Pipeline
	page   *ui.Server
	lastID int64        // the highest event id stored before
	ids    *inspect.IDs // event ids for every sensor of the process
	unlock func()       // releases the database lock

	// Set by the caller before run: what the sensor adds to the page.
	active  func() []inspect.Event
	tunnels func() int64 // how many are open, counted without a listing
	stats   func(map[string]any)
}

// newRuntime opens the store and builds the pipeline and the page.
func newRuntime(ctx context.Context, cfg *Config, log *slog.Logger) (*runtime, error) {
	unlock, err := lockDB(cfg.DB)
	if err != nil {
		return nil, err
	}
	st, err := store.Open(cfg.DB)
	if err != nil {
		unlock()
		return nil, badConfig("db: %v", err)
	}
	lastID, err := st.MaxID(ctx, "")
	if err != nil {
		st.Close()
		unlock()
		return nil, fmt.Errorf("reading the last event id: %w", err)
	}
	rt := &runtime{cfg: cfg, log: log, store: st, lastID: lastID, unlock: unlock,
		ids: new(inspect.IDs)}
	rt.ids.Seed(lastID)
	met := rt.metrics()
	corr := cfg.correlation()
	var imported report.Imported
	rt.page = ui.New(ui.Config{Listen: cfg.UI.Listen, Token: cfg.UI.Token, Sensor: cfg.Sensor},
		ui.Deps{
			Events: st,
			Active: func() []inspect.Event {
				if rt.active == nil {
					return nil
				}
				return rt.active()
			},
			Health:  func() []string { return rt.health(ctx) },
			Stats:   rt.statsMap,
			Clients: func() []inspect.Client { return rt.pipe.Clients() },
			Metrics: met.Handler(),
			Report: report.Handler(report.HandlerConfig{Events: st, Correlation: corr,
				Endpoints: imported.Get, Logger: log.With("component", "report")}),
			LastErrors: report.LastErrorsHandler(func(eps []report.Endpoint,
				errs []report.RowError) error {
				if err := keepEndpoints(ctx, st, eps, errs); err != nil {
					log.Warn("endpoints' values uploaded but not kept", "err", err)
					return err
				}
				imported.Set(eps, errs)
				rt.pipe.SetReported(report.ReportedByIP(eps, rt.pipe.Clients()))
				return nil
			}),
			Logger: log.With("component", "ui"),
		})
	rt.pipe = pipeline.New(pipeline.Config{
		Queue:         cfg.Events.Queue,
		RecordOther:   cfg.Events.RecordOther,
		Check:         store.Check,
		Correlation:   &corr,
		PublishClient: rt.page.PublishClient,
		Watched:       func() bool { return rt.page.Viewers() > 0 },
		OnAppend:      met.ObserveAppend,
	}, st, func(kind string, ev inspect.Event) {
		rt.page.Publish(kind, ev)
		met.Observe(kind, ev)
	}, log.With("component", "pipeline"))
	if err := rt.warm(ctx, corr.StateWindow()); err != nil {
		rt.close()
		return nil, err
	}
	// The endpoints' values uploaded before a restart are used again.
	eps, errs, uploaded, ok, err := storedEndpoints(ctx, st)
	switch {
	case err != nil:
		log.Warn("the endpoints' values uploaded earlier cannot be read; upload them again",
			"err", err)
	case ok:
		imported.Set(eps, errs)
		rt.pipe.SetReported(report.ReportedByIP(eps, rt.pipe.Clients()))
		log.Info("endpoints' values restored from the store", "endpoints", len(eps),
			"uploaded", uploaded.Format(time.RFC3339))
	}
	return rt, nil
}

// warm refills the per-client health from the events stored within the
// state window, so a restart does not forget why a client is failing.
func (rt *runtime) warm(ctx context.Context, window time.Duration) error {
	f := inspect.Filter{Since: time.Now().Add(-window - time.Minute), Sensor: rt.cfg.Sensor,
		Limit: store.MaxLimit}
	var all []inspect.Event
	for {
		page, err := rt.store.Events(ctx, f)
		if err != nil {
			return fmt.Errorf("reading recent events for client health: %w", err)
		}
		all = append(all, page...)
		if len(page) < f.Limit || len(all) >= 1_000_000 {
			break
		}
		f.Before = page[len(page)-1].ID
	}
	slices.Reverse(all) // oldest first
	rt.pipe.Warm(all)
	if len(all) > 0 {
		rt.log.Info("client health restored from the store", "events", len(all))
	}
	return nil
}

// metrics builds the /metrics registry; its gauges read the pipeline, the
// page and the sensor at scrape time, once they exist.
func (rt *runtime) metrics() *metrics.Registry {
	return metrics.New(metrics.Sources{
		OpenTunnels: func() int {
			if rt.tunnels == nil {
				return 0
			}
			return int(rt.tunnels())
		},
		Clients:        func() []inspect.Client { return rt.pipe.Clients() },
		Viewers:        func() int { return rt.page.Viewers() },
		ViewersDropped: func() int64 { return rt.page.ViewersDropped() },
		Pipeline: func() metrics.PipelineCounts {
			s := rt.pipe.Stats()
			return metrics.PipelineCounts{Dropped: s.Dropped, Stored: s.Stored,
				NotStored: s.NotStored, StoreErrors: s.StoreErrors, Invalid: s.Invalid}
		},
	})
}

func (rt *runtime) statsMap() map[string]any {
	s := rt.pipe.Stats()
	m := map[string]any{
		"events_total": s.Queued, "dropped": s.Dropped, "stored": s.Stored,
		"store_errors": s.StoreErrors,
	}
	if rt.stats != nil {
		rt.stats(m)
	}
	return m
}

// health lists why the service is degraded.
func (rt *runtime) health(ctx context.Context) []string {
	var why []string
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := rt.store.Ping(c); err != nil {
		why = append(why, "store: "+err.Error())
	}
	return append(why, rt.pipe.Degraded()...)
}

// run runs the sensor, the pipeline and the page until ctx is done. The
// order of the stop matters: the sensor finishes first (the proxy drains
// its tunnels), then the pipeline flushes what it reported, then the page
// closes, and the store closes last.
func (rt *runtime) run(ctx context.Context, s sensor) error {
	defer rt.close()
	pipeCtx, stopPipe := context.WithCancel(context.Background())
	uiCtx, stopUI := context.WithCancel(context.Background())
	sctx, stopSensor := context.WithCancel(ctx)
	defer stopSensor()
	g := new(errgroup.Group)
	g.Go(func() error { return rt.pipe.Run(pipeCtx) })
	g.Go(func() error {
		err := rt.page.Run(uiCtx)
		if err != nil {
			stopSensor() // a page that cannot listen stops everything
		}
		return err
	})
	g.Go(func() error { prune(sctx, rt.store, rt.cfg.Retention, rt.log); return nil })

	serr := s.Run(sctx)

	stopSensor()
	stopPipe()
	time.Sleep(10 * time.Millisecond) // let the last events reach the stream
	stopUI()
	gerr := g.Wait()
	st := rt.pipe.Stats()
	rt.log.Info("tetrascope stopped", "stored", st.Stored, "dropped", st.Dropped,
		"store_lost", st.StoreLost)
	if gerr != nil {
		return gerr
	}
	return serr
}

// close closes the store, then releases the database lock.
func (rt *runtime) close() {
	if err := rt.store.Close(); err != nil {
		rt.log.Error("closing the store", "error", err)
	}
	rt.unlock()
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
