package kafka_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"banksync"
	"banksync/internal/testkit"
	"banksync/kafka"
	"banksync/ledger"
	"banksync/sqlite"
	"banksync/storetest"
)

// TestRelayToKafkaSurvivesCrash runs core's outbox relay into the embedded
// cluster and into Apache Kafka, kills it mid-stream, starts a new relay and
// producer from the stored position, and reads the topic back: every
// committed entry is there, in per-account order, and an entry published
// twice carries the same event id, seq and body.
func TestRelayToKafkaSurvivesCrash(t *testing.T) {
	eachBroker(t, relayToKafkaSurvivesCrash)
}

func relayToKafkaSurvivesCrash(t *testing.T, brokers []string, topic string) {
	ctx := context.Background()
	store, err := sqlite.OpenLedger(ctx, filepath.Join(t.TempDir(), "core.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	l, err := ledger.Open(ctx, store, ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	all := storetest.Book(t, l, 40, 4000)
	last := all[len(all)-1].Position

	// First life: killed after Kafka acknowledged its fifth batch but before
	// the relay stored its position, the window that makes repeats.
	pub1 := mustNewTopicPublisher(t, brokers, topic)
	runCtx, kill := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ledger.NewRelay(store, &crashAfter{pub: pub1, calls: 5, kill: kill}, ledger.RelayConfig{BatchMax: 250}).Run(runCtx)
	}()
	<-done
	pub1.Close()
	stoppedAt, _ := store.RelayPosition(ctx)
	if stoppedAt != 4*250 {
		t.Fatalf("relay stopped at position %d, want 1000 (four batches stored, the fifth published but not stored)", stoppedAt)
	}

	// Second life: a new producer and relay resume from the stored position.
	pub2 := mustNewTopicPublisher(t, brokers, topic)
	runCtx, stop := context.WithCancel(ctx)
	done = make(chan struct{})
	go func() {
		defer close(done)
		ledger.NewRelay(store, pub2, ledger.RelayConfig{BatchMax: 250}).Run(runCtx)
	}()
	waitPosition(t, store, func(p int64) bool { return p == last })
	stop()
	<-done

	want := map[int64]banksync.Entry{}
	for _, e := range all {
		want[e.Position] = e
	}
	records := consumeDistinct(t, brokers, topic, len(want))
	applied := map[string]int64{}
	for _, r := range records { // in offset order within each partition
		ev, err := banksync.DecodeLedgerEvent(r.Value)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want[ev.EventID], ev.Entry()); d != "" {
			t.Fatalf("event %d differs from the committed entry (-entry +event):\n%s", ev.EventID, d)
		}
		switch {
		case ev.Seq <= applied[ev.AccountID]: // a repeat after the crash
		case ev.Seq == applied[ev.AccountID]+1:
			applied[ev.AccountID] = ev.Seq
		default:
			t.Fatalf("account %s: seq %d arrived after %d", ev.AccountID, ev.Seq, applied[ev.AccountID])
		}
	}
	for _, e := range all {
		if applied[e.AccountID] < e.Seq {
			t.Fatalf("entry %s/%d never reached Kafka", e.AccountID, e.Seq)
		}
	}
	if repeats := len(records) - len(all); repeats != 250 {
		t.Fatalf("%d records repeated after the crash, want the 250 of the unstored batch", repeats)
	}
	t.Logf("%d entries committed, %d records on the topic, relay killed at position %d", len(all), len(records), stoppedAt)
}

// crashAfter publishes through pub and, on the given call, kills the relay
// once the broker has acknowledged the batch.
type crashAfter struct {
	pub   *kafka.Publisher
	calls int
	kill  context.CancelFunc
}

func (c *crashAfter) Publish(ctx context.Context, entries []banksync.Entry) error {
	if err := c.pub.Publish(ctx, entries); err != nil {
		return err
	}
	if c.calls--; c.calls == 0 {
		c.kill()
		return context.Canceled
	}
	return nil
}

func waitPosition(t *testing.T, store ledger.Store, ok func(int64) bool) {
	t.Helper()
	testkit.Eventually(t, 60*time.Second, "relay position reached", func() error {
		p, err := store.RelayPosition(context.Background())
		if err == nil && !ok(p) {
			err = fmt.Errorf("relay stuck at position %d", p)
		}
		return err
	})
}

// consumeDistinct reads the ledger topic from the start until it has seen
// distinct event ids, returning records partition by partition in offset
// order.
func consumeDistinct(t *testing.T, brokers []string, topic string, distinct int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	seen := map[string]bool{}
	var out []*kgo.Record
	for len(seen) < distinct {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("saw %d distinct events, want %d", len(seen), distinct)
		}
		fs.EachRecord(func(r *kgo.Record) {
			seen[header(r, "banksync-event-id")] = true
			out = append(out, r)
		})
	}
	return out
}
