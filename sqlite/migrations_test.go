package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"banksync"
	"banksync/sqlite"
	"banksync/storetest"
)

func TestMigrations(t *testing.T) {
	storetest.Migrations(t, storetest.MigrationsHarness{
		Open: func(tb testing.TB, set string) (banksync.Migrations, func(testing.TB, string), func(testing.TB, string)) {
			path := filepath.Join(tb.TempDir(), set+".db")
			ctx := context.Background()
			var list banksync.Migrations
			if set == "ledger" {
				s, err := sqlite.OpenLedger(ctx, path)
				if err != nil {
					tb.Fatal(err)
				}
				tb.Cleanup(func() { s.Close() })
				list = s.Migrations
			} else {
				s, err := sqlite.OpenChannel(ctx, path)
				if err != nil {
					tb.Fatal(err)
				}
				tb.Cleanup(func() { s.Close() })
				list = s.Migrations
			}
			db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
			if err != nil {
				tb.Fatal(err)
			}
			tb.Cleanup(func() { db.Close() })
			exec := func(tb testing.TB, query, name string) {
				if _, err := db.Exec(query, name); err != nil {
					tb.Fatalf("%s %s: %v", query, name, err)
				}
			}
			return list,
				func(tb testing.TB, name string) {
					exec(tb, `INSERT INTO schema_migrations (name, applied_at) VALUES (?, 0)`, name)
				},
				func(tb testing.TB, name string) { exec(tb, `DELETE FROM schema_migrations WHERE name = ?`, name) }
		},
	})
}
