package kafka_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"banksync"
	"banksync/channel"
	"banksync/internal/testkit"
	"banksync/kafka"
	"banksync/kafka/kafkatest"
	"banksync/ledger"
	"banksync/node"
	"banksync/storetest"
)

// pipeline is core (ledger on SQLite, its relay publishing to a Kafka
// cluster, its HTTP API) and a channel over its own SQLite history store,
// optionally wrapped.
type pipeline struct {
	brokers   []string
	topic     string // the ledger topic
	dlq       string // its dead-letter topic
	ledger    *ledger.Ledger
	coreStore ledger.Store
	history   channel.Store // the real store, unwrapped
	apply     kafka.Syncer
}

// newPipeline is a pipeline on an embedded cluster of its own.
func newPipeline(t testing.TB, wrap func(channel.Store) channel.Store) *pipeline {
	t.Helper()
	return newPipelineOn(t, mustStartCluster(t, kafka.ClusterConfig{}).Addrs(), banksync.TopicLedgerEntries, wrap)
}

// newPipelineOn is a pipeline publishing to topic (and topic.dlq, or the
// default dead-letter topic for the default topic) on brokers.
func newPipelineOn(t testing.TB, brokers []string, topic string, wrap func(channel.Store) channel.Store) *pipeline {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	p := &pipeline{brokers: brokers, topic: topic, dlq: kafka.DLQTopicOf(topic)}
	core, err := node.StartCore(ctx, node.CoreConfig{Listen: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(dir, "core.db"),
		Kafka: kafka.Brokers(brokers...), Topic: topic, ServiceToken: "svc", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { core.Close() })
	p.ledger, p.coreStore = core.Ledger(), core.Store()
	d, err := node.OpenDomain(ctx, node.ChannelConfig{DB: "sqlite:" + filepath.Join(dir, "channel.db"), CoreURL: "http://" + core.Addr(),
		ServiceToken: "svc", WrapStore: func(s channel.Store) channel.Store {
			p.history = s
			if wrap != nil {
				return wrap(s)
			}
			return s
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	p.apply = d.Channel
	return p
}

// consumer is a consumer configuration for the pipeline's topics, in group
// (made the topic's own, so tests sharing a cluster do not share groups).
func (p *pipeline) consumer(group string) kafka.ConsumerConfig {
	return consumerOn(p.brokers, p.topic, group)
}

// consumerOn is a consumer configuration for topic and its dead-letter
// topic (kafka.DLQTopicOf) on brokers, in group made the topic's own.
func consumerOn(brokers []string, topic, group string) kafka.ConsumerConfig {
	return kafka.ConsumerConfig{Conn: kafka.Brokers(brokers...), Topic: topic, DLQTopic: kafka.DLQTopicOf(topic), Group: group + "." + topic}
}

// TestConsumerKeepsHistoryInStep runs core (ledger, relay into a real
// Kafka-protocol cluster) and a channel whose history is fed by a consumer
// group member. The member is stopped mid-stream and another takes over the
// group; afterwards every account's channel history equals its core ledger
// entry for entry (P4), each applied once.
func TestConsumerKeepsHistoryInStep(t *testing.T) {
	eachBroker(t, consumerKeepsHistoryInStep)
}

func consumerKeepsHistoryInStep(t *testing.T, brokers []string, topic string) {
	ctx := context.Background()
	p := newPipelineOn(t, brokers, topic, nil)
	l, coreStore, chStore, apply := p.ledger, p.coreStore, p.history, p.apply
	startMember := func() (stop func()) {
		cfg := p.consumer("test-channel")
		cfg.Lanes = 16
		c, err := kafka.NewConsumer(cfg, apply)
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); c.Run(runCtx) }()
		return func() { cancel(); <-done }
	}

	stopA := startMember()
	storetest.Book(t, l, 30, 2000)
	stopA() // mid-stream: the relay may still be publishing
	stopB := startMember()
	defer stopB()
	for i := 0; i < 600; i++ { // more money arrives while B consumes
		if _, err := l.Deposit(ctx, banksync.DepositRequest{ExternalRef: fmt.Sprint("late-", i), AccountID: fmt.Sprintf("acc-%d", i%30), Amount: 7, Sender: "kb"}); err != nil {
			t.Fatal(err)
		}
	}

	deadline := time.Now().Add(60 * time.Second)
	for _, id := range accountIDs(30) {
		waitHistoryEqualsCore(t, coreStore, chStore, id, deadline)
	}
}

// waitHistoryEqualsCore waits, until deadline, for account's history to
// be synced through core's last entry, then fails t unless it is core's
// entries, entry for entry; it returns how many there are.
func waitHistoryEqualsCore(t *testing.T, core ledger.Store, history channel.Store, account string, deadline time.Time) int {
	t.Helper()
	ctx := context.Background()
	want, err := core.Entries(ctx, account, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, time.Until(deadline), "account "+account+" synced through core's last entry", func() error {
		st, _, err := history.Account(ctx, account)
		if err == nil && st.SyncedSeq != int64(len(want)) {
			err = fmt.Errorf("synced through %d of core's %d", st.SyncedSeq, len(want))
		}
		return err
	})
	wantHistoryEqualsCore(t, want, history, account)
	return len(want)
}

// wantHistoryEqualsCore fails t unless account's channel history is want,
// core's entries, entry for entry.
func wantHistoryEqualsCore(t *testing.T, want []banksync.Entry, history channel.Store, account string) {
	t.Helper()
	got, err := history.History(context.Background(), account, 1<<62, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(got)
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("account %s: channel history differs from core (-core +channel):\n%s", account, d)
	}
}

func accountIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("acc-%d", i)
	}
	return ids
}

