package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/tetrascope/tetrascope/report"
	"github.com/tetrascope/tetrascope/store"
)

// endpointRows turns an upload of the endpoints' values into the rows the
// store keeps: the rows used and the rows not used, in line order.
func endpointRows(eps []report.Endpoint, errs []report.RowError) []store.EndpointRow {
	rows := make([]store.EndpointRow, 0, len(eps)+len(errs))
	for _, e := range eps {
		rows = append(rows, store.EndpointRow{Line: e.Line, Host: e.Host, IP: e.IP,
			LastError: e.LastError, DefVersion: e.DefVersion, LastUpdate: e.LastUpdate})
	}
	for _, e := range errs {
		rows = append(rows, store.EndpointRow{Line: e.Line, Error: e.Err})
	}
	slices.SortStableFunc(rows, func(a, b store.EndpointRow) int { return a.Line - b.Line })
	return rows
}

// endpointsOf is the reverse of endpointRows. Both slices are non-nil, as
// after an upload.
func endpointsOf(rows []store.EndpointRow) ([]report.Endpoint, []report.RowError) {
	eps, errs := []report.Endpoint{}, []report.RowError{}
	for _, r := range rows {
		if r.Error != "" {
			errs = append(errs, report.RowError{Line: r.Line, Err: r.Error})
			continue
		}
		eps = append(eps, report.Endpoint{Line: r.Line, Host: r.Host, IP: r.IP,
			LastError: r.LastError, DefVersion: r.DefVersion, LastUpdate: r.LastUpdate})
	}
	return eps, errs
}

// storedEndpoints reads the endpoints' values uploaded last; ok is false
// when none were.
func storedEndpoints(ctx context.Context, st *store.Store) (eps []report.Endpoint,
	errs []report.RowError, uploaded time.Time, ok bool, err error) {
	v, ok, err := st.EndpointValues(ctx)
	if err != nil || !ok {
		return nil, nil, time.Time{}, false, err
	}
	eps, errs = endpointsOf(v.Rows)
	return eps, errs, v.Uploaded, true, nil
}

// keepEndpoints stores an upload, so that a restart and `tetrascope
// report` see it too.
func keepEndpoints(ctx context.Context, st *store.Store, eps []report.Endpoint,
	errs []report.RowError) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	v := store.EndpointValues{Uploaded: time.Now().UTC(), Rows: endpointRows(eps, errs)}
	if err := st.SetEndpointValues(ctx, v); err != nil {
		return fmt.Errorf("%w (the previous upload stays in use)", err)
	}
	return nil
}
