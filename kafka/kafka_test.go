package kafka_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"banksync"
	"banksync/kafka"
	"banksync/kafka/kafkatest"
)

// consumeTimeout bounds how long a test waits for records it published.
const consumeTimeout = 30 * time.Second

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return nil
}

func mustStartCluster(tb testing.TB, cfg kafka.ClusterConfig) *kafka.Cluster {
	tb.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	cfg.Logger = testLogger()
	c, err := kafka.StartCluster(cfg)
	if err != nil {
		tb.Fatalf("StartCluster: %v", err)
	}
	tb.Cleanup(c.Close)
	return c
}

func TestMain(m *testing.M) {
	code := m.Run()
	kafkatest.StopShared()
	os.Exit(code)
}

// eachBroker runs body against both Kafka deployments banksync supports,
// as one conformance test: the embedded cluster (franz-go's kfake, a fresh
// one) and the reference Apache Kafka cluster (three KRaft nodes, shared
// by the package's tests; skipped without its jars, except under CI).
// body gets the brokers and a topic name of its own: the shared cluster's
// topics outlive a test.
func eachBroker(t *testing.T, body func(t *testing.T, brokers []string, topic string)) {
	t.Run("kfake", func(t *testing.T) {
		body(t, mustStartCluster(t, kafka.ClusterConfig{}).Addrs(), banksync.TopicLedgerEntries)
	})
	t.Run("apache", func(t *testing.T) {
		body(t, kafkatest.Shared(t).Addrs(), testTopic(t))
	})
}

// eachBrokerPartitions is eachBroker with the ledger topic and its
// dead-letter topic (kafka.DLQTopicOf) made with partitions: on kfake the cluster
// seeds them so, on Apache Kafka they are created before body runs (the
// publisher then finds them and keeps their partition count).
func eachBrokerPartitions(t *testing.T, partitions int, body func(t *testing.T, brokers []string, topic string)) {
	t.Run("kfake", func(t *testing.T) {
		body(t, mustStartCluster(t, kafka.ClusterConfig{Partitions: partitions}).Addrs(), banksync.TopicLedgerEntries)
	})
	t.Run("apache", func(t *testing.T) {
		brokers, topic := kafkatest.Shared(t).Addrs(), testTopic(t)
		mustCreateTopics(t, brokers, partitions, topic, kafka.DLQTopicOf(topic))
		body(t, brokers, topic)
	})
}

// mustCreateTopics creates topics of partitions on brokers as a platform
// team would for production: the cluster's default replication (three on
// the reference cluster) and min.insync.replicas 2.
func mustCreateTopics(t *testing.T, brokers []string, partitions int, topics ...string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), consumeTimeout)
	defer cancel()
	insyncMin := "2"
	configs := map[string]*string{"min.insync.replicas": &insyncMin}
	resps, err := kadm.NewClient(cl).CreateTopics(ctx, int32(partitions), -1, configs, topics...)
	if err == nil {
		err = resps.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// testTopic is a topic name of t's own on a shared cluster.
func testTopic(t *testing.T) string {
	return "test." + strings.NewReplacer("/", ".", " ", "_").Replace(t.Name()) + "." + strconv.FormatInt(time.Now().UnixNano(), 36)
}

func mustNewPublisher(tb testing.TB, brokers []string) *kafka.Publisher {
	return mustNewTopicPublisher(tb, brokers, "")
}

// mustNewTopicPublisher publishes to topic ("" for the default), with its
// dead letters beside it (kafka.DLQTopicOf).
func mustNewTopicPublisher(tb testing.TB, brokers []string, topic string) *kafka.Publisher {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), consumeTimeout)
	defer cancel()
	p, err := kafka.NewPublisher(ctx, kafka.PublisherConfig{Conn: kafka.Brokers(brokers...), Topic: topic, Logger: testLogger()})
	if err != nil {
		tb.Fatalf("NewPublisher: %v", err)
	}
	tb.Cleanup(p.Close)
	return p
}

// bookedAt is shared by all test entries so that two makeEntries calls agree
// on the entries they have in common.
var bookedAt = banksync.Timestamp(time.Now())

