package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"banksync/postgres"
	"banksync/storetest"
)

func TestMigrations(t *testing.T) {
	for _, set := range []string{"ledger", "channel"} {
		t.Run(set, func(t *testing.T) {
			dsn := postgres.TestDatabase(t)
			ctx := context.Background()
			var store interface {
				Migrations(context.Context) ([]string, []string, error)
				Close() error
			}
			var err error
			if set == "ledger" {
				store, err = postgres.OpenLedger(ctx, dsn)
			} else {
				store, err = postgres.OpenChannel(ctx, dsn)
			}
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			exec := func(tb testing.TB, query, name string) {
				if _, err := conn.Exec(ctx, query, name); err != nil {
					tb.Fatalf("%s %s: %v", query, name, err)
				}
			}
			storetest.Migrations(t, storetest.MigrationsHarness{
				Set: set, List: store.Migrations,
				Record: func(tb testing.TB, name string) {
					exec(tb, `INSERT INTO schema_migrations (name) VALUES ($1)`, name)
				},
				Forget: func(tb testing.TB, name string) { exec(tb, `DELETE FROM schema_migrations WHERE name = $1`, name) },
			})
		})
	}
}
