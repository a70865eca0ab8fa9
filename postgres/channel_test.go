package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"banksync"
	"banksync/channel"
	"banksync/internal/testkit"
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

// TestChannelListenerComesBack: when the listener's connection is cut, it
// says so in the log, listens again, and then hears commits made through
// another store again.
func TestChannelListenerComesBack(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Database(t)
	var log testkit.SyncBuffer
	s, err := postgres.OpenChannel(ctx, dsn, postgres.WithLogger(slog.New(slog.NewTextHandler(&log, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	other, err := postgres.OpenChannel(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	listeners := func() int {
		var n int
		pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN banksync_history'`).Scan(&n)
		return n
	}
	testkit.Eventually(t, 5*time.Second, "both stores listening", func() error {
		if n := listeners(); n != 2 {
			return fmt.Errorf("%d listeners", n)
		}
		return nil
	})
	if _, err := pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND query = 'LISTEN banksync_history'`); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the cut told and mended", func() error {
		if !strings.Contains(log.String(), "listening for history changes failed") {
			return errors.New("nothing logged")
		}
		if n := listeners(); n != 2 {
			return fmt.Errorf("%d listeners", n)
		}
		return nil
	})
	for drained := false; !drained; {
		select {
		case <-s.Changed():
		case <-time.After(200 * time.Millisecond):
			drained = true
		}
	}
	if _, err := other.ApplyRuns(ctx, []channel.Run{{Account: "acc-1", Entries: []banksync.Entry{{AccountID: "acc-1", Seq: 1, Position: 1,
		Kind: banksync.KindDeposit, Amount: 5, BalanceAfter: 5, Counterparty: "kb", BookedAt: time.Now()}}}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Changed():
	case <-time.After(5 * time.Second):
		t.Fatal("after listening again, a commit through another store was not heard within 5 s")
	}
}
