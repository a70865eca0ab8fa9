package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"

	"banksync"
	"banksync/kafka"
	"banksync/ledger"
)

// poisoningPublisher is core's publisher as a core upgraded ahead of its
// channels would be, now and then: an armed entry goes out as an event of
// the next schema version, which no channel of this version can decode.
// The entry is on core's ledger, its event in the topic, and the consumer
// must dead-letter the record; only the dead-letter repair (or a later
// entry of the same account, filling the hole from core) brings it into the
// history.
type poisoningPublisher struct {
	mu    sync.Mutex
	next  ledger.Publisher // the running core's publisher (wrap)
	raw   *kgo.Client      // keys and partitions as the publisher does (murmur2)
	armed atomic.Int64
	stats *counters
}

func newPoisoningPublisher(conn kafka.Conn, stats *counters) (*poisoningPublisher, error) {
	raw, err := conn.NewClient(kgo.DefaultProduceTopic(banksync.TopicLedgerEntries),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		return nil, err
	}
	return &poisoningPublisher{raw: raw, stats: stats}, nil
}

// wrap puts p in front of a core's own publisher: node.CoreConfig's
// WrapPublisher, at every start of core.
func (p *poisoningPublisher) wrap(next ledger.Publisher) ledger.Publisher {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next = next
	return p
}

func (p *poisoningPublisher) publisher() ledger.Publisher {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.next
}

// arm poisons the next n entries published, one per batch.
func (p *poisoningPublisher) arm(n int64) { p.armed.Add(n) }

// Publish publishes entries in order; while armed, the last entry of the
// batch goes out poisoned, after the others.
func (p *poisoningPublisher) Publish(ctx context.Context, entries []banksync.Entry) error {
	if p.armed.Load() <= 0 || len(entries) == 0 {
		return p.publisher().Publish(ctx, entries)
	}
	last := entries[len(entries)-1]
	if err := p.publisher().Publish(ctx, entries[:len(entries)-1]); err != nil {
		return err
	}
	ev := banksync.EventOf(last)
	ev.Version = banksync.EventSchemaVersion + 1
	value, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("chaos: encode poisoned event: %w", err)
	}
	if err := p.raw.ProduceSync(ctx, &kgo.Record{Key: []byte(last.AccountID), Value: value}).FirstErr(); err != nil {
		return fmt.Errorf("chaos: publish poisoned event: %w", err)
	}
	p.armed.Add(-1)
	p.stats.fault("event_undecodable")
	return nil
}

func (p *poisoningPublisher) close() { p.raw.Close() }
