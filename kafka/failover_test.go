package kafka_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"banksync"
	"banksync/internal/testkit"
	"banksync/kafka"
	"banksync/kafka/kafkatest"
	"banksync/storetest"
)

// Bounds of the broker failover tests.
const (
	failoverAccounts = 24
	// failoverSettle bounds how long every history may take to equal
	// core's once the last deposit is booked and every broker is back.
	failoverSettle = 90 * time.Second
)

// TestLeaderKilledMidBurst kills, with SIGKILL, the broker leading the
// partition of the busiest account in the middle of a burst of deposits,
// and restarts it. Every entry reaches every history exactly once and in
// order (P4, P5); the topic holds each account's entries once each, seq
// 1, 2, 3, … (the relay resumed without a gap or a repeated
// announcement); the consumer stayed the same member of its group and
// committed everything.
func TestLeaderKilledMidBurst(t *testing.T) {
	c := kafkatest.Start(t)
	f := newFailover(t, c)
	leader := f.leaderOf("acc-0")

	f.burst(600, 4)
	c.Kill(leader)
	f.burst(600, 4) // while the partition elects a new leader
	if err := c.Start(leader); err != nil {
		t.Fatal(err)
	}
	f.burst(600, 4) // while the node catches up
	if err := c.WaitBrokers(3); err != nil {
		t.Fatal(err)
	}
	f.check()
}

// TestRollingRestartUnderTraffic restarts the three brokers one at a
// time, each stopped in order (SIGTERM, as a rolling upgrade does) and
// back in sync before the next, while deposits keep arriving; afterwards
// the same holds as after a leader's crash.
func TestRollingRestartUnderTraffic(t *testing.T) {
	c := kafkatest.Start(t)
	f := newFailover(t, c)
	stop := f.steady(5 * time.Millisecond)
	for i := range 3 {
		began := time.Now()
		c.Stop(i)
		t.Logf("node %d stopped in %v", i+1, time.Since(began).Round(time.Millisecond))
		time.Sleep(time.Second) // traffic on two brokers
		if err := c.Start(i); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitBrokers(3); err != nil {
			t.Fatal(err)
		}
		t.Logf("node %d up in %v", i+1, time.Since(began).Round(time.Millisecond))
		f.waitInSync()
		t.Logf("node %d in sync after %v", i+1, time.Since(began).Round(time.Millisecond))
	}
	if n := stop(); n < 100 {
		t.Fatalf("only %d deposits during the restarts", n)
	}
	f.check()
}

// failover is a pipeline (core on SQLite with its relay, a channel) on a
// cluster of the test's own, with one consumer running in group "channel".
type failover struct {
	t        *testing.T
	c        *kafkatest.Cluster
	p        *pipeline
	consumer *kafka.Consumer
	member   string // the consumer's member id once it had joined
	adm      *kadm.Client
	next     atomic.Int64 // deposits booked
}

func newFailover(t *testing.T, c *kafkatest.Cluster) *failover {
	p := newPipelineOn(t, c.Addrs(), testTopic(t), nil)
	f := &failover{t: t, c: c, p: p, adm: adminOn(t, c.Addrs())}
	ctx := context.Background()
	storetest.Book(t, p.ledger, failoverAccounts, 200) // opens the accounts
	cfg := p.consumer("channel")
	cfg.Lanes = 16
	var err error
	if f.consumer, err = kafka.NewConsumer(cfg, p.apply); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); f.consumer.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })
	f.member = f.waitMember(cfg.Group)
	return f
}

// burst books n deposits from workers goroutines, three in four on
// acc-0 (the busy partition), and returns when all are booked.
func (f *failover) burst(n, workers int) {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range n / workers {
				f.deposit()
			}
		})
	}
	wg.Wait()
}

// steady books a deposit every interval until the returned stop is
// called, which returns how many it booked.
func (f *failover) steady(interval time.Duration) (stop func() int64) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	from := f.next.Load()
	wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				f.deposit()
			}
		}
	})
	return func() int64 { close(done); wg.Wait(); return f.next.Load() - from }
}