// makeEntries spreads n entries over accounts accounts the way a ledger
// would: positions 1..n in commit order, each account's seqs 1, 2, 3 …
func makeEntries(n, accounts int) []banksync.Entry {
	seqs := make([]int64, accounts)
	entries := make([]banksync.Entry, n)
	for p := range n {
		// A multiplicative stride so an account's entries are not evenly spaced.
		i := (p * 7919) % accounts
		seqs[i]++
		entries[p] = banksync.Entry{
			AccountID:    fmt.Sprintf("acc-%d", i),
			Seq:          seqs[i],
			Position:     int64(p + 1),
			Kind:         banksync.KindDeposit,
			Amount:       100,
			BalanceAfter: 100 * seqs[i],
			Counterparty: "other-bank",
			ExternalRef:  fmt.Sprintf("ext-%d", p+1),
			BookedAt:     bookedAt,
		}
	}
	return entries
}

// consumeAll reads topic from the start until it has want records.
func consumeAll(tb testing.TB, brokers []string, topic string, want int) []*kgo.Record {
	tb.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		tb.Fatalf("new consumer: %v", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), consumeTimeout)
	defer cancel()
	var got []*kgo.Record
	for len(got) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			tb.Fatalf("consumed %d records, want %d: %v", len(got), want, ctx.Err())
		}
		fs.EachError(func(t string, p int32, err error) {
			tb.Fatalf("fetch %s/%d: %v", t, p, err)
		})
		got = append(got, fs.Records()...)
	}
	return got
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// checkLedgerRecords checks the promises consumers rely on: every record
// decodes, is keyed by its account, carries its headers, each account lives
// in one partition and its seqs arrive 1, 2, 3 … exactly once.
func checkLedgerRecords(t *testing.T, records []*kgo.Record, published []banksync.Entry) {
	t.Helper()
	if got, want := len(records), len(published); got != want {
		t.Errorf("consumed %d records, want %d", got, want)
	}
	lastSeq := make(map[string]int64)
	partition := make(map[string]int32)
	for _, r := range records {
		ev, err := banksync.DecodeLedgerEvent(r.Value)
		if err != nil {
			t.Fatalf("partition %d offset %d: %v", r.Partition, r.Offset, err)
		}
		if got, want := string(r.Key), ev.AccountID; got != want {
			t.Errorf("record key %q, want account id %q", got, want)
		}
		if got, want := header(r, kafka.HeaderSchema), kafka.SchemaLedgerEntryV1; got != want {
			t.Errorf("header %s = %q, want %q", kafka.HeaderSchema, got, want)
		}
		if got, want := header(r, kafka.HeaderEventID), strconv.FormatInt(ev.EventID, 10); got != want {
			t.Errorf("header %s = %q, want %q", kafka.HeaderEventID, got, want)
		}
		if p, ok := partition[ev.AccountID]; ok && p != r.Partition {
			t.Errorf("account %s in partitions %d and %d, want one", ev.AccountID, p, r.Partition)
		}
		partition[ev.AccountID] = r.Partition
		if got, want := ev.Seq, lastSeq[ev.AccountID]+1; got != want {
			t.Errorf("account %s: seq %d after %d, want %d", ev.AccountID, got, lastSeq[ev.AccountID], want)
		}
		lastSeq[ev.AccountID] = ev.Seq
		if want := published[ev.EventID-1]; ev.Entry() != want {
			t.Errorf("event %d decodes to %+v, want %+v", ev.EventID, ev.Entry(), want)
		}
	}
	wantSeq := make(map[string]int64)
	for _, e := range published {
		wantSeq[e.AccountID] = e.Seq
	}
	for acc, want := range wantSeq {
		if got := lastSeq[acc]; got != want {
			t.Errorf("account %s: last seq %d, want %d", acc, got, want)
		}
	}
}

