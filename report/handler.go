package report

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// ParseWhen reads a point in time as --since, --until and the since and
// until parameters take it: an RFC 3339 time, or a positive duration that
// long before now (Go's units, 90m or 24h, plus d for days: 7d).
func ParseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil || n <= 0 || n > 100*365 {
			return time.Time{}, fmt.Errorf("%q: want a positive number of days such as 7d", s)
		}
		d = time.Duration(n * float64(24*time.Hour))
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return time.Time{}, fmt.Errorf("%q: want an RFC 3339 time "+
				"(2006-01-02T15:04:05Z) or a duration such as 24h or 7d", s)
		}
	}
	if d <= 0 {
		return time.Time{}, fmt.Errorf("%q: a duration must be positive: it counts back "+
			"from now", s)
	}
	return now.Add(-d).UTC(), nil
}

// HandlerConfig is what the report handler needs.
type HandlerConfig struct {
	// Events gives the stored events; *store.Store is one.
	Events Source
	// Correlation holds the correlation.* settings.
	Correlation inspect.Correlation
	// Endpoints returns the endpoints' own values imported last (see
	// Imported); nil means none.
	Endpoints func() ([]Endpoint, []RowError)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger gets the failures the client is not told in detail; nil
	// discards them.
	Logger *slog.Logger
}

// maxConcurrentReports bounds the reports built at once: each reads the
// whole window from the store.
const maxConcurrentReports = 2

// Handler serves GET /api/v1/report: the report of the stored events.
// Parameters: format (csv, json or html; default json), since (RFC 3339
// or a duration back from now, 7d included; default 24h), until (the same;
// default now), sensor (default every sensor). A bad parameter is a 400
// answer {"error", "param"}. CSV comes as an attachment; HTML with a
// Content-Security-Policy that forbids every fetch.
func Handler(c HandlerConfig) http.Handler {
	now := c.Now
	if now == nil {
		now = time.Now
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	slots := make(chan struct{}, maxConcurrentReports)

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "", "use GET")
			return
		}
		t := now().UTC()
		opts, format, perr := reportQuery(r, t)
		if perr != nil {
			writeError(w, http.StatusBadRequest, perr.param, perr.Error())
			return
		}
		if r.Method == http.MethodHead {
			// Whether a report is there, and in what form, without the
			// cost of building one: the page asks this on every load.
			setReportHeaders(w.Header(), format, opts.Until)
			w.WriteHeader(http.StatusOK)
			return
		}
		opts.Correlation = c.Correlation
		if c.Endpoints != nil {
			opts.Endpoints, opts.ImportErrors = c.Endpoints()
		}

		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
		case <-r.Context().Done():
			return
		}
		rep, err := Generate(r.Context(), c.Events, opts)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				log.Error("building report", "error", err)
			}
			writeError(w, http.StatusInternalServerError, "", "the report could not be built")
			return
		}

		var buf bytes.Buffer
		if err := Write(&buf, rep, format); err != nil {
			log.Error("writing report", "error", err, "format", format)
			writeError(w, http.StatusInternalServerError, "", "the report could not be written")
			return
		}
		setReportHeaders(w.Header(), format, rep.Until)
		w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(buf.Bytes())
	})
}

// setReportHeaders sets the headers of a report in format whose window
// ends at until.
func setReportHeaders(h http.Header, format string, until time.Time) {
	h.Set("Content-Type", ContentType(format))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	switch format {
	case "csv":
		h.Set("Content-Disposition", `attachment; filename="`+fileName(until, format)+`"`)
	case "html":
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
	}
}

// FileName is a name for the report file: tetrascope-report- and the end
// of its window.
func FileName(rep *Report, format string) string { return fileName(rep.Until, format) }

func fileName(until time.Time, format string) string {
	return "tetrascope-report-" + until.UTC().Format("20060102-1504") + "." + format
}

// paramError is a query parameter the handler cannot use.
type paramError struct{ param, problem string }

func (e *paramError) Error() string { return e.param + ": " + e.problem }

