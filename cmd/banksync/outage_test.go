package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"banksync"
	"banksync/internal/testkit"
	"banksync/kafka"
	"banksync/postgres"
	"banksync/postgres/pgtest"
	"banksync/sqlite"
)

// outageHealBound is how long after the history database lets the channel
// in again every history must reach core's last seq, with no customer
// request: the dead-letter repair's bound (docs/operations.md).
const outageHealBound = 30 * time.Second

// TestPostgresHistoryOutageHealsItself drives a history-database outage
// from outside, on the deployed shape: `banksync kafka`, `core` (on its own
// PostgreSQL database) and `channel` (on another) as processes. The
// channel's database refuses every connection and loses the ones it had
// (ALLOW_CONNECTIONS false, its backends terminated) for longer than the
// consumer's retries last, while deposits land at core: the consumer
// dead-letters them and moves on, and the stale mark cannot be written
// either. Then the database lets connections in again, and with no read,
// no manual sync and no new event, every account's history reaches core's
// last seq within outageHealBound.
func TestPostgresHistoryOutageHealsItself(t *testing.T) {
	coreDB, chDB := pgtest.Database(t), pgtest.Database(t)
	dir := t.TempDir()
	cluster := startProcCluster(t, dir, coreDB)
	coreURL := cluster.coreURL
	cluster.channel(chDB, "--lanes", "16")
	ctx := context.Background()
	t.Cleanup(func() { postgres.RefuseConnections(context.Background(), chDB, false) })

	const accounts = 20
	for i := range accounts {
		if st, body := send(t, "POST", coreURL+"/core/v1/accounts", "svc", fmt.Sprintf(`{"owner":"c%d","account_id":"acc-%d"}`, i, i)); st != 201 {
			t.Fatalf("create account = %d %s", st, body)
		}
	}
	deposit := func(round int) {
		for i := range accounts {
			body := fmt.Sprintf(`{"external_ref":"d-%d-%d","account_id":"acc-%d","amount":100,"sender":"kb"}`, round, i, i)
			if st, resp := send(t, "POST", coreURL+"/core/v1/deposits", "svc", body); st != 201 && st != 200 {
				t.Fatalf("deposit = %d %s", st, resp)
			}
		}
	}
	deposit(0)
	waitHistoriesReachCore(t, chDB, coreURL, accounts, 60*time.Second)

	if err := postgres.RefuseConnections(ctx, chDB, true); err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 4; round++ {
		deposit(round)
		time.Sleep(2 * time.Second)
	}
	// The consumer's five tries of a record take about a second; the
	// repair's tries fail too while the database refuses.
	time.Sleep(4 * time.Second)
	dls := newDeadLetters(t, cluster.brokerList())
	letters, err := dls.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(letters) == 0 {
		t.Fatal("no record was dead-lettered during the outage: it proved nothing")
	}
	if err := postgres.RefuseConnections(ctx, chDB, false); err != nil {
		t.Fatal(err)
	}
	took := waitHistoriesReachCore(t, chDB, coreURL, accounts, outageHealBound)
	t.Logf("%d dead letters written during the outage; every history reached core's last seq %v after the database let connections in again (bound %v)",
		len(letters), took.Round(100*time.Millisecond), outageHealBound)
	testkit.Eventually(t, 10*time.Second, "dead-letter depth 0 after the repair", func() error {
		depth, err := dls.Depth(ctx)
		if err == nil && depth.Total() != 0 {
			err = fmt.Errorf("depth %+v", depth)
		}
		return err
	})
}

// newDeadLetters is the dead-letter topic of the default ledger topic on
// brokers, closed at the test's end.
func newDeadLetters(t *testing.T, brokers []string) *kafka.DeadLetters {
	t.Helper()
	dls, err := kafka.NewDeadLetters(kafka.Brokers(brokers...), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dls.Close)
	return dls
}

// waitHistoriesReachCore waits until every account's history in the
// channel database equals core's entries, reading the database directly
// (a read through the channel's API would sync), and returns how long it
// took; it fails the test after bound.
func waitHistoriesReachCore(t *testing.T, chDB, coreURL string, accounts int, bound time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	// Each check opens the database and asks core for every account.
	testkit.EventuallyEvery(t, bound, 200*time.Millisecond, "every history at core's entries", func() error {
		if behind := histories(t, chDB, coreURL, accounts); behind != "" {
			return errors.New(behind)
		}
		return nil
	})
	return time.Since(start)
}

