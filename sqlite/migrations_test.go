package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"banksync/sqlite"
	"banksync/storetest"
)

func TestMigrations(t *testing.T) {
	for _, set := range []string{"ledger", "channel"} {
		t.Run(set, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), set+".db")
			ctx := context.Background()
			var store interface {
				Migrations(context.Context) ([]string, []string, error)
				Close() error
			}
			var err error
			if set == "ledger" {
				store, err = sqlite.OpenLedger(ctx, path)
			} else {
				store, err = sqlite.OpenChannel(ctx, path)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			exec := func(tb testing.TB, query, name string) {
				if _, err := db.Exec(query, name); err != nil {
					tb.Fatalf("%s %s: %v", query, name, err)
				}
			}
			storetest.Migrations(t, storetest.MigrationsHarness{
				Set: set, List: store.Migrations,
				Record: func(tb testing.TB, name string) {
					exec(tb, `INSERT INTO schema_migrations (name, applied_at) VALUES (?, 0)`, name)
				},
				Forget: func(tb testing.TB, name string) { exec(tb, `DELETE FROM schema_migrations WHERE name = ?`, name) },
			})
		})
	}
}