func reportQuery(r *http.Request, now time.Time) (Options, string, *paramError) {
	q := r.URL.Query()
	opts := Options{Now: now, Until: now, Since: now.Add(-DefaultSince),
		Sensor: strings.TrimSpace(q.Get("sensor"))}
	format := strings.ToLower(strings.TrimSpace(q.Get("format")))
	if format == "" {
		format = "json"
	}
	if !slices.Contains(Formats, format) {
		return opts, "", &paramError{"format", "want csv, json or html"}
	}
	if v := q.Get("until"); strings.TrimSpace(v) != "" {
		t, err := ParseWhen(v, now)
		if err != nil {
			return opts, "", &paramError{"until", err.Error()}
		}
		opts.Until = t
	}
	if v := q.Get("since"); strings.TrimSpace(v) != "" {
		t, err := ParseWhen(v, now)
		if err != nil {
			return opts, "", &paramError{"since", err.Error()}
		}
		opts.Since = t
	} else {
		opts.Since = opts.Until.Add(-DefaultSince)
	}
	if !opts.Since.Before(opts.Until) {
		return opts, "", &paramError{"since", "must be before until"}
	}
	return opts, format, nil
}

// errorBody is the JSON of an error answer, as the rest of the API has it.
type errorBody struct {
	Error string `json:"error"`
	Param string `json:"param,omitempty"`
}

func writeError(w http.ResponseWriter, status int, param, msg string) {
	writeJSON(w, status, errorBody{Error: msg, Param: param})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// MaxUploadBytes bounds the body of POST /api/v1/lasterrors.
const MaxUploadBytes = 8 << 20

// UploadResult is the answer to POST /api/v1/lasterrors: the number of
// endpoint rows now in use and the rows that were not used.
type UploadResult struct {
	Endpoints int        `json:"endpoints"`
	Errors    []RowError `json:"errors"`
}

// LastErrorsHandler serves POST /api/v1/lasterrors: a lasterrors CSV (see
// ParseLastErrors), as the body itself (text/csv or any text type) or as
// the first file of a multipart/form-data form. The rows that parse
// replace the previous set through set, with the rows that did not; the
// answer is an UploadResult. A file that cannot be used as a whole is a
// 400 answer that changes nothing; a body over MaxUploadBytes is a 413;
// an error from set (the upload could not be kept) is a 500 answer that
// names it, and set must then have kept the previous set.
func LastErrorsHandler(set func([]Endpoint, []RowError) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			writeError(w, http.StatusMethodNotAllowed, "", "use POST with a CSV body")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxUploadBytes)

		body, err := uploadBody(r)
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeError(w, http.StatusRequestEntityTooLarge, "",
					fmt.Sprintf("the file is larger than %d MiB", MaxUploadBytes>>20))
				return
			}
			writeError(w, http.StatusBadRequest, "", err.Error())
			return
		}
		eps, rowErrs, err := ParseLastErrors(body)
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeError(w, http.StatusRequestEntityTooLarge, "",
					fmt.Sprintf("the file is larger than %d MiB", MaxUploadBytes>>20))
				return
			}
			writeError(w, http.StatusBadRequest, "", err.Error())
			return
		}
		if rowErrs == nil {
			rowErrs = []RowError{}
		}
		if eps == nil {
			eps = []Endpoint{}
		}
		if err := set(eps, rowErrs); err != nil {
			writeError(w, http.StatusInternalServerError, "",
				"the upload was read but not kept: "+err.Error())
			return
		}
		writeJSON(w, http.StatusOK, UploadResult{Endpoints: len(eps), Errors: rowErrs})
	})
}

// uploadBody returns the CSV of an upload: the first file part of a form,
// or the body.
func uploadBody(r *http.Request) (io.Reader, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		return r.Body, nil
	}
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, fmt.Errorf("reading the form: %w", err)
	}
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			return nil, errors.New("the form holds no file")
		}
		if err != nil {
			return nil, fmt.Errorf("reading the form: %w", err)
		}
		if part.FileName() != "" {
			return part, nil
		}
	}
}

// Imported keeps the endpoints' values uploaded last in memory, for the
// report handler and the clients' agreement; the caller keeps them in the
// store as well and sets them again at start. Its methods are safe for
// concurrent use; the zero Imported holds nothing.
type Imported struct {
	mu     sync.RWMutex
	eps    []Endpoint
	errs   []RowError
	loaded bool
}

// Set replaces the values; a nil eps and errs forget them. It never fails:
// the error is there so that Set can serve as LastErrorsHandler's set.
func (im *Imported) Set(eps []Endpoint, errs []RowError) error {
	im.mu.Lock()
	defer im.mu.Unlock()
	im.eps, im.errs = eps, errs
	im.loaded = eps != nil || errs != nil
	return nil
}

// Get returns the values and the rows not used, nil when nothing was
// imported. The slices are shared: callers must not change them.
func (im *Imported) Get() ([]Endpoint, []RowError) {
	im.mu.RLock()
	defer im.mu.RUnlock()
	if !im.loaded {
		return nil, nil
	}
	return im.eps, im.errs
}
