package store

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/tetrascope/tetrascope/inspect"
)

func TestEndpointValues(t *testing.T) {
	s, path := openTest(t)
	ctx := context.Background()

	if _, ok, err := s.EndpointValues(ctx); err != nil || ok {
		t.Fatalf("new store: ok %v, err %v; want nothing stored", ok, err)
	}

	first := EndpointValues{
		Uploaded: time.Date(2026, 12, 4, 9, 30, 0, 0, time.UTC),
		Rows: []EndpointRow{
			{Line: 2, Host: "PC-01", IP: "10.0.0.1", LastError: 4294965196,
				DefVersion: "tetra:93512", LastUpdate: "2026-12-04 08:00"},
			{Line: 3, Error: "lasterror: \"abc\" is not a number"},
			{Line: 5, IP: "10.0.0.7", LastError: 0},
		},
	}
	if err := s.SetEndpointValues(ctx, first); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.EndpointValues(ctx)
	if err != nil || !ok {
		t.Fatalf("after upload: ok %v, err %v", ok, err)
	}
	if !reflect.DeepEqual(got, first) {
		t.Errorf("read back\n%+v\nwant\n%+v", got, first)
	}

	// A second upload replaces the first entirely.
	second := EndpointValues{
		Uploaded: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC),
		Rows:     []EndpointRow{{Line: 2, Host: "PC-02", LastError: inspect.LastError(4294965193)}},
	}
	if err := s.SetEndpointValues(ctx, second); err != nil {
		t.Fatal(err)
	}

	// And it survives a restart.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, ok, err = s2.EndpointValues(ctx)
	if err != nil || !ok {
		t.Fatalf("after reopening: ok %v, err %v", ok, err)
	}
	if !reflect.DeepEqual(got, second) {
		t.Errorf("after reopening\n%+v\nwant\n%+v", got, second)
	}

	// An upload with no rows leaves nothing stored.
	if err := s2.SetEndpointValues(ctx, EndpointValues{Uploaded: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s2.EndpointValues(ctx); err != nil || ok {
		t.Errorf("after an empty upload: ok %v, err %v; want nothing stored", ok, err)
	}
}

// A failed upload keeps the previous one whole.
func TestEndpointValuesFailureKeepsPrevious(t *testing.T) {
	s, _ := openTest(t)
	ctx := context.Background()
	prev := EndpointValues{Uploaded: time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC),
		Rows: []EndpointRow{{Line: 2, IP: "10.0.0.1", LastError: 4294965187}}}
	if err := s.SetEndpointValues(ctx, prev); err != nil {
		t.Fatal(err)
	}
	// Two rows with the same line break the primary key half way.
	bad := EndpointValues{Uploaded: time.Now(),
		Rows: []EndpointRow{{Line: 2, IP: "10.0.0.2"}, {Line: 2, IP: "10.0.0.3"}}}
	if err := s.SetEndpointValues(ctx, bad); err == nil {
		t.Fatal("duplicate lines stored without an error")
	}
	got, ok, err := s.EndpointValues(ctx)
	if err != nil || !ok || !reflect.DeepEqual(got, prev) {
		t.Errorf("after the failed upload: %+v, ok %v, err %v; want %+v", got, ok, err, prev)
	}
}

// A database of schema version 1, written before endpoint values were kept,
// opens with its events and gains the table.
func TestMigrateFromVersion1(t *testing.T) {
	s, path := openTest(t)
	mustAppend(t, s, genEvents("a", 1, 3))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, path)
	for _, q := range []string{"DROP TABLE endpoint_lasterrors", "DROP TABLE event_blocks",
		"DROP INDEX events_client",
		"ALTER TABLE events DROP COLUMN seq",
		"CREATE INDEX events_client_ip ON events (client_ip, id)",
		"DELETE FROM schema_version WHERE version > 1"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	ctx := context.Background()
	evs, err := s2.Events(ctx, inspect.Filter{})
	if err != nil || len(evs) != 3 {
		t.Fatalf("events after the upgrade: %d, %v; want 3", len(evs), err)
	}
	// The old rows are block 0 of the client index, new ones come after.
	mustAppend(t, s2, genEvents("a", 250, 1))
	evs, err = s2.Events(ctx, inspect.Filter{ClientIP: "10.0.1.0"})
	if err != nil || len(evs) != 1 || evs[0].ID != 250 {
		t.Fatalf("a new client's events after the upgrade: %v, %v; want event 250", evs, err)
	}
	evs, err = s2.Events(ctx, inspect.Filter{ClientIP: "10.0.0.2"})
	if err != nil || len(evs) != 1 || evs[0].ID != 2 {
		t.Fatalf("an old client's events after the upgrade: %v, %v; want event 2", evs, err)
	}
	v := EndpointValues{Uploaded: time.Now().UTC(), Rows: []EndpointRow{{Line: 2, IP: "10.0.0.1"}}}
	if err := s2.SetEndpointValues(ctx, v); err != nil {
		t.Fatalf("the new table after the upgrade: %v", err)
	}
}
