package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/tetrascope/tetrascope/report"
	"github.com/tetrascope/tetrascope/store"
)

func newReport() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Write the per-client report of the stored events (csv, json or html)",
		Long: "report reads the events stored in --db and writes, per client, whether it\n" +
			"downloads its definitions, how it fails and since when, its diagnosis and the\n" +
			"lasterror its endpoint most likely shows. csv is the client table alone; json\n" +
			"and html add a summary, and html a chart of failures over time, in one file\n" +
			"that needs nothing else to open or print.\n\n" +
			"--lasterrors names a CSV of the values admins gathered from the endpoints\n" +
			"(host and/or ip, lasterror, optionally definition version and last update):\n" +
			"each client then shows whether its endpoint agrees, and what a disagreement\n" +
			"means. Rows of that file that cannot be used are listed on stderr with their\n" +
			"line numbers; the rest is used. Without --lasterrors, the values last uploaded\n" +
			"on the page (POST /api/v1/lasterrors, kept in the database) are used.\n\n" +
			"The database may be in use by a running serve or tail: report takes no lock\n" +
			"and does not hold up its writes.\n" +
			"--since and --until take an RFC 3339 time or a duration back from now (24h,\n" +
			"90m, 7d). Without --format, the extension of -o chooses (.json, .html), else\n" +
			"csv.\n\n" +
			"Exit status: 0 when the report is written, 1 when reading or writing fails,\n" +
			"2 for bad usage or configuration.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now().UTC()
			opts, err := readReportFlags(cmd.Flags(), now)
			if err != nil {
				return err
			}
			cfg, err := loadConfig(cmd.Flags())
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runReport(ctx, cfg, opts, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.String("config", "", "YAML file with the keys to change from the defaults "+
		"(correlation.*, db)")
	f.String("db", "", "SQLite database file to read (default tetrascope.db)")
	f.String("since", "", "start of the window: RFC 3339, or a duration back from now "+
		"(24h, 7d) (default 24 hours before --until)")
	f.String("until", "", "end of the window: RFC 3339, or a duration back from now (default now)")
	f.String("format", "", "csv, json or html (default: from the -o extension, else csv)")
	f.String("lasterrors", "", "CSV of the endpoints' own lasterror values to compare with")
	f.StringP("output", "o", "", "file to write (default standard output)")
	f.String("sensor", "", "report on this sensor only (default every sensor in the database)")
	return cmd
}

// reportFlags are the report's own flags, which are not config keys.
type reportFlags struct {
	since, until time.Time
	now          time.Time
	format       string
	lasterrors   string
	output       string
	sensor       string
}

// readReportFlags checks the report's own flags; every error is bad usage
// naming the flag.
func readReportFlags(fs *pflag.FlagSet, now time.Time) (reportFlags, error) {
	o := reportFlags{now: now}
	since, _ := fs.GetString("since")
	until, _ := fs.GetString("until")
	o.format, _ = fs.GetString("format")
	o.lasterrors, _ = fs.GetString("lasterrors")
	o.output, _ = fs.GetString("output")
	o.sensor, _ = fs.GetString("sensor")

	usage := func(format string, a ...any) (reportFlags, error) {
		return reportFlags{}, &usageError{fmt.Errorf(format, a...)}
	}
	var err error
	o.until = now
	if strings.TrimSpace(until) != "" {
		if o.until, err = report.ParseWhen(until, now); err != nil {
			return usage("--until %v", err)
		}
	}
	o.since = o.until.Add(-report.DefaultSince)
	if strings.TrimSpace(since) != "" {
		if o.since, err = report.ParseWhen(since, now); err != nil {
			return usage("--since %v", err)
		}
		if o.since.IsZero() {
			// The zero time stands for "no start" in the report.
			return usage("--since %s: give a time after the first second of year 1", since)
		}
	}
	if !o.since.Before(o.until) {
		return usage("--since %s is not before --until %s", o.since.Format(time.RFC3339),
			o.until.Format(time.RFC3339))
	}

	o.format = strings.ToLower(strings.TrimSpace(o.format))
	if o.format == "" {
		o.format = "csv"
		switch strings.ToLower(filepath.Ext(o.output)) {
		case ".json":
			o.format = "json"
		case ".html", ".htm":
			o.format = "html"
		}
	}
	if !slices.Contains(report.Formats, o.format) {
		return usage("--format %q: want csv, json or html", o.format)
	}
	if o.lasterrors != "" {
		if fi, err := os.Stat(o.lasterrors); err != nil {
			return usage("--lasterrors: %v", err)
		} else if fi.IsDir() {
			return usage("--lasterrors %s: is a directory", o.lasterrors)
		}
	}
	if fs.Changed("sensor") && strings.TrimSpace(o.sensor) == "" {
		return usage("--sensor: empty name")
	}
	return o, nil
}

