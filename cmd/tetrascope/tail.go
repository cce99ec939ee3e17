package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/tetrascope/tetrascope/inspect/squidlog"
	"github.com/tetrascope/tetrascope/sidecar"
)

func newTail() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tail FILE...",
		Short: "Follow proxy access logs (Squid) and show them like serve does",
		Long: "tail follows one or more proxy access logs, classifies every line like the\n" +
			"inline proxy classifies connections, and serves the same page, API, store\n" +
			"and reports. It survives rotation (rename and copy-truncate) and resumes\n" +
			"where it stopped; --from-start replays a whole file for a past incident.",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return &usageError{errors.New("tail: name at least one log file")}
			}
			// A file that does not exist yet is waited for; a directory
			// never becomes a log.
			for _, a := range args {
				if fi, err := os.Stat(a); err == nil && fi.IsDir() {
					return &usageError{fmt.Errorf("tail: %s is a directory, not a log file", a)}
				}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, files []string) error {
			cfg, err := loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			f := cmd.Flags()
			format, _ := f.GetString("format")
			logformat, _ := f.GetString("logformat")
			fromStart, _ := f.GetBool("from-start")
			log := newLogger(cfg.Log.Level)
			return tail(signalContext(log), cfg, log, files, format, logformat, fromStart)
		},
	}
	f := cmd.Flags()
	f.String("config", "", "YAML file with the keys to change from the defaults")
	f.String("sensor", "", "name of this instance, stored with every event (default: host name)")
	f.String("ui", "", "address of the page and API (default 127.0.0.1:8128)")
	f.String("db", "", "SQLite database file (default tetrascope.db)")
	f.String("log-level", "", "debug, info, warn or error")
	f.String("format", squidlog.FormatSquid, "log format: squid, common, combined or custom")
	f.String("logformat", "", "with --format custom: Squid logformat codes of the log")
	f.Bool("from-start", false, "read files from their start (replay) instead of their end")
	return cmd
}

// tail follows proxy logs with the shared runtime until ctx is done.
func tail(ctx context.Context, cfg *Config, log *slog.Logger, files []string,
	format, logformat string, fromStart bool) error {
	catalog, _ := cfg.catalog()
	parser, err := squidlog.NewParser(squidlog.Config{Format: format, LogFormat: logformat,
		Catalog: catalog})
	if err != nil {
		return &usageError{err}
	}

	rt, err := newRuntime(ctx, cfg, log)
	if err != nil {
		return err
	}
	fl, err := sidecar.New(sidecar.Config{
		Files:     files,
		Parser:    parser,
		Recorder:  rt.pipe,
		Offsets:   rt.store,
		NextID:    rt.ids.Next,
		Sensor:    cfg.Sensor,
		FromStart: fromStart,
		Log:       log.With("component", "tail"),
	})
	if err != nil {
		rt.close()
		return &usageError{err}
	}
	rt.stats = func(m map[string]any) {
		s := fl.Stats()
		m["lines"] = s.Lines
		var malformed uint64
		for _, n := range s.Malformed {
			malformed += n
		}
		m["malformed"] = malformed
		m["truncations"] = s.Truncations
		m["bytes_missing"] = s.BytesMissing
	}
	log.Info("tetrascope tail starting", "version", version, "sensor", cfg.Sensor,
		"files", files, "format", format, "from_start", fromStart, "ui", cfg.UI.Listen,
		"db", cfg.DB)
	return rt.run(ctx, fl)
}
