package store

import (
	"context"
	"fmt"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

// EndpointRow is one line of the endpoints' own values that an admin
// uploaded: what an endpoint reports (Host and/or IP, LastError, and the
// definition version and last update as the file wrote them), or, when
// Error is set, why the line could not be used.
type EndpointRow struct {
	Line       int
	Host       string
	IP         string
	LastError  inspect.LastError
	DefVersion string
	LastUpdate string
	Error      string
}

// EndpointValues is the last upload of endpoint values.
type EndpointValues struct {
	Uploaded time.Time
	Rows     []EndpointRow // in line order
}

// SetEndpointValues replaces the stored endpoint values with v, in one
// transaction: a failure keeps the previous upload whole.
func (s *Store) SetEndpointValues(ctx context.Context, v EndpointValues) error {
	if err := s.setEndpointValues(ctx, v); err != nil {
		return fmt.Errorf("keeping the endpoints' values: %w", err)
	}
	return nil
}

func (s *Store) setEndpointValues(ctx context.Context, v EndpointValues) error {
	if err := s.checkFile(); err != nil {
		return err
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "DELETE FROM endpoint_lasterrors"); err != nil {
		return err
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO endpoint_lasterrors
		(line, host, ip, lasterror, defversion, last_update, error, uploaded)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer stmt.Close()
	uploaded := formatTime(clampTime(v.Uploaded))
	for _, r := range v.Rows {
		_, err := stmt.ExecContext(ctx, int64(r.Line), r.Host, r.IP, int64(r.LastError),
			r.DefVersion, r.LastUpdate, r.Error, uploaded)
		if err != nil {
			return fmt.Errorf("line %d: %w", r.Line, err)
		}
	}
	return tx.Commit()
}

// EndpointValues returns the last upload of endpoint values; ok is false
// when none is stored.
func (s *Store) EndpointValues(ctx context.Context) (v EndpointValues, ok bool, err error) {
	const q = `SELECT line, host, ip, lasterror, defversion, last_update, error, uploaded
		FROM endpoint_lasterrors ORDER BY line`
	rows, err := s.r.QueryContext(ctx, q)
	if err != nil {
		return v, false, fmt.Errorf("reading the endpoints' values: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r        EndpointRow
			code     int64
			uploaded string
		)
		err := rows.Scan(&r.Line, &r.Host, &r.IP, &code, &r.DefVersion, &r.LastUpdate,
			&r.Error, &uploaded)
		if err != nil {
			return v, false, fmt.Errorf("reading the endpoints' values: %w", err)
		}
		r.LastError = inspect.LastError(code)
		if v.Uploaded, err = parseTime(uploaded); err != nil {
			return v, false, fmt.Errorf("reading the endpoints' values: line %d: "+
				"uploaded: %w", r.Line, err)
		}
		v.Rows = append(v.Rows, r)
	}
	if err := rows.Err(); err != nil {
		return v, false, fmt.Errorf("reading the endpoints' values: %w", err)
	}
	return v, len(v.Rows) > 0, nil
}