func TestPublishOrderAndKeys(t *testing.T) {
	eachBroker(t, func(t *testing.T, brokers []string, topic string) {
		const (
			entriesCount  = 10_000
			accountsCount = 500
			batchSize     = 1000
		)
		p := mustNewTopicPublisher(t, brokers, topic)
		entries := makeEntries(entriesCount, accountsCount)
		ctx := context.Background()
		for i := 0; i < len(entries); i += batchSize {
			if err := p.Publish(ctx, entries[i:min(i+batchSize, len(entries))]); err != nil {
				t.Fatalf("Publish: %v", err)
			}
		}
		records := consumeAll(t, brokers, topic, entriesCount)
		checkLedgerRecords(t, records, entries)

		// Other clients (Java, kcat, Kafka Streams) must agree on an
		// account's partition, so check against Kafka's own murmur2
		// formula.
		const partitions = 10
		for _, r := range records {
			if got, want := r.Partition, kafkaPartition(r.Key, partitions); got != want {
				t.Fatalf("key %q in partition %d, want %d (Java default partitioner)", r.Key, got, want)
			}
		}
	})
}

func TestPublishRefusesBrokenInvariants(t *testing.T) {
	eachBroker(t, publishRefusesBrokenInvariants)
}

func publishRefusesBrokenInvariants(t *testing.T, brokers []string, topic string) {
	p := mustNewTopicPublisher(t, brokers, topic)
	good := makeEntries(3, 2)
	tests := []struct {
		name    string
		entries func() []banksync.Entry
	}{
		{"empty account", func() []banksync.Entry { e := append([]banksync.Entry(nil), good...); e[1].AccountID = ""; return e }},
		{"seq zero", func() []banksync.Entry { e := append([]banksync.Entry(nil), good...); e[1].Seq = 0; return e }},
		{"positions out of order", func() []banksync.Entry {
			e := append([]banksync.Entry(nil), good...)
			e[0], e[1] = e[1], e[0]
			return e
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := p.Publish(context.Background(), tt.entries()); err == nil {
				t.Fatalf("Publish = nil, want an error")
			}
		})
	}
	// Nothing of the refused batches may have reached the topic.
	if err := p.Publish(context.Background(), good); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	checkLedgerRecords(t, consumeAll(t, brokers, topic, len(good)), good)
}

// TestClusterRestartKeepsRecords is about the embedded cluster's own
// process (its DataDir read back by a new one), so it runs on kfake only;
// kafkatest's TestClusterSurvivesALeaderKill is Apache Kafka's counterpart.
func TestClusterRestartKeepsRecords(t *testing.T) {
	const (
		entriesCount  = 2000
		accountsCount = 50
		partitions    = 4
	)
	dir := t.TempDir()
	entries := makeEntries(entriesCount, accountsCount)

	first, err := kafka.StartCluster(kafka.ClusterConfig{Addr: "127.0.0.1:0", DataDir: dir, Partitions: partitions})
	if err != nil {
		t.Fatalf("StartCluster: %v", err)
	}
	p, err := kafka.NewPublisher(context.Background(), kafka.PublisherConfig{Conn: kafka.Brokers(first.Addrs()...)})
	if err != nil {
		first.Close()
		t.Fatalf("NewPublisher: %v", err)
	}
	err = p.Publish(context.Background(), entries)
	p.Close()
	first.Close()
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}

	// A different partition count must not re-create the existing topics.
	second := mustStartCluster(t, kafka.ClusterConfig{DataDir: dir, Partitions: partitions * 2})
	records := consumeAll(t, second.Addrs(), banksync.TopicLedgerEntries, entriesCount)
	checkLedgerRecords(t, records, entries)
	for _, r := range records {
		if r.Partition >= partitions {
			t.Fatalf("record in partition %d after restart, want < %d", r.Partition, partitions)
		}
	}

	// And the restarted cluster takes new records after the old ones.
	more := makeEntries(entriesCount+10, accountsCount)
	p2 := mustNewPublisher(t, second.Addrs())
	if err := p2.Publish(context.Background(), more[entriesCount:]); err != nil {
		t.Fatalf("Publish after restart: %v", err)
	}
	checkLedgerRecords(t, consumeAll(t, second.Addrs(), banksync.TopicLedgerEntries, len(more)), more)
}

