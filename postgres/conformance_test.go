package postgres_test

import (
	"context"
	"testing"

	"banksync/ledger"
	"banksync/postgres"
	"banksync/postgres/pgtest"
	"banksync/storetest"
)

// TestLedgerConformance runs the suite every ledger store must pass.
func TestLedgerConformance(t *testing.T) {
	storetest.Ledger(t, storetest.LedgerHarness{
		Fresh: pgtest.Database,
		Open: func(tb testing.TB, dsn string) ledger.Store {
			s, err := postgres.OpenLedger(context.Background(), dsn)
			if err != nil {
				tb.Fatalf("OpenLedger: %v", err)
			}
			return s
		},
	})
}
