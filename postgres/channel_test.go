package postgres_test

import (
	"context"
	"testing"

	"banksync/channel"
	"banksync/postgres"
	"banksync/postgres/pgtest"
	"banksync/storetest"
)

// TestChannelConformance runs the suite every channel store must pass.
func TestChannelConformance(t *testing.T) {
	storetest.Channel(t, storetest.ChannelHarness{
		ChangesCrossStores: true,
		Fresh:              pgtest.Database,
		Open: func(tb testing.TB, dsn string) channel.Store {
			s, err := postgres.OpenChannel(context.Background(), dsn)
			if err != nil {
				tb.Fatalf("OpenChannel: %v", err)
			}
			return s
		},
	})
}

// TestChannelBesideLedger migrates both schemas into one database, in either
// order: a deployment may share it.
func TestChannelBesideLedger(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Database(t)
	c, err := postgres.OpenChannel(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, err := postgres.OpenLedger(ctx, dsn)
	if err != nil {
		t.Fatalf("OpenLedger beside the channel: %v", err)
	}
	defer l.Close()
	if err := c.AddAccount(ctx, "acc-1", "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.LastPosition(ctx); err != nil {
		t.Fatal(err)
	}
}