// A member stopped while records sit in its lanes commits none of them:
// the next member of the group gets them again.
func TestConsumerStopCommitsOnlyApplied(t *testing.T) {
	eachBroker(t, consumerStopCommitsOnlyApplied)
}

func consumerStopCommitsOnlyApplied(t *testing.T, brokers []string, topic string) {
	ctx := context.Background()
	pub := mustNewTopicPublisher(t, brokers, topic)
	var entries []banksync.Entry
	for i := 1; i <= 200; i++ {
		entries = append(entries, banksync.Entry{AccountID: fmt.Sprintf("acc-%d", i%20), Seq: int64(i/20 + 1), Position: int64(i),
			Kind: banksync.KindDeposit, Amount: 1, BalanceAfter: int64(i/20 + 1), Counterparty: "kb", BookedAt: banksync.Timestamp(time.Now())})
	}
	if err := pub.Publish(ctx, entries); err != nil {
		t.Fatal(err)
	}
	run := func(apply kafka.ApplyFunc) (stop func()) {
		cfg := consumerOn(brokers, topic, "stop-test")
		cfg.Lanes, cfg.DrainTimeout = 4, 100*time.Millisecond
		c, err := kafka.NewConsumer(cfg, apply)
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); c.Run(runCtx) }()
		return func() { cancel(); <-done }
	}
	// Member A applies nothing: every apply waits until A is stopped.
	started := make(chan struct{}, 1)
	stopA := run(kafka.ApplyFunc(func(ctx context.Context, e banksync.Entry) error {
		select {
		case started <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return ctx.Err()
	}))
	<-started
	stopA()
	// Member B must see all 200.
	seen := make(chan int64, 400)
	stopB := run(kafka.ApplyFunc(func(ctx context.Context, e banksync.Entry) error {
		seen <- e.Position
		return nil
	}))
	defer stopB()
	got := map[int64]bool{}
	timeout := time.After(30 * time.Second)
	for len(got) < len(entries) {
		select {
		case p := <-seen:
			got[p] = true
		case <-timeout:
			t.Fatalf("the next member saw %d of %d records: the stopped member committed records it never applied", len(got), len(entries))
		}
	}
}

// One account whose records keep failing does not block the others: after
// AttemptsMax tries its record is given up and the partition moves on.
func TestConsumerPoisonedAccountDoesNotBlock(t *testing.T) {
	eachBrokerPartitions(t, 1, consumerPoisonedAccountDoesNotBlock) // every account shares one partition
}