// histories compares each account's history with core's entries and says
// which one is behind ("" when none is); a history that differs from
// core's where it has entries fails the test.
func histories(t *testing.T, chDB, coreURL string, accounts int) string {
	t.Helper()
	store, err := postgres.OpenChannel(context.Background(), chDB)
	if err != nil {
		if strings.Contains(err.Error(), "connect") {
			return "the channel database: " + err.Error()
		}
		t.Fatal(err)
	}
	defer store.Close()
	for i := range accounts {
		id := fmt.Sprintf("acc-%d", i)
		want := coreEntries(t, coreURL, id)
		got, err := store.History(context.Background(), id, 1<<62, 1<<20)
		if err != nil {
			return fmt.Sprintf("%s: %v", id, err)
		}
		for k := range got {
			if got[len(got)-1-k] != want[k] {
				t.Fatalf("%s entry %d: channel %+v, core %+v", id, k, got[len(got)-1-k], want[k])
			}
		}
		if len(got) != len(want) {
			return fmt.Sprintf("%s: the history has %d entries, core %d", id, len(got), len(want))
		}
	}
	return ""
}

// TestDLQCommandsParkAPoisonLetter: a poison letter (an event of a schema
// version this channel cannot read, keyed by a real account) followed by
// valid ones. `banksync dlq list` lists all three, the poison one with its
// raw key and why; `banksync dlq replay --all` applies the valid ones,
// syncs the poison one's account from core and parks it; the list then
// says so, the depth falls to the parked count, and both histories equal
// core's.
func TestDLQCommandsParkAPoisonLetter(t *testing.T) {
	dir := t.TempDir()
	cluster := startProcCluster(t, dir, "sqlite:"+filepath.Join(dir, "core.db"))
	coreURL, brokers := cluster.coreURL, cluster.brokerList()
	ctx := context.Background()
	for _, a := range []string{"acc-1", "acc-2"} {
		if st, body := send(t, "POST", coreURL+"/core/v1/accounts", "svc", `{"owner":"c1","account_id":"`+a+`"}`); st != 201 {
			t.Fatalf("create account = %d %s", st, body)
		}
		for i := range 2 {
			if st, body := send(t, "POST", coreURL+"/core/v1/deposits", "svc", fmt.Sprintf(`{"external_ref":"%s-%d","account_id":"%s","amount":100,"sender":"kb"}`, a, i, a)); st != 200 && st != 201 {
				t.Fatalf("deposit = %d %s", st, body)
			}
		}
	}
	acc1, acc2 := coreEntries(t, coreURL, "acc-1"), coreEntries(t, coreURL, "acc-2")
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(banksync.TopicLedgerEntriesDLQ))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	poison := banksync.EventOf(acc2[1])
	poison.Version = banksync.EventSchemaVersion + 1
	for _, ev := range []banksync.LedgerEvent{poison, banksync.EventOf(acc1[0]), banksync.EventOf(acc1[1])} {
		value, _ := json.Marshal(ev)
		r := &kgo.Record{Key: []byte(ev.AccountID), Value: value, Headers: []kgo.RecordHeader{{Key: kafka.HeaderDLQReason, Value: []byte("test")}}}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	dlq := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(binary, append([]string{"dlq"}, args...)...)
		cmd.Env = append(cmd.Environ(), "BANKSYNC_KAFKA_BROKERS="+cluster.brokers, "BANKSYNC_SERVICE_TOKEN=svc",
			"BANKSYNC_CORE_URL="+coreURL, "BANKSYNC_CHANNEL_DB=sqlite:"+filepath.Join(dir, "channel.db"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("banksync dlq %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	list := dlq("list")
	t.Logf("banksync dlq list:\n%s", list)
	if !strings.Contains(list, "3 dead letters: 3 waiting, 0 held, 0 replayed, 0 parked") ||
		!regexp.MustCompile(`"acc-2"\s+\?\s+waiting\s+undecodable: decode ledger event: unsupported version 2`).MatchString(list) {
		t.Fatalf("banksync dlq list does not show the three letters, the poison one undecodable:\n%s", list)
	}
	replay := dlq("replay", "--all")
	t.Logf("banksync dlq replay --all:\n%s", replay)
	if !strings.Contains(replay, "replayed 2 dead letters, parked 1, held 0") {
		t.Fatalf("replay did not apply two and park one:\n%s", replay)
	}
	if list = dlq("list"); !strings.Contains(list, "3 dead letters: 0 waiting, 0 held, 2 replayed, 1 parked") {
		t.Fatalf("after the replay:\n%s", list)
	}
	depth, err := newDeadLetters(t, brokers).Depth(ctx)
	if err != nil || depth != (kafka.Depth{Parked: 1}) {
		t.Fatalf("depth = %+v, %v; want the parked letter only", depth, err)
	}
	store, err := sqlite.OpenChannel(ctx, filepath.Join(dir, "channel.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for id, want := range map[string][]banksync.Entry{"acc-1": acc1, "acc-2": acc2} {
		got, err := store.History(ctx, id, 1<<62, 100)
		if err != nil || len(got) != len(want) {
			t.Fatalf("%s: history has %d entries (%v), core %d", id, len(got), err, len(want))
		}
		for k := range got {
			if got[len(got)-1-k] != want[k] {
				t.Fatalf("%s entry %d: channel %+v, core %+v", id, k, got[len(got)-1-k], want[k])
			}
		}
	}
}
