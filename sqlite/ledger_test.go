package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"banksync/ledger"
	"banksync/sqlite"
	"banksync/storetest"
)

func TestLedgerConformance(t *testing.T) {
	storetest.Ledger(t, storetest.LedgerHarness{
		Fresh: func(tb testing.TB) string { return filepath.Join(tb.TempDir(), "core.db") },
		Open: func(tb testing.TB, path string) ledger.Store {
			s, err := sqlite.OpenLedger(context.Background(), path)
			if err != nil {
				tb.Fatalf("OpenLedger: %v", err)
			}
			return s
		},
	})
}

func TestLedgerSingleWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "core.db")
	ctx := context.Background()
	s, err := sqlite.OpenLedger(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s2, err := sqlite.OpenLedger(ctx, path); err == nil {
		s2.Close()
		t.Fatal("a second OpenLedger on the same database succeeded; want the writer lock to refuse it")
	}
}
