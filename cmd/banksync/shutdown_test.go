package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"banksync"
	"banksync/internal/testkit"
	"banksync/sqlite"
)

// TestSIGTERMDuringABurst stops the channel with SIGTERM while deposits
// pour in: it exits cleanly within its bound, and the offsets it committed
// are exactly what it applied — every partition's committed offset counts
// the history rows written, so nothing applied is re-delivered and nothing
// unapplied is skipped. Restarted, it catches up, and every account's
// history equals core's. On kfake and on Apache Kafka.
func TestSIGTERMDuringABurst(t *testing.T) {
	eachKafka(t, sigtermDuringABurst)
}

// appliedTimeout bounds the wait for the channel to apply its first batch:
// on a real cluster the member first has to be seated in its group.
const appliedTimeout = 30 * time.Second

// historyPoll is how often a wait here reads the channel's history: each
// read opens the database, which the channel is writing.
const historyPoll = 50 * time.Millisecond

func sigtermDuringABurst(t *testing.T, brokers string) {
	dir := t.TempDir()
	cluster := startCoreProc(t, brokers, "sqlite:"+filepath.Join(dir, "core.db"))
	coreURL := cluster.coreURL
	chPath := filepath.Join(dir, "channel.db")
	startChannel := func() *proc { return cluster.channel("sqlite:" + chPath) }
	const (
		accounts  = 20
		batchSize = 200 // deposits in one request of the burst
	)
	for i := range accounts {
		if st, body := send(t, "POST", coreURL+"/core/v1/accounts", "svc", fmt.Sprintf(`{"owner":"c%d","account_id":"acc-%d"}`, i, i)); st != 201 {
			t.Fatalf("create account = %d %s", st, body)
		}
	}
	ch := startChannel()

	// The burst: batches of deposits, while the channel applies them.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for b := 0; ; b++ {
			select {
			case <-stop:
				return
			default:
			}
			items := make([]string, batchSize)
			for i := range items {
				items[i] = fmt.Sprintf(`{"external_ref":"burst-%d-%d","account_id":"acc-%d","amount":7,"sender":"kb"}`, b, i, i%accounts)
			}
			if st, body := send(t, "POST", coreURL+"/core/v1/deposits/batch", "svc", `{"deposits":[`+strings.Join(items, ",")+`]}`); st != 200 {
				t.Errorf("deposit batch = %d %.200s", st, body)
				return
			}
		}
	})
	// Mid-burst: once the channel has applied a batch's worth, and more
	// keep coming.
	testkit.EventuallyEvery(t, appliedTimeout, historyPoll, fmt.Sprintf("the channel applied %d entries", batchSize), func() error {
		if n := historyApplied(t, chPath, accounts); n < batchSize {
			return fmt.Errorf("%d applied", n)
		}
		return nil
	})
	start := time.Now()
	ch.cmd.Process.Signal(syscall.SIGTERM)
	if err := ch.cmd.Wait(); err != nil {
		t.Fatalf("channel exited with %v after SIGTERM", err)
	}
	took := time.Since(start)
	close(stop)
	wg.Wait()
	if took > 20*time.Second {
		t.Errorf("channel took %v to stop", took)
	}

	// What the stopped member committed is what it applied.
	ctx := context.Background()
	applied := historyApplied(t, chPath, accounts)
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.brokerList()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	offsets, err := kadm.NewClient(cl).FetchOffsets(ctx, "banksync-channel")
	if err != nil {
		t.Fatal(err)
	}
	committed := 0
	offsets.Each(func(o kadm.OffsetResponse) {
		if o.Topic == banksync.TopicLedgerEntries && o.At > 0 {
			committed += int(o.At)
		}
	})
	if applied == 0 || committed != applied {
		t.Fatalf("after SIGTERM the group committed %d records and the history holds %d entries; want them equal and not 0", committed, applied)
	}
	t.Logf("SIGTERM mid-burst: stopped in %v with %d records applied and committed", took, applied)

	// Restarted, the channel catches up with everything core booked.
	startChannel()
	for i := range accounts {
		id := fmt.Sprintf("acc-%d", i)
		var acct banksync.Account
		_, body := send(t, "GET", coreURL+"/core/v1/accounts/"+id, "svc", "")
		if err := json.Unmarshal(body, &acct); err != nil {
			t.Fatalf("account %s = %s", id, body)
		}
		testkit.EventuallyEvery(t, 60*time.Second, historyPoll, id+"'s history at core's", func() error {
			h, err := sqlite.OpenChannel(ctx, chPath)
			if err != nil {
				t.Fatal(err)
			}
			st, _, err := h.Account(ctx, id)
			h.Close()
			if err == nil && (st.SyncedSeq != acct.LastSeq || st.Balance != acct.Balance) {
				err = fmt.Errorf("history at seq %d balance %d, core at seq %d balance %d", st.SyncedSeq, st.Balance, acct.LastSeq, acct.Balance)
			}
			return err
		})
	}
}

// historyApplied is how many entries the channel's history at chPath holds
// for the accounts acc-0 …: the sum of their synced seqs.
func historyApplied(t *testing.T, chPath string, accounts int) int {
	t.Helper()
	ctx := context.Background()
	history, err := sqlite.OpenChannel(ctx, chPath)
	if err != nil {
		t.Fatal(err)
	}
	defer history.Close()
	applied := 0
	for i := range accounts {
		st, _, err := history.Account(ctx, fmt.Sprintf("acc-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		applied += int(st.SyncedSeq)
	}
	return applied
}
