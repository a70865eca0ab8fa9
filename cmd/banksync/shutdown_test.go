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
	"banksync/sqlite"
)

// TestSIGTERMDuringABurst stops the channel with SIGTERM while deposits
// pour in: it exits cleanly within its bound, and the offsets it committed
// are exactly what it applied — every partition's committed offset counts
// the history rows written, so nothing applied is re-delivered and nothing
// unapplied is skipped. Restarted, it catches up, and every account's
// history equals core's.
func TestSIGTERMDuringABurst(t *testing.T) {
	dir := t.TempDir()
	cluster := startProcCluster(t, dir, "sqlite:"+filepath.Join(dir, "core.db"))
	coreURL := cluster.coreURL
	chPath := filepath.Join(dir, "channel.db")
	startChannel := func() *proc { return cluster.channel("sqlite:" + chPath) }
	const accounts = 20
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
			items := make([]string, 200)
			for i := range items {
				items[i] = fmt.Sprintf(`{"external_ref":"burst-%d-%d","account_id":"acc-%d","amount":7,"sender":"kb"}`, b, i, i%accounts)
			}
			if st, body := send(t, "POST", coreURL+"/core/v1/deposits/batch", "svc", `{"deposits":[`+strings.Join(items, ",")+`]}`); st != 200 {
				t.Errorf("deposit batch = %d %.200s", st, body)
				return
			}
		}
	})
	time.Sleep(1500 * time.Millisecond) // mid-burst
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
	history, err := sqlite.OpenChannel(ctx, chPath)
	if err != nil {
		t.Fatal(err)
	}
	applied := int64(0)
	for i := range accounts {
		st, _, err := history.Account(ctx, fmt.Sprintf("acc-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		applied += st.SyncedSeq
	}
	history.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.kafka.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	offsets, err := kadm.NewClient(cl).FetchOffsets(ctx, "banksync-channel")
	if err != nil {
		t.Fatal(err)
	}
	committed := int64(0)
	offsets.Each(func(o kadm.OffsetResponse) {
		if o.Topic == banksync.TopicLedgerEntries && o.At > 0 {
			committed += o.At
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
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			h, err := sqlite.OpenChannel(ctx, chPath)
			if err != nil {
				t.Fatal(err)
			}
			st, _, err := h.Account(ctx, id)
			h.Close()
			if err == nil && st.SyncedSeq == acct.LastSeq && st.Balance == acct.Balance {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: history at seq %d, core at %d", id, st.SyncedSeq, acct.LastSeq)
			}
		}
	}
}
