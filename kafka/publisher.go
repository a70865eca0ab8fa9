package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"banksync"
)

// Record headers on TopicLedgerEntries. They let a reader (kcat, the DLQ
// tooling) tell the schema and the event apart without decoding the value.
const (
	HeaderSchema  = "banksync-schema"
	HeaderEventID = "banksync-event-id"

	// SchemaLedgerEntryV1 names banksync.EventType at banksync.EventSchemaVersion.
	SchemaLedgerEntryV1 = "ledger.entry.v1"
)

const (
	// recordsBufferedMax bounds the records the producer holds in memory;
	// Publish blocks once it is reached, so a huge batch cannot exhaust memory.
	recordsBufferedMax = 10_000
	// bytesBufferedMax bounds the same buffer by size; an event is ~300 bytes,
	// so this only bites if entries carry unusually long memos.
	bytesBufferedMax = 32 << 20
	// recordDeliveryTimeout turns an unreachable broker into an error the relay
	// can log and retry, instead of a Publish that never returns.
	recordDeliveryTimeout = 30 * time.Second
	// produceLinger is how long a partition waits for more records before it
	// is sent. The relay waits for every acknowledgement, so lingering only
	// adds latency to the last records of each batch; batches still form
	// while a previous produce request is in flight. Measured against the
	// embedded cluster: ~380k entries/s at 0, ~80k at franz-go's 10ms default.
	produceLinger = 0
	// topicReplication is the replication factor core creates its topics
	// with: -1 asks for the cluster's default.replication.factor (Kafka
	// 2.4 and later), so a production cluster's 3 applies and the embedded
	// single-broker cluster gets 1.
	topicReplication = -1
	// replicasForQuorum and insyncMin: a topic core creates with at least
	// three replicas gets min.insync.replicas 2 (a single-broker cluster,
	// such as the embedded one, could not take a write with it).
	replicasForQuorum = 3
	insyncMin         = 2
)

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	Conn Conn
	// Topic defaults to banksync.TopicLedgerEntries.
	Topic string
	// DLQTopic, where the channel's consumers put records they give up on,
	// is created beside Topic with as many partitions; defaults to
	// banksync.TopicLedgerEntriesDLQ. Without it a consumer could not
	// dead-letter and its partition would stop.
	DLQTopic string
	// Partitions is used only when the topics have to be created; 0 means
	// partitionsDefault. An existing topic keeps its partition count, since
	// changing it would move accounts to other partitions.
	Partitions int
	// Logger receives the producer's logs; nil discards them.
	Logger *slog.Logger
}

// Publisher publishes ledger entries to Kafka, keyed by account id, with the
// idempotent producer: within a partition records land in the order they
// were published and a retried request is never written twice.
type Publisher struct {
	cl    *kgo.Client
	topic string
	log   *slog.Logger
}

// NewPublisher connects to the brokers and makes sure the topic and its
// dead-letter topic exist.
func NewPublisher(ctx context.Context, cfg PublisherConfig) (*Publisher, error) {
	if len(cfg.Conn.Brokers) == 0 {
		return nil, errors.New("new kafka publisher: no brokers")
	}
	if cfg.Topic == "" {
		cfg.Topic = banksync.TopicLedgerEntries
	}
	if cfg.DLQTopic == "" {
		cfg.DLQTopic = DLQTopicOf(cfg.Topic)
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = partitionsDefault
	}
	if cfg.Partitions < 1 {
		return nil, fmt.Errorf("new kafka publisher: partitions %d, want at least 1", cfg.Partitions)
	}
	log := orDiscard(cfg.Logger).With("component", "kafka-publisher", "topic", cfg.Topic)

	cl, err := cfg.Conn.NewClient(
		kgo.DefaultProduceTopic(cfg.Topic),
		// Both are franz-go's defaults; spelled out because ordering and
		// no-duplicates-on-retry depend on them.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// Murmur2 of the key, as Java's default partitioner: one account
		// always maps to one partition, and other clients agree on which.
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.MaxBufferedRecords(recordsBufferedMax),
		kgo.MaxBufferedBytes(bytesBufferedMax),
		kgo.RecordDeliveryTimeout(recordDeliveryTimeout),
		kgo.ProducerLinger(produceLinger),
		kgo.WithLogger(newKgoLogger(log)),
	)
	if err != nil {
		return nil, fmt.Errorf("new kafka publisher: %w", err)
	}
	for _, topic := range []string{cfg.Topic, cfg.DLQTopic} {
		if err := ensureTopic(ctx, cl, topic, cfg.Partitions, log); err != nil {
			cl.Close()
			return nil, fmt.Errorf("new kafka publisher: %w", err)
		}
	}
	log.Info("kafka publisher ready", "kafka", cfg.Conn.String())
	return &Publisher{cl: cl, topic: cfg.Topic, log: log}, nil
}

