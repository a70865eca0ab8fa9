package storetest

import (
	"context"
	"slices"
	"strings"
	"testing"

	"banksync"
)

// MigrationsHarness tells Migrations how to open each store's schema.
type MigrationsHarness struct {
	// Open opens a fresh database's store of set ("ledger" or "channel",
	// closed when tb ends) and returns its Migrations, and how to add and
	// remove a row of the database's schema_migrations, as another
	// binary's migrations would.
	Open func(tb testing.TB, set string) (list banksync.Migrations, record, forget func(tb testing.TB, name string))
}

// Migrations checks what each store reports of its schema, through the
// readiness check: freshly opened, every migration it embeds is applied; a
// migration removed from the record is named as not applied; one recorded
// that the binary does not know (a newer version's, during a rolling
// upgrade) is listed but does not make it unready.
func Migrations(t *testing.T, h MigrationsHarness) {
	for _, set := range []string{"ledger", "channel"} {
		t.Run(set, func(t *testing.T) {
			list, record, forget := h.Open(t, set)
			testMigrations(t, set, list, record, forget)
		})
	}
}

func testMigrations(t *testing.T, set string, list banksync.Migrations, record, forget func(tb testing.TB, name string)) {
	ctx := context.Background()
	known, applied, err := list(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(known) == 0 || strings.Join(known, ",") != strings.Join(applied, ",") {
		t.Fatalf("fresh store: known %q, applied %q; want the same, at least one", known, applied)
	}
	for _, name := range known {
		if !strings.HasPrefix(name, set+"/") {
			t.Errorf("migration %q is not of set %q", name, set)
		}
	}
	check := list.Check
	if err := check(ctx); err != nil {
		t.Fatalf("fresh store: %v", err)
	}
	// Another set's rows (a store sharing the database) are not ours.
	other := "other/001_init.sql"
	record(t, other)
	if err := check(ctx); err != nil {
		t.Errorf("with another set's row: %v; want ready", err)
	}
	future := set + "/999_future.sql"
	record(t, future)
	if _, applied, err := list(ctx); err != nil || !slices.Contains(applied, future) {
		t.Errorf("applied = %q, %v; want %s listed", applied, err, future)
	}
	if err := check(ctx); err != nil {
		t.Errorf("with a newer version's %s recorded: %v; want ready", future, err)
	}
	forget(t, future)
	forget(t, known[0])
	if err := check(ctx); err == nil || !strings.Contains(err.Error(), "not applied: "+known[0]) {
		t.Errorf("with %s forgotten: %v; want it named as not applied", known[0], err)
	}
}