// TestPublishFailsWhenBrokerGone stops every broker under a publisher: the
// embedded cluster closed, or each node of an Apache Kafka cluster of the
// test's own killed (the shared one must keep its nodes).
func TestPublishFailsWhenBrokerGone(t *testing.T) {
	t.Run("kfake", func(t *testing.T) {
		c := mustStartCluster(t, kafka.ClusterConfig{})
		publishFailsWhenBrokerGone(t, c.Addrs(), banksync.TopicLedgerEntries, c.Close)
	})
	t.Run("apache", func(t *testing.T) {
		c := kafkatest.Start(t)
		publishFailsWhenBrokerGone(t, c.Addrs(), testTopic(t), func() {
			for i := range c.Addrs() {
				c.Kill(i)
			}
		})
	})
}

func publishFailsWhenBrokerGone(t *testing.T, brokers []string, topic string, stopBrokers func()) {
	p := mustNewTopicPublisher(t, brokers, topic)
	stopBrokers()

	// The relay must get an error back to retry on, not a Publish that hangs.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	err := p.Publish(ctx, makeEntries(100, 10))
	if err == nil {
		t.Fatalf("Publish to a closed cluster = nil error, want one")
	}
	if took := time.Since(start); took > consumeTimeout {
		t.Errorf("Publish took %v to fail, want about the context's 2s", took)
	}
}

// TestStartClusterListensOnAddr is about the embedded cluster's listener,
// so it runs on kfake only.
func TestStartClusterListensOnAddr(t *testing.T) {
	// Borrow a free port from the kernel, then ask the cluster for exactly it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()

	c := mustStartCluster(t, kafka.ClusterConfig{Addr: addr})
	if got, want := c.Addrs(), []string{addr}; !slices.Equal(got, want) {
		t.Fatalf("Addrs() = %v, want %v", got, want)
	}
	// The port is taken now, so a second cluster on it must fail, not move.
	if c2, err := kafka.StartCluster(kafka.ClusterConfig{Addr: addr}); err == nil {
		c2.Close()
		t.Fatalf("StartCluster on a busy %s = nil error, want one", addr)
	}
}

// TestStartClusterAnyPortIfTaken: with AnyPortIfTaken, two clusters asked
// for the same busy port both start, each on a free port of its own on the
// same host, and say which; the demo relies on it so a second demo on the
// machine starts.
func TestStartClusterAnyPortIfTaken(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	seen := map[string]bool{addr: true}
	for range 2 {
		c, err := kafka.StartCluster(kafka.ClusterConfig{Addr: addr, AnyPortIfTaken: true, Logger: testLogger()})
		if err != nil {
			t.Fatalf("StartCluster on a busy %s with AnyPortIfTaken: %v", addr, err)
		}
		t.Cleanup(c.Close)
		got := c.Addrs()
		if len(got) != 1 || seen[got[0]] || !strings.HasPrefix(got[0], "127.0.0.1:") {
			t.Fatalf("Addrs() = %v, want one free 127.0.0.1 port other than %v", got, seen)
		}
		seen[got[0]] = true
		// The broker answers at the address it says.
		cl, err := kgo.NewClient(kgo.SeedBrokers(got...))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), consumeTimeout)
		err = cl.Ping(ctx)
		cancel()
		cl.Close()
		if err != nil {
			t.Fatalf("ping %v: %v", got, err)
		}
	}
}

// TestClusterCrashKeepsAcknowledgedRecords copies the DataDir of a running
// cluster, which is what a kill -9 leaves behind (written, not fsynced, data
// is in the page cache and reaches the files), and starts a cluster on the
// copy: every acknowledged record must be there. It is about the embedded
// cluster's DataDir, so it runs on kfake only; kafkatest's
// TestClusterSurvivesALeaderKill kills an Apache Kafka node instead.
func TestClusterCrashKeepsAcknowledgedRecords(t *testing.T) {
	const (
		entriesCount  = 2000
		accountsCount = 50
	)
	dir := t.TempDir()
	entries := makeEntries(entriesCount, accountsCount)
	running := mustStartCluster(t, kafka.ClusterConfig{DataDir: dir})
	p := mustNewPublisher(t, running.Addrs())
	if err := p.Publish(context.Background(), entries); err != nil {
		t.Fatalf("Publish: %v", err)
	}

	crashed := t.TempDir()
	if err := os.CopyFS(crashed, os.DirFS(dir)); err != nil {
		t.Fatalf("copy data dir: %v", err)
	}
	restarted := mustStartCluster(t, kafka.ClusterConfig{DataDir: crashed})
	checkLedgerRecords(t, consumeAll(t, restarted.Addrs(), banksync.TopicLedgerEntries, entriesCount), entries)
}

