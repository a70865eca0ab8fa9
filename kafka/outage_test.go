package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"banksync"
	"banksync/channel"
	"banksync/chaos"
	"banksync/internal/testkit"
	"banksync/kafka"
)

// errDown is what every call to a downStore answers while it is down.
var errDown = errors.New("injected: history database unreachable")

// downStore is a history database that refuses every call while down, as
// a real outage does: writes, reads, MarkStale and ClearStale alike.
func downStore(real channel.Store, down *atomic.Bool) channel.Store {
	return &chaos.HookedStore{Store: real, Before: func(context.Context, bool) error {
		if down.Load() {
			return errDown
		}
		return nil
	}}
}

// historyHealBound is how long after the history database answers again
// every history must equal core's ledger, with nobody reading, syncing or
// booking anything on those accounts: the dead-letter repair's promise
// (P4 in bounded time). The repair looks every 2 s and waits at most 4 s
// after a failed try; the rest is the replay itself.
const historyHealBound = 30 * time.Second

// TestHistoryOutageHealsItself, on the embedded cluster and on Apache
// Kafka: the history database refuses everything,
// MarkStale included, for longer than the consumer's retries last, while
// deposits keep landing at core. The consumer dead-letters what it cannot
// apply and moves on. Then the database answers again, and with no read,
// no manual sync and no new event on those accounts, the dead-letter
// repair brings every history level with core's ledger within
// historyHealBound. Without the repair (the status quo before it) the
// accounts whose last entries fell into the outage stay behind, flagged
// fresh.
func TestHistoryOutageHealsItself(t *testing.T) {
	eachBroker(t, historyOutageHealsItself)
}

func historyOutageHealsItself(t *testing.T, brokers []string, topic string) {
	ctx := context.Background()
	var down atomic.Bool
	p := newPipelineOn(t, brokers, topic, func(real channel.Store) channel.Store { return downStore(real, &down) })
	cfg := p.consumer("heal")
	cfg.Lanes, cfg.AttemptsMax = 8, 3
	c, err := kafka.NewConsumer(cfg, p.apply)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{}, 2)
	go func() { c.Run(runCtx); done <- struct{}{} }()
	dls := mustDeadLetters(t, kafka.Brokers(p.brokers...), p.dlq)
	go func() {
		dls.RunRepair(runCtx, kafka.RepairConfig{}, p.apply)
		done <- struct{}{}
	}()
	defer func() { cancel(); <-done; <-done }()

	const accounts = 12
	for i := range accounts {
		if _, _, err := p.ledger.CreateAccount(ctx, fmt.Sprintf("acc-%d", i), "c"); err != nil {
			t.Fatal(err)
		}
	}
	deposit := func(round int) {
		for i := range accounts {
			d := banksync.DepositRequest{ExternalRef: fmt.Sprintf("kb-%d-%d", round, i), AccountID: fmt.Sprintf("acc-%d", i), Amount: 100, Sender: "kb"}
			if _, err := p.ledger.Deposit(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
	}
	deposit(0)
	waitHistoriesEqualCore(t, p, accounts, historyHealBound)

	down.Store(true)
	for round := 1; round <= 3; round++ {
		deposit(round)
		time.Sleep(time.Second)
	}
	// Longer than the consumer's 3 tries of each record: every record of
	// the outage is dead-lettered, and the repair's tries fail too.
	time.Sleep(5 * time.Second)
	letters, err := dls.List(ctx)
	if err != nil || len(letters) == 0 {
		t.Fatalf("the outage dead-lettered %d records (%v): it proved nothing", len(letters), err)
	}
	down.Store(false)
	took := waitHistoriesEqualCore(t, p, accounts, historyHealBound)
	t.Logf("%d dead letters; every history equal to core's %v after the database answered again (bound %v)",
		len(letters), took.Round(100*time.Millisecond), historyHealBound)
	// The repair commits how far it got after its replay: the depth falls
	// within a round of the histories being level.
	testkit.Eventually(t, 10*time.Second, "dead-letter depth 0 after the repair", func() error {
		d, err := dls.Depth(ctx)
		if err == nil && d.Total() != 0 {
			err = fmt.Errorf("depth %+v", d)
		}
		return err
	})
}

// waitHistoriesEqualCore waits until the history of each of the accounts
// acc-0 … equals its core ledger, reading the real store (not through the
// channel, which would sync), and returns how long it took; it fails the
// test after bound.
func waitHistoriesEqualCore(t *testing.T, p *pipeline, accounts int, bound time.Duration) time.Duration {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	for {
		behind := ""
		for i := range accounts {
			id := fmt.Sprintf("acc-%d", i)
			want, err := p.coreStore.Entries(ctx, id, 0, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			st, _, err := p.history.Account(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if st.SyncedSeq != int64(len(want)) {
				behind = fmt.Sprintf("%s synced through %d of core's %d", id, st.SyncedSeq, len(want))
				break
			}
			wantHistoryEqualsCore(t, want, p.history, id)
		}
		if behind == "" {
			return time.Since(start)
		}
		if time.Since(start) > bound {
			t.Fatalf("after %v: %s", bound, behind)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