func (f *failover) deposit() {
	i := f.next.Add(1)
	account := "acc-0"
	if i%4 == 0 {
		account = fmt.Sprintf("acc-%d", i%failoverAccounts)
	}
	_, err := f.p.ledger.Deposit(context.Background(), banksync.DepositRequest{
		ExternalRef: fmt.Sprint("failover-", i), AccountID: account, Amount: 100, Sender: "kb"})
	if err != nil {
		f.t.Error(err)
	}
}

// leaderOf is the node (from 0) leading account's partition.
func (f *failover) leaderOf(account string) int {
	f.t.Helper()
	topics, err := f.adm.ListTopics(context.Background(), f.p.topic)
	if err != nil {
		f.t.Fatal(err)
	}
	parts := topics[f.p.topic].Partitions
	p := parts[kafkaPartition([]byte(account), int32(len(parts)))]
	return int(p.Leader) - 1 // node ids are 1, 2, 3
}

// waitInSync waits until every partition of the ledger topic has all
// three replicas in sync again, as a rolling restart does before it
// moves to the next broker.
func (f *failover) waitInSync() {
	f.t.Helper()
	if err := f.c.WaitInSync(context.Background(), f.p.topic); err != nil {
		f.t.Fatal(err)
	}
}

// waitMember waits until group has exactly one member and returns its id.
func (f *failover) waitMember(group string) string {
	f.t.Helper()
	var member string
	testkit.Eventually(f.t, failoverSettle, "group "+group+" with a single stable member", func() error {
		groups, err := f.adm.DescribeGroups(context.Background(), group)
		g := groups[group]
		if err == nil && g.Err == nil && g.State == "Stable" && len(g.Members) == 1 {
			member = g.Members[0].MemberID
			return nil
		}
		return fmt.Errorf("state %q, %d members, errors %v, %v", g.State, len(g.Members), err, g.Err)
	})
	return member
}

// check waits until every history equals core's, then reads the topic
// and the group.
func (f *failover) check() {
	f.t.Helper()
	deadline := time.Now().Add(failoverSettle)
	entries := 0
	for i := range failoverAccounts {
		entries += waitHistoryEqualsCore(f.t, f.p.coreStore, f.p.history, fmt.Sprintf("acc-%d", i), deadline)
	}
	f.checkTopic(entries)
	if got := f.waitMember(f.p.consumer("channel").Group); got != f.member {
		f.t.Errorf("the consumer joined its group again (member %s, was %s): it lost its membership", got, f.member)
	}
	// Committed every record the topic holds, which checkTopic counted.
	waitGroupCaughtUp(f.t, f.consumer, int64(entries), failoverSettle)
}

// checkTopic reads the ledger topic to its end: each account's records
// carry seq 1, 2, 3, … with none missing and none twice, and there are
// entries of them in all.
func (f *failover) checkTopic(entries int) {
	f.t.Helper()
	records := readToEnd(f.t, f.p.brokers, f.p.topic)
	next := map[string]int64{}
	for _, r := range records {
		ev, err := banksync.DecodeLedgerEvent(r.Value)
		if err != nil {
			f.t.Fatal(err)
		}
		if want := next[ev.AccountID] + 1; ev.Seq != want {
			f.t.Fatalf("%s: record at %d/%d has seq %d, want %d (a gap or a repeated announcement)", ev.AccountID, r.Partition, r.Offset, ev.Seq, want)
		}
		next[ev.AccountID] = ev.Seq
	}
	if len(records) != entries {
		f.t.Fatalf("topic holds %d records, core booked %d entries", len(records), entries)
	}
}

// readToEnd reads every partition of topic from its start to its end
// offset as listed now, in offset order within each partition.
func readToEnd(t *testing.T, brokers []string, topic string) []*kgo.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), consumeTimeout)
	defer cancel()
	ends, err := adminOn(t, brokers).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	remaining := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			remaining[o.Partition] = o.Offset
		}
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*kgo.Record
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s: %d partitions not read to their end: %v", topic, len(remaining), ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			if end, ok := remaining[r.Partition]; ok && r.Offset < end {
				out = append(out, r)
				if r.Offset == end-1 {
					delete(remaining, r.Partition)
				}
			}
		})
	}
	return out
}
