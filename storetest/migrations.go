package storetest

import (
	"context"
	"slices"
	"strings"
	"testing"

	bhttp "banksync/http"
)

// MigrationsHarness tells Migrations about one store's schema.
type MigrationsHarness struct {
	Set string // the migration set: "ledger" or "channel"
	// List is the store's Migrations, on a freshly opened database.
	List bhttp.Migrations
	// Record and Forget add and remove a row of the database's
	// schema_migrations, as another binary's migrations would.
	Record, Forget func(tb testing.TB, name string)
}

// Migrations checks what a store reports of its schema, through the
// readiness check: freshly opened, every migration it embeds is applied; a
// migration removed from the record is named as not applied; one recorded
// that the binary does not know (a newer version's, during a rolling
// upgrade) is listed but does not make it unready.
func Migrations(t *testing.T, h MigrationsHarness) {
	ctx := context.Background()
	known, applied, err := h.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(known) == 0 || strings.Join(known, ",") != strings.Join(applied, ",") {
		t.Fatalf("fresh store: known %q, applied %q; want the same, at least one", known, applied)
	}
	for _, name := range known {
		if !strings.HasPrefix(name, h.Set+"/") {
			t.Errorf("migration %q is not of set %q", name, h.Set)
		}
	}
	check := bhttp.MigrationCheck(h.List)
	if err := check(ctx); err != nil {
		t.Fatalf("fresh store: %v", err)
	}
	// Another set's rows (a store sharing the database) are not ours.
	other := "other/001_init.sql"
	h.Record(t, other)
	if err := check(ctx); err != nil {
		t.Errorf("with another set's row: %v; want ready", err)
	}
	future := h.Set + "/999_future.sql"
	h.Record(t, future)
	if _, applied, err := h.List(ctx); err != nil || !slices.Contains(applied, future) {
		t.Errorf("applied = %q, %v; want %s listed", applied, err, future)
	}
	if err := check(ctx); err != nil {
		t.Errorf("with a newer version's %s recorded: %v; want ready", future, err)
	}
	h.Forget(t, future)
	h.Forget(t, known[0])
	if err := check(ctx); err == nil || !strings.Contains(err.Error(), "not applied: "+known[0]) {
		t.Errorf("with %s forgotten: %v; want it named as not applied", known[0], err)
	}
}