func consumerPoisonedAccountDoesNotBlock(t *testing.T, brokers []string, topic string) {
	ctx := context.Background()
	pub := mustNewTopicPublisher(t, brokers, topic)
	var entries []banksync.Entry
	for i := 1; i <= 100; i++ {
		acct := fmt.Sprintf("acc-%d", i%10)
		entries = append(entries, banksync.Entry{AccountID: acct, Seq: int64((i-1)/10 + 1), Position: int64(i),
			Kind: banksync.KindDeposit, Amount: 1, BalanceAfter: int64((i-1)/10 + 1), Counterparty: "kb", BookedAt: banksync.Timestamp(time.Now())})
	}
	if err := pub.Publish(ctx, entries); err != nil {
		t.Fatal(err)
	}
	applied := make(chan string, 200)
	tries := make(chan struct{}, 1000)
	cfg := consumerOn(brokers, topic, "poison-test")
	cfg.Lanes, cfg.AttemptsMax = 4, 3
	dlq := cfg.DLQTopic
	c, err := kafka.NewConsumer(cfg,
		kafka.ApplyFunc(func(ctx context.Context, e banksync.Entry) error {
			if e.AccountID == "acc-3" {
				tries <- struct{}{}
				return fmt.Errorf("history store refuses %s", e.AccountID)
			}
			applied <- e.AccountID
			return nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); c.Run(runCtx) }()
	defer func() { cancel(); <-done }()
	got := 0
	for timeout := time.After(60 * time.Second); got < 90; {
		select {
		case <-applied:
			got++
		case <-timeout:
			t.Fatalf("applied %d of the 90 records of healthy accounts: a poisoned account blocked the partition", got)
		}
	}
	// acc-3's ten records were each tried AttemptsMax times, then published
	// to the dead-letter topic with why, how often and where from.
	dead := consumeAll(t, brokers, dlq, 10)
	if len(tries) != 30 {
		t.Fatalf("acc-3 tried %d times, want 10 records × 3 attempts", len(tries))
	}
	seqs := map[int64]bool{}
	for _, r := range dead {
		ev, err := banksync.DecodeLedgerEvent(r.Value)
		if err != nil || ev.AccountID != "acc-3" || string(r.Key) != "acc-3" {
			t.Fatalf("dead letter %q (key %q): %v", r.Value, r.Key, err)
		}
		seqs[ev.Seq] = true
		if header(r, kafka.HeaderDLQAttempts) != "3" || header(r, kafka.HeaderDLQPartition) != "0" ||
			!strings.Contains(header(r, kafka.HeaderDLQReason), "history store refuses acc-3") ||
			header(r, kafka.HeaderDLQOffset) != strconv.FormatInt(ev.EventID-1, 10) || header(r, kafka.HeaderDLQAt) == "" {
			t.Fatalf("dead letter of seq %d has headers %v", ev.Seq, r.Headers)
		}
	}
	if len(seqs) != 10 {
		t.Fatalf("dead letters cover %d of acc-3's 10 records", len(seqs))
	}

	// Listing shows them all, none replayed yet.
	dls := mustDeadLetters(t, kafka.Brokers(brokers...), dlq)
	letters, err := dls.List(ctx)
	if err != nil || len(letters) != 10 || countStates(letters)[kafka.LetterWaiting] != 10 {
		t.Fatalf("List = %d letters %v, %v; want 10 waiting", len(letters), countStates(letters), err)
	}
	if d := letters[0]; d.Attempts != 3 || d.Event.AccountID != "acc-3" || d.FromPartition != 0 || d.At.IsZero() {
		t.Fatalf("first dead letter = %+v", d)
	}
	// The history store is healthy again: replay one account (all ten
	// letters are its: the replay commits past them), then everything
	// (nothing left).
	var reapplied []int64
	healthy := applyOnly(func(_ context.Context, e banksync.Entry) error { reapplied = append(reapplied, e.Seq); return nil })
	res, err := dls.Replay(ctx, func(ev banksync.LedgerEvent) bool { return ev.AccountID == "acc-3" }, healthy, nil)
	if err != nil || res.Applied != 10 {
		t.Fatalf("replay of acc-3 = %+v, %v; want 10 applied", res, err)
	}
	if letters, _ = dls.List(ctx); countStates(letters)[kafka.LetterReplayed] != 10 {
		t.Fatalf("after the replay the letters are %v, want 10 replayed", countStates(letters))
	}
	res, err = dls.Replay(ctx, nil, healthy, nil)
	if err != nil || res.Applied != 0 {
		t.Fatalf("full replay = %+v, %v; want nothing left", res, err)
	}
	if len(reapplied) != 10 {
		t.Fatalf("applied %d dead letters in all, want 10", len(reapplied))
	}
}

// applyOnly is a Syncer from a function that applies one entry; it cannot
// sync an account from core.
type applyOnly kafka.ApplyFunc

func (f applyOnly) ApplyBatch(ctx context.Context, groups [][]banksync.Entry) []error {
	return kafka.ApplyFunc(f).ApplyBatch(ctx, groups)
}

func (f applyOnly) SyncAccount(_ context.Context, account string) error {
	return fmt.Errorf("no core to sync %s from", account)
}

// countStates counts letters by state.
func countStates(letters []kafka.DeadLetter) map[string]int {
	n := map[string]int{}
	for _, d := range letters {
		n[d.State]++
	}
	return n
}

// states lists the letters' states in dead-letter order.
func states(letters []kafka.DeadLetter) []string {
	var out []string
	for _, d := range letters {
		out = append(out, d.State)
	}
	return out
}

// A letter that still fails is held: the replay goes on with the letters
// behind it, commits past them, and the next replay tries the held one
// again, and only it.
func TestReplayHoldsALetterThatFails(t *testing.T) {
	ctx := context.Background()
	eachDLQ(t, 1, func(t *testing.T, q dlqTopic) {
		for i := 1; i <= 5; i++ {
			q.produce(t, 0, "acc-1", mustEvent(t, "acc-1", int64(i)))
		}
		var applied []int64
		fixed := false
		failOn3 := applyOnly(func(_ context.Context, e banksync.Entry) error {
			if e.Seq == 3 && !fixed {
				return fmt.Errorf("still broken")
			}
			applied = append(applied, e.Seq)
			return nil
		})
		res, err := q.dls.Replay(ctx, nil, failOn3, nil)
		if err != nil || res != (kafka.ReplayResult{Applied: 4, Held: 1}) {
			t.Fatalf("replay = %+v, %v; want 4 applied, 1 held", res, err)
		}
		letters, _ := q.dls.List(ctx)
		want := []string{kafka.LetterReplayed, kafka.LetterReplayed, kafka.LetterHeld, kafka.LetterReplayed, kafka.LetterReplayed}
		if got := states(letters); !slices.Equal(got, want) {
			t.Fatalf("letters after the replay = %v, want %v", got, want)
		}
		if d, _ := q.dls.Depth(ctx); d != (kafka.Depth{Waiting: 1}) {
			t.Fatalf("depth = %+v, want the held letter waiting", d)
		}
		fixed, applied = true, nil
		res, err = q.dls.Replay(ctx, nil, failOn3, nil)
		if err != nil || res != (kafka.ReplayResult{Applied: 1}) {
			t.Fatalf("replay after the fix = %+v, %v; want the held letter alone", res, err)
		}
		if want := []int64{3}; !slices.Equal(applied, want) {
			t.Fatalf("the second replay applied %v, want %v", applied, want)
		}
		if d, _ := q.dls.Depth(ctx); d != (kafka.Depth{}) {
			t.Fatalf("depth = %+v, want 0", d)
		}
	})
}

// Letters failing one after another mean the history database (or core)
// is down: the replay stops instead of trying every letter, says so, and
// records what it did.
func TestReplayStopsWhenLettersFailInARow(t *testing.T) {
	ctx := context.Background()
	eachDLQ(t, 1, func(t *testing.T, q dlqTopic) {
		for i := 1; i <= 20; i++ {
			q.produce(t, 0, "acc-1", mustEvent(t, "acc-1", int64(i)))
		}
		tried := 0
		down := applyOnly(func(_ context.Context, e banksync.Entry) error {
			tried++
			if e.Seq == 1 {
				return nil
			}
			return fmt.Errorf("history database unreachable")
		})
		res, err := q.dls.Replay(ctx, nil, down, nil)
		if err == nil || !strings.Contains(err.Error(), "history database unreachable") || res != (kafka.ReplayResult{Applied: 1, Held: 3}) {
			t.Fatalf("replay = %+v, %v; want 1 applied, 3 held, then an error", res, err)
		}
		// One try of the batch (seq 1 in, seq 2 fails), then letter by letter:
		// seq 1, and three tries each of seqs 2, 3 and 4.
		if tried > 2+1+3*3 {
			t.Fatalf("tried %d times: the replay went on past letters failing in a row", tried)
		}
		if d, _ := q.dls.Depth(ctx); d != (kafka.Depth{Waiting: 19}) {
			t.Fatalf("depth = %+v, want 19 waiting", d)
		}
	})
}

// Letters that always fail (held) end no replay: each later replay tries
// them once and goes on, so the letters behind them and on other
// partitions are applied, and only the three stay in the depth.
func TestReplayGoesOnPastLettersThatAlwaysFail(t *testing.T) {
	ctx := context.Background()
	eachDLQ(t, 2, func(t *testing.T, q dlqTopic) {
		for i := int64(1); i <= 3; i++ {
			q.produce(t, 0, "broken", mustEvent(t, "broken", i))
		}
		for i := int64(1); i <= 5; i++ {
			q.produce(t, 0, "acc-1", mustEvent(t, "acc-1", i))
			q.produce(t, 1, "acc-2", mustEvent(t, "acc-2", i))
		}
		applied := map[string]bool{}
		sync := applyOnly(func(_ context.Context, e banksync.Entry) error {
			if e.AccountID == "broken" {
				return fmt.Errorf("core has no entry %s/%d that an event announced", e.AccountID, e.Seq)
			}
			applied[fmt.Sprintf("%s/%d", e.AccountID, e.Seq)] = true
			return nil
		})
		for range 3 {
			q.dls.Replay(ctx, nil, sync, nil)
		}
		if len(applied) != 10 {
			t.Fatalf("applied %d of the 10 good letters: the ones that always fail held up the others", len(applied))
		}
		if d, err := q.dls.Depth(ctx); err != nil || d != (kafka.Depth{Waiting: 3}) {
			t.Fatalf("depth = %+v, %v; want the 3 broken letters only", d, err)
		}
	})
}

// Letters retention deleted are not waited for: the depth counts only what
// is in the topic, a held letter deleted is no longer held, and listing and
// replay end instead of fetching for letters that are not there.
func TestReplayAfterRetention(t *testing.T) {
	ctx := context.Background()
	eachDLQ(t, 1, func(t *testing.T, q dlqTopic) {
		for i := int64(1); i <= 4; i++ {
			q.produce(t, 0, "acc-1", mustEvent(t, "acc-1", i))
		}
		failing := true
		sync := applyOnly(func(_ context.Context, e banksync.Entry) error {
			if failing && e.Seq == 2 {
				return fmt.Errorf("still broken")
			}
			return nil
		})
		if res, err := q.dls.Replay(ctx, nil, sync, nil); err != nil || res.Held != 1 {
			t.Fatalf("replay = %+v, %v; want letter 2 held", res, err)
		}
		q.produce(t, 0, "acc-1", mustEvent(t, "acc-1", 5))
		// Retention removes the first three letters (the held one among them).
		cl, err := kgo.NewClient(kgo.SeedBrokers(q.brokers...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		del := kadm.Offsets{}
		del.Add(kadm.Offset{Topic: q.name, Partition: 0, At: 3})
		if _, err := kadm.NewClient(cl).DeleteRecords(ctx, del); err != nil {
			t.Fatal(err)
		}
		if d, err := q.dls.Depth(ctx); err != nil || d != (kafka.Depth{Waiting: 1}) {
			t.Fatalf("depth = %+v, %v; want the one letter not replayed that is still there", d, err)
		}
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		letters, err := q.dls.List(tctx)
		if err != nil || len(letters) != 2 {
			t.Fatalf("List = %d letters, %v; want the 2 left", len(letters), err)
		}
		if res, err := q.dls.Replay(tctx, nil, sync, nil); err != nil || res != (kafka.ReplayResult{Applied: 1}) {
			t.Fatalf("replay = %+v, %v; want the new letter applied", res, err)
		}
		// Every letter retention left gone, too: nothing to fetch, no wait.
		del = kadm.Offsets{}
		del.Add(kadm.Offset{Topic: q.name, Partition: 0, At: 5})
		if _, err := kadm.NewClient(cl).DeleteRecords(ctx, del); err != nil {
			t.Fatal(err)
		}
		if letters, err := q.dls.List(tctx); err != nil || len(letters) != 0 {
			t.Fatalf("List of an emptied topic = %d letters, %v", len(letters), err)
		}
		if d, err := q.dls.Depth(ctx); err != nil || d != (kafka.Depth{}) {
			t.Fatalf("depth = %+v, %v; want 0", d, err)
		}
	})
}

// A poison letter (a value this version cannot decode, as a newer core's
// schema) followed by valid ones: the list shows every one, the poison one
// with its raw key, headers and why; a replay applies the valid ones,
// syncs the poison one's account from core and parks it; the depth falls
// to the parked count, and a second replay has nothing to do.
func TestPoisonLetterIsParkedNotAJam(t *testing.T) {
	ctx := context.Background()
	eachDLQ(t, 1, func(t *testing.T, q dlqTopic) {
		q.produce(t, 0, "acc-1", mustEvent(t, "acc-1", 1))
		q.produce(t, 0, "acc-2", []byte(`{"version":2,"type":"ledger.entry","account_id":"acc-2","seq":1}`))
		q.produce(t, 0, "\x00not-an-account", []byte(`not json`))
		q.produce(t, 0, "acc-3", mustEvent(t, "acc-3", 1))
		q.produce(t, 0, "acc-1", mustEvent(t, "acc-1", 2))
		q.produce(t, 0, "acc-4", mustEvent(t, "acc-1", 3)) // another account's event under acc-4's key

		letters, err := q.dls.List(ctx)
		if err != nil || len(letters) != 6 || countStates(letters)[kafka.LetterWaiting] != 6 {
			t.Fatalf("List = %d letters %v, %v; want 6 waiting", len(letters), countStates(letters), err)
		}
		if d := letters[5]; d.Account() != "acc-4" || !strings.Contains(d.Undecodable, `event of account "acc-1" under key "acc-4"`) {
			t.Fatalf("letter of acc-1 under acc-4's key listed as %+v; want undecodable, of acc-4", d)
		}
		poison := letters[1]
		if poison.Key != "acc-2" || poison.Account() != "acc-2" || !strings.Contains(poison.Undecodable, "unsupported version 2") ||
			poison.Offset != 1 || len(poison.Headers) == 0 {
			t.Fatalf("poison letter listed as %+v", poison)
		}
		if d := letters[2]; d.Account() != "" || d.Undecodable == "" {
			t.Fatalf("letter keyed by no account listed as %+v", d)
		}

		var applied, synced []string
		sync := &recordingSyncer{applied: &applied, synced: &synced}
		res, err := q.dls.Replay(ctx, nil, sync, nil)
		if err != nil || res != (kafka.ReplayResult{Applied: 3, Parked: 3}) {
			t.Fatalf("replay = %+v, %v; want 3 applied, 3 parked", res, err)
		}
		slices.Sort(applied) // one batch, by account
		if want := []string{"acc-1/1", "acc-1/2", "acc-3/1"}; !slices.Equal(applied, want) {
			t.Fatalf("applied %v, want %v", applied, want)
		}
		if want := []string{"acc-2", "acc-4"}; !slices.Equal(synced, want) {
			t.Fatalf("synced %v from core, want %v (the poison letters' accounts)", synced, want)
		}
		letters, _ = q.dls.List(ctx)
		p, r := kafka.LetterParked, kafka.LetterReplayed
		if got, want := states(letters), []string{r, p, p, r, r, p}; !slices.Equal(got, want) {
			t.Fatalf("letters after the replay = %v, want %v", got, want)
		}
		if d, err := q.dls.Depth(ctx); err != nil || d != (kafka.Depth{Parked: 3}) || d.Total() != 3 {
			t.Fatalf("depth = %+v, %v; want the 3 parked only", d, err)
		}
		if res, err = q.dls.Replay(ctx, nil, sync, nil); err != nil || res != (kafka.ReplayResult{}) {
			t.Fatalf("second replay = %+v, %v; want nothing to do", res, err)
		}
	})
}

// recordingSyncer records what a replay applies and syncs.
type recordingSyncer struct {
	applied, synced *[]string
	syncErr         error
}

func (r *recordingSyncer) ApplyBatch(ctx context.Context, groups [][]banksync.Entry) []error {
	return kafka.ApplyFunc(func(_ context.Context, e banksync.Entry) error {
		*r.applied = append(*r.applied, fmt.Sprintf("%s/%d", e.AccountID, e.Seq))
		return nil
	}).ApplyBatch(ctx, groups)
}

func (r *recordingSyncer) SyncAccount(_ context.Context, account string) error {
	if r.syncErr != nil {
		return r.syncErr
	}
	*r.synced = append(*r.synced, account)
	return nil
}

// mustEvent is the value of a ledger event of account at seq.
func mustEvent(t *testing.T, account string, seq int64) []byte {
	t.Helper()
	e := banksync.Entry{AccountID: account, Seq: seq, Position: seq, Kind: banksync.KindDeposit,
		Amount: 1, BalanceAfter: seq, Counterparty: "kb", BookedAt: banksync.Timestamp(time.Now())}
	value, err := json.Marshal(banksync.EventOf(e))
	if err != nil {
		t.Fatal(err)
	}
	return value
}

// mustDeadLetters is topic's DeadLetters through conn, closed when the
// test ends.
func mustDeadLetters(tb testing.TB, conn kafka.Conn, topic string) *kafka.DeadLetters {
	tb.Helper()
	dls, err := kafka.NewDeadLetters(conn, topic)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(dls.Close)
	return dls
}

// dlqTopic is a dead-letter topic on one of the two deployments.
type dlqTopic struct {
	brokers []string
	name    string
	// dls is the topic's one DeadLetters for the whole test, as a channel
	// replica keeps one for its repair, admin API and depth gauge.
	dls *kafka.DeadLetters
}

// eachDLQ runs body against a dead-letter topic of the given partitions on
// the embedded cluster (a fresh one) and on the shared Apache Kafka cluster
// (a topic of the test's own).
func eachDLQ(t *testing.T, partitions int32, body func(t *testing.T, q dlqTopic)) {
	t.Run("kfake", func(t *testing.T) {
		c := mustStartCluster(t, kafka.ClusterConfig{Partitions: int(partitions)})
		q := dlqTopic{brokers: c.Addrs(), name: banksync.TopicLedgerEntriesDLQ}
		q.dls = mustDeadLetters(t, kafka.Brokers(q.brokers...), q.name)
		body(t, q)
	})
	t.Run("apache", func(t *testing.T) {
		q := dlqTopic{brokers: kafkatest.Shared(t).Addrs(), name: testTopic(t)}
		cl, err := kgo.NewClient(kgo.SeedBrokers(q.brokers...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if _, err := kadm.NewClient(cl).CreateTopic(context.Background(), partitions, -1, nil, q.name); err != nil {
			t.Fatal(err)
		}
		q.dls = mustDeadLetters(t, kafka.Brokers(q.brokers...), q.name)
		body(t, q)
	})
}

// produce writes a record to the topic's partition as the consumer would:
// with a reason header.
func (q dlqTopic) produce(t *testing.T, partition int32, key string, value []byte) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(q.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	r := &kgo.Record{Topic: q.name, Partition: partition, Key: []byte(key), Value: value,
		Headers: []kgo.RecordHeader{{Key: kafka.HeaderDLQReason, Value: []byte("test letter")}}}
	if err := cl.ProduceSync(context.Background(), r).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// flakyStore fails a fraction of history writes while failing is set.
type flakyStore struct {
	channel.Store
	mu      sync.Mutex
	failing bool
	n       int
}

// fail tells whether this write fails: two in three do while failing.
func (f *flakyStore) fail() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	if f.failing && f.n%3 != 0 {
		return fmt.Errorf("injected: history database unavailable")
	}
	return nil
}

func (f *flakyStore) Apply(ctx context.Context, account string, es []banksync.Entry, at time.Time) (channel.AccountState, error) {
	if err := f.fail(); err != nil {
		return channel.AccountState{}, err
	}
	return f.Store.Apply(ctx, account, es, at)
}

func (f *flakyStore) ApplyRuns(ctx context.Context, runs []channel.Run, at time.Time) ([]channel.RunResult, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return f.Store.ApplyRuns(ctx, runs, at)
}

// The history store fails most writes for a while: records are retried,
// some reach the dead-letter topic, and after a replay every account's
// history equals core's, each entry once.
func TestHistoryOutageThenReplay(t *testing.T) {
	eachBroker(t, historyOutageThenReplay)
}

// outageLettersTimeout bounds the wait for the outage's first dead letter,
// and then for the group to have dealt with every record.
const outageLettersTimeout = 30 * time.Second

func historyOutageThenReplay(t *testing.T, brokers []string, topic string) {
	ctx := context.Background()
	var flaky *flakyStore
	p := newPipelineOn(t, brokers, topic, func(real channel.Store) channel.Store {
		flaky = &flakyStore{Store: real, failing: true}
		return flaky
	})
	l, coreStore, real, apply := p.ledger, p.coreStore, p.history, p.apply
	cfg := p.consumer("outage")
	cfg.Lanes, cfg.AttemptsMax = 8, 2
	c, err := kafka.NewConsumer(cfg, apply)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); c.Run(runCtx) }()
	defer func() { cancel(); <-done }()

	dls := mustDeadLetters(t, kafka.Brokers(p.brokers...), p.dlq)
	all := storetest.Book(t, l, 20, 600)
	// The outage lasts until it has dead-lettered something: a real
	// cluster takes a while to seat the group, so a fixed time may pass
	// before the consumer has seen a record.
	var letters []kafka.DeadLetter
	testkit.Eventually(t, outageLettersTimeout, "a record dead-lettered during the outage (else it proved nothing)", func() error {
		var err error
		if letters, err = dls.List(ctx); err == nil && len(letters) == 0 {
			err = errors.New("no letters")
		}
		return err
	})
	flaky.mu.Lock()
	flaky.failing = false
	flaky.mu.Unlock()
	// Then wait until the group has dealt with every record core booked:
	// a record is committed past only once applied or dead-lettered, so
	// with no lag left every letter is in the topic.
	published, err := coreStore.LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitGroupCaughtUp(t, c, published, outageLettersTimeout)
	if letters, err = dls.List(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := dls.Replay(ctx, nil, apply, nil)
	if err != nil || res.Applied != len(letters) {
		t.Fatalf("replay = %+v, %v; want %d applied", res, err, len(letters))
	}
	// Accounts whose last record was dead-lettered are complete now; the
	// others were completed by later records filling the hole from core.
	accounts := map[string]bool{}
	for _, e := range all {
		accounts[e.AccountID] = true
	}
	for id := range accounts {
		want, _ := coreStore.Entries(ctx, id, 0, 1<<20)
		wantHistoryEqualsCore(t, want, real, id)
	}
	t.Logf("%d entries, %d dead-lettered during the outage, all consistent after replay", len(all), len(letters))
}

// waitGroupCaughtUp waits, for at most bound, until c's group has
// committed the end of every partition of its topic and the ends add up
// to published records.
func waitGroupCaughtUp(t *testing.T, c *kafka.Consumer, published int64, bound time.Duration) kafka.GroupLag {
	t.Helper()
	var lag kafka.GroupLag
	testkit.Eventually(t, bound, fmt.Sprintf("group lag 0 with %d records published", published), func() error {
		var err error
		if lag, err = c.Lag(context.Background()); err == nil && (lag.Lag != 0 || endsSum(lag) != published) {
			err = fmt.Errorf("lag %+v", lag)
		}
		return err
	})
	return lag
}

// endsSum is the sum of the partitions' end offsets.
func endsSum(l kafka.GroupLag) (ends int64) {
	for _, pl := range l.Partitions {
		ends += pl.End
	}
	return ends
}

// An account's replay applies its letters and holds the others' letters
// it passes over; a later replay tries only those, and nothing is applied
// twice.
func TestAccountReplayHoldsOtherAccountsLetters(t *testing.T) {
	ctx := context.Background()
	eachDLQ(t, 10, func(t *testing.T, q dlqTopic) {
		for _, l := range []struct {
			account string
			seq     int64
		}{{"acc-1", 1}, {"acc-2", 1}, {"acc-1", 2}} {
			q.produce(t, 0, l.account, mustEvent(t, l.account, l.seq))
		}
		var applied []string
		apply := applyOnly(func(_ context.Context, e banksync.Entry) error {
			applied = append(applied, fmt.Sprintf("%s/%d", e.AccountID, e.Seq))
			return nil
		})
		replay := func(account string, want kafka.ReplayResult, wantStates ...string) {
			t.Helper()
			var match func(banksync.LedgerEvent) bool
			if account != "" {
				match = func(ev banksync.LedgerEvent) bool { return ev.AccountID == account }
			}
			res, err := q.dls.Replay(ctx, match, apply, nil)
			if err != nil || res != want {
				t.Fatalf("replay %q = %+v, %v; want %+v", account, res, err, want)
			}
			letters, _ := q.dls.List(ctx)
			if got := states(letters); !slices.Equal(got, wantStates) {
				t.Fatalf("after replay %q the letters are %v, want %v", account, got, wantStates)
			}
		}
		r, h := kafka.LetterReplayed, kafka.LetterHeld
		replay("acc-1", kafka.ReplayResult{Applied: 2, Skipped: 1}, r, h, r)
		replay("acc-3", kafka.ReplayResult{Skipped: 1}, r, h, r) // only the held letter is looked at
		replay("", kafka.ReplayResult{Applied: 1}, r, r, r)
		if want := []string{"acc-1/1", "acc-1/2", "acc-2/1"}; !slices.Equal(applied, want) {
			t.Fatalf("applied %v, want %v", applied, want)
		}
	})
}
