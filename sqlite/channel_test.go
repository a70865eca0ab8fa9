package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"banksync/channel"
	"banksync/sqlite"
	"banksync/storetest"
)

func TestChannelConformance(t *testing.T) {
	storetest.Channel(t, storetest.ChannelHarness{
		Fresh: func(tb testing.TB) string { return filepath.Join(tb.TempDir(), "channel.db") },
		Open: func(tb testing.TB, path string) channel.Store {
			s, err := sqlite.OpenChannel(context.Background(), path)
			if err != nil {
				tb.Fatalf("OpenChannel: %v", err)
			}
			return s
		},
	})
}

// TestChannelBesideLedger opens the channel store on the ledger's database:
// a deployment may keep both in one file.
func TestChannelBesideLedger(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "banksync.db")
	l, err := sqlite.OpenLedger(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := sqlite.OpenChannel(ctx, path)
	if err != nil {
		t.Fatalf("OpenChannel beside the ledger: %v", err)
	}
	defer c.Close()
	if err := c.AddAccount(ctx, "acc-1", "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.LastPosition(ctx); err != nil {
		t.Fatal(err)
	}
}
