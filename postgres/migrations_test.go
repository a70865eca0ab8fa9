package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"banksync"
	"banksync/postgres"
	"banksync/postgres/pgtest"
	"banksync/storetest"
)

func TestMigrations(t *testing.T) {
	storetest.Migrations(t, storetest.MigrationsHarness{
		Open: func(tb testing.TB, set string) (banksync.Migrations, func(testing.TB, string), func(testing.TB, string)) {
			ctx := context.Background()
			var list banksync.Migrations
			var dsn string
			if set == "ledger" {
				var s *postgres.LedgerStore
				s, dsn = mustOpenLedger(tb)
				list = s.Migrations
			} else {
				dsn = pgtest.Database(tb)
				s, err := postgres.OpenChannel(ctx, dsn)
				if err != nil {
					tb.Fatal(err)
				}
				tb.Cleanup(func() { s.Close() })
				list = s.Migrations
			}
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				tb.Fatal(err)
			}
			tb.Cleanup(func() { conn.Close(ctx) })
			exec := func(tb testing.TB, query, name string) {
				if _, err := conn.Exec(ctx, query, name); err != nil {
					tb.Fatalf("%s %s: %v", query, name, err)
				}
			}
			return list,
				func(tb testing.TB, name string) { exec(tb, `INSERT INTO schema_migrations (name) VALUES ($1)`, name) },
				func(tb testing.TB, name string) { exec(tb, `DELETE FROM schema_migrations WHERE name = $1`, name) }
		},
	})
}