// BenchmarkPublish measures the producer's ceiling: entries/s through
// Publish in relay-sized batches, against the embedded cluster in memory and
// persisted with and without fsync per batch.
func BenchmarkPublish(b *testing.B) {
	const (
		batchSize     = 1000
		accountsCount = 500
	)
	clusters := []struct {
		name string
		cfg  func(b *testing.B) kafka.ClusterConfig
	}{
		{"memory", func(*testing.B) kafka.ClusterConfig { return kafka.ClusterConfig{} }},
		{"datadir", func(b *testing.B) kafka.ClusterConfig { return kafka.ClusterConfig{DataDir: b.TempDir()} }},
		{"datadir-sync", func(b *testing.B) kafka.ClusterConfig {
			return kafka.ClusterConfig{DataDir: b.TempDir(), SyncWrites: true}
		}},
	}
	for _, cc := range clusters {
		b.Run(cc.name, func(b *testing.B) {
			c := mustStartCluster(b, cc.cfg(b))
			p := mustNewPublisher(b, c.Addrs())
			batch := makeEntries(batchSize, accountsCount)
			ctx := context.Background()
			for b.Loop() {
				if err := p.Publish(ctx, batch); err != nil {
					b.Fatalf("Publish: %v", err)
				}
			}
			b.ReportMetric(float64(b.N*batchSize)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// kafkaPartition is the Java client's default partition for a keyed record:
// murmur2 of the key, made positive, modulo the partition count
// (org.apache.kafka.common.utils.Utils.murmur2 and toPositive).
func kafkaPartition(key []byte, partitions int32) int32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	n := len(key)
	h := uint32(seed) ^ uint32(n)
	for i := 0; i+4 <= n; i += 4 {
		k := uint32(key[i]) | uint32(key[i+1])<<8 | uint32(key[i+2])<<16 | uint32(key[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := key[n&^3:]
	switch len(tail) {
	case 3:
		h ^= uint32(tail[2]) << 16
		fallthrough
	case 2:
		h ^= uint32(tail[1]) << 8
		fallthrough
	case 1:
		h ^= uint32(tail[0])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h&0x7fffffff) % partitions
}

// TestPublisherCreatesTheDeadLetterTopic: on a cluster whose topics nobody
// made (kfake without seeded topics; on Apache Kafka a topic a client
// merely asked for would be auto-created with num.partitions, one, not
// four), the publisher creates the ledger topic and its dead-letter topic
// with the same partitions, so a consumer can always dead-letter.
func TestPublisherCreatesTheDeadLetterTopic(t *testing.T) {
	t.Run("kfake", func(t *testing.T) {
		c, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		publisherCreatesTheDeadLetterTopic(t, c.ListenAddrs(), banksync.TopicLedgerEntries)
	})
	t.Run("apache", func(t *testing.T) {
		publisherCreatesTheDeadLetterTopic(t, kafkatest.Shared(t).Addrs(), testTopic(t))
	})
}

func publisherCreatesTheDeadLetterTopic(t *testing.T, brokers []string, topic string) {
	ctx, cancel := context.WithTimeout(context.Background(), consumeTimeout)
	defer cancel()
	pub, err := kafka.NewPublisher(ctx, kafka.PublisherConfig{Conn: kafka.Brokers(brokers...), Topic: topic, DLQTopic: kafka.DLQTopicOf(topic), Partitions: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	adm := adminOn(t, brokers)
	for _, name := range []string{topic, kafka.DLQTopicOf(topic)} {
		if td := waitTopic(t, adm, name); td.Err != nil || len(td.Partitions) != 4 {
			t.Errorf("topic %s: %+v, want 4 partitions", name, td)
		}
	}
}