// ensureTopic creates topic unless it already exists, as a production
// cluster wants it: the cluster's default replication factor and, once a
// partition has replicasForQuorum replicas, min.insync.replicas of
// insyncMin, so an acks=all write is acknowledged only once two brokers
// hold it and the loss of one broker loses nothing acknowledged. A topic
// that exists is left as it is (a platform team may own it); a weaker one
// is logged.
func ensureTopic(ctx context.Context, cl *kgo.Client, topic string, partitions int, log *slog.Logger) error {
	// Not closed: closing a kadm client closes the kgo client it wraps.
	adm := kadm.NewClient(cl)
	created, err := adm.CreateTopic(ctx, int32(partitions), topicReplication, nil, topic)
	if errors.Is(err, kerr.TopicAlreadyExists) {
		return checkDurability(ctx, adm, topic, log)
	}
	if err != nil {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	rf, minISR := int(created.ReplicationFactor), configInt(created.Configs, "min.insync.replicas")
	if rf >= replicasForQuorum && minISR < insyncMin {
		set := strconv.Itoa(insyncMin)
		resps, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "min.insync.replicas", Value: &set}}, topic)
		if err == nil {
			_, err = resps.On(topic, func(r *kadm.AlterConfigsResponse) error { return r.Err })
		}
		if err != nil {
			return fmt.Errorf("set min.insync.replicas of topic %s: %w", topic, err)
		}
		minISR = insyncMin
	}
	log.Info("kafka topic created", "created_topic", topic, "partitions", partitions, "replication", rf, "min_insync_replicas", minISR)
	return nil
}

// checkDurability warns when an existing topic can lose an acknowledged
// record to the failure of one broker, on a cluster that could keep it
// safer. A cluster of fewer than replicasForQuorum brokers cannot (the
// embedded one has one broker, and seeds the topics itself): ensureTopic
// creates its topics there as they are, and warning on every start of the
// demo or of an embedded core would be a false alarm.
func checkDurability(ctx context.Context, adm *kadm.Client, topic string, log *slog.Logger) error {
	meta, err := adm.Metadata(ctx, topic)
	if err != nil {
		return fmt.Errorf("describe topic %s: %w", topic, err)
	}
	if len(meta.Brokers) < replicasForQuorum {
		return nil
	}
	details := meta.Topics
	configs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err != nil {
		return fmt.Errorf("describe configs of topic %s: %w", topic, err)
	}
	rc, err := configs.On(topic, nil)
	if err != nil {
		return fmt.Errorf("describe configs of topic %s: %w", topic, err)
	}
	values := map[string]kadm.Config{}
	for _, c := range rc.Configs {
		values[c.Key] = c
	}
	rf, minISR := details[topic].Partitions.NumReplicas(), configInt(values, "min.insync.replicas")
	if rf < replicasForQuorum || minISR < insyncMin {
		log.Warn("kafka topic can lose acknowledged records to one broker failure; want replication 3 and min.insync.replicas 2",
			"weak_topic", topic, "replication", rf, "min_insync_replicas", minISR)
	}
	return nil
}

// configInt is the integer value of a topic config, 0 when it is absent
// or not a number.
func configInt(configs map[string]kadm.Config, key string) int {
	c, ok := configs[key]
	if !ok || c.Value == nil {
		return 0
	}
	n, _ := strconv.Atoi(*c.Value)
	return n
}

// Publish produces one record per entry, in order, and returns once every
// record is acknowledged by the broker (acks=all). If any record fails it
// returns the error of the earliest failed entry; records after it may or may
// not have been written, so the caller publishes again from its last stored
// position (at least once; consumers skip seqs they already have).
//
// Entries must be valid and in ascending position, as the outbox commits
// them: anything else is a bug upstream and nothing is published.
func (p *Publisher) Publish(ctx context.Context, entries []banksync.Entry) error {
	records := make([]*kgo.Record, len(entries))
	for i, e := range entries {
		if !banksync.ValidID(e.AccountID) || e.Seq < 1 || e.Position < 1 {
			return fmt.Errorf("publish: entry %d has bad account %q, seq %d or position %d", i, e.AccountID, e.Seq, e.Position)
		}
		if i > 0 && e.Position <= entries[i-1].Position {
			return fmt.Errorf("publish: position %d follows %d, want ascending", e.Position, entries[i-1].Position)
		}
		value, err := json.Marshal(banksync.EventOf(e))
		if err != nil {
			return fmt.Errorf("publish: encode entry at position %d: %w", e.Position, err)
		}
		records[i] = &kgo.Record{
			Topic: p.topic,
			Key:   []byte(e.AccountID),
			Value: value,
			Headers: []kgo.RecordHeader{
				{Key: HeaderSchema, Value: []byte(SchemaLedgerEntryV1)},
				{Key: HeaderEventID, Value: []byte(strconv.FormatInt(e.Position, 10))},
			},
		}
		if tp := banksync.EntryTraceParent(ctx, e.Position); tp != "" {
			records[i].Headers = append(records[i].Headers, kgo.RecordHeader{Key: banksync.HeaderTraceParent, Value: []byte(tp)})
		}
	}

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failed   atomic.Bool
		firstIdx = len(records)
		firstErr error
	)
	fail := func(i int, err error) {
		failed.Store(true)
		mu.Lock()
		defer mu.Unlock()
		if i < firstIdx {
			firstIdx, firstErr = i, fmt.Errorf("publish entry at position %d (account %s, seq %d): %w",
				entries[i].Position, entries[i].AccountID, entries[i].Seq, err)
		}
	}
	for i, r := range records {
		// After a failure, producing more would only put later seqs of an
		// account ahead of the one that failed; the caller starts over anyway.
		if failed.Load() {
			break
		}
		wg.Add(1)
		// Produce blocks while recordsBufferedMax records are in flight.
		p.cl.Produce(ctx, r, func(_ *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				fail(i, err)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		p.log.Warn("kafka publish failed", "entries", len(entries), "error", firstErr)
	}
	return firstErr
}

// Close releases the client. Publish has already waited for its records, so
// nothing acknowledged is lost; a Publish still running fails.
func (p *Publisher) Close() {
	p.cl.Close()
}

// Ping checks a broker answers: core's readiness.
func (p *Publisher) Ping(ctx context.Context) error { return p.cl.Ping(ctx) }