// runReport reads the store and writes the report. It never creates a
// database: a report on a file that does not exist is a mistake in --db.
func runReport(ctx context.Context, cfg *Config, o reportFlags, stdout, stderr io.Writer) error {
	fi, err := os.Stat(cfg.DB)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return badConfig("--db (db) %s: no such database file", cfg.DB)
	case err != nil:
		return badConfig("--db (db) %s: %v", cfg.DB, err)
	case fi.IsDir():
		return badConfig("--db (db) %s: is a directory", cfg.DB)
	}
	var out outputFile
	if o.output != "" && o.output != "-" {
		if out, err = checkOutput(o.output, cfg.DB); err != nil {
			return err
		}
	}

	opts := report.Options{Correlation: cfg.correlation(), Since: o.since, Until: o.until,
		Now: o.now, Sensor: strings.TrimSpace(o.sensor)}
	if o.lasterrors != "" {
		eps, rowErrs, err := readLastErrors(o.lasterrors)
		if err != nil {
			return err
		}
		for _, re := range rowErrs {
			fmt.Fprintf(stderr, "tetrascope: --lasterrors %s line %d: %s (row not used)\n",
				o.lasterrors, re.Line, re.Err)
		}
		opts.Endpoints, opts.ImportErrors = eps, rowErrs
	}

	// The store runs in WAL mode: this reader neither blocks a serve that
	// writes the same file nor waits for it. No lock file is taken.
	st, err := store.Open(cfg.DB)
	if err != nil {
		return badConfig("--db (db): %v", err)
	}
	defer st.Close()
	if o.lasterrors == "" {
		// Without a file, the values last uploaded on the page, as
		// /api/v1/report uses them.
		eps, rowErrs, uploaded, ok, err := storedEndpoints(ctx, st)
		if err != nil {
			return err
		}
		if ok {
			fmt.Fprintf(stderr, "tetrascope: comparing with the endpoints' values uploaded "+
				"%s (%d rows; --lasterrors FILE to use another file)\n",
				uploaded.Format(time.RFC3339), len(eps))
			opts.Endpoints, opts.ImportErrors = eps, rowErrs
		}
	}
	rep, err := report.Generate(ctx, st, opts)
	if err != nil {
		return err
	}
	return writeReport(rep, o, out, stdout)
}

// readLastErrors parses the --lasterrors file; a file that cannot be used
// at all is bad usage.
func readLastErrors(path string) ([]report.Endpoint, []report.RowError, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, &usageError{fmt.Errorf("--lasterrors: %w", err)}
	}
	defer f.Close()
	eps, rowErrs, err := report.ParseLastErrors(f)
	if err != nil {
		return nil, nil, &usageError{fmt.Errorf("--lasterrors %s: %w", path, err)}
	}
	return eps, rowErrs, nil
}

// outputFile is where -o writes: a regular file is replaced through a
// temporary file renamed into place (through a symbolic link, the file it
// names), so that a failed report leaves the old one whole and keeps its
// mode; anything else that already exists (a device, a FIFO) is written
// into. A new file is readable by its owner only: a report names users and
// addresses.
type outputFile struct {
	path   string      // the file to write, symbolic links resolved
	direct bool        // write into path rather than replace it
	mode   os.FileMode // of the replacement
}

// checkOutput resolves -o before anything is read, refusing a directory
// and the database itself.
func checkOutput(output, db string) (outputFile, error) {
	out := outputFile{path: output, mode: 0o600}
	fi, err := os.Stat(output)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return out, nil
	case err != nil:
		return out, badConfig("-o %s: %v", output, err)
	case fi.IsDir():
		return out, badConfig("-o %s: is a directory", output)
	}
	if dbi, err := os.Stat(db); err == nil && os.SameFile(fi, dbi) {
		return out, badConfig("-o %s: is the database --db reads; name another file", output)
	}
	if !fi.Mode().IsRegular() {
		out.direct = true
		return out, nil
	}
	if out.path, err = filepath.EvalSymlinks(output); err != nil {
		return out, badConfig("-o %s: %v", output, err)
	}
	out.mode = fi.Mode().Perm()
	return out, nil
}

// writeReport writes the report to standard output, or to -o as out says.
func writeReport(rep *report.Report, o reportFlags, out outputFile, stdout io.Writer) error {
	if o.output == "" || o.output == "-" {
		return writeBuffered(stdout, rep, o.format)
	}
	if out.direct {
		f, err := os.OpenFile(out.path, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("-o %s: %w", o.output, err)
		}
		if err := writeBuffered(f, rep, o.format); err != nil {
			f.Close()
			return fmt.Errorf("-o %s: %w", o.output, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("-o %s: %w", o.output, err)
		}
		return nil
	}

	tmp, err := os.CreateTemp(filepath.Dir(out.path), "."+filepath.Base(out.path)+".*")
	if err != nil {
		return fmt.Errorf("-o %s: %w", o.output, err)
	}
	defer os.Remove(tmp.Name()) // after the rename, there is nothing to remove
	if err := writeBuffered(tmp, rep, o.format); err != nil {
		tmp.Close()
		return fmt.Errorf("-o %s: %w", o.output, err)
	}
	if err := tmp.Chmod(out.mode); err != nil {
		tmp.Close()
		return fmt.Errorf("-o %s: %w", o.output, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("-o %s: %w", o.output, err)
	}
	if err := os.Rename(tmp.Name(), out.path); err != nil {
		return fmt.Errorf("-o %s: %w", o.output, err)
	}
	return nil
}

func writeBuffered(w io.Writer, rep *report.Report, format string) error {
	bw := bufio.NewWriter(w)
	if err := report.Write(bw, rep, format); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing the report: %w", err)
	}
	return nil
}
