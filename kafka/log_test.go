package kafka_test

import (
	"context"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"

	"banksync"
	"banksync/kafka"
)

// recordedLog keeps every record a logger passes, for tests that check
// what was logged.
type recordedLog struct {
	mu      sync.Mutex
	level   slog.Level
	records []slog.Record
	attrs   []slog.Attr // of this handler, from WithAttrs
	all     *recordedLog
}

func newRecordedLog(level slog.Level) *recordedLog {
	r := &recordedLog{level: level}
	r.all = r
	return r
}

func (r *recordedLog) Enabled(_ context.Context, l slog.Level) bool { return l >= r.all.level }

func (r *recordedLog) Handle(_ context.Context, rec slog.Record) error {
	rec = rec.Clone()
	rec.AddAttrs(r.attrs...)
	r.all.mu.Lock()
	defer r.all.mu.Unlock()
	r.all.records = append(r.all.records, rec)
	return nil
}

func (r *recordedLog) WithAttrs(as []slog.Attr) slog.Handler {
	return &recordedLog{attrs: append(append([]slog.Attr{}, r.attrs...), as...), all: r.all}
}

func (r *recordedLog) WithGroup(string) slog.Handler { return r }

// fromClient counts the records logged, and of them the Kafka client's:
// those logged by the adapter franz-go logs through (found by the caller
// slog records, so a line that lost its mark still counts), with how many
// of those carry the client=franz-go mark.
func (r *recordedLog) fromClient() (all, client, marked int) {
	r.all.mu.Lock()
	defer r.all.mu.Unlock()
	for _, rec := range r.all.records {
		frame, _ := runtime.CallersFrames([]uintptr{rec.PC}).Next()
		if !strings.Contains(frame.Function, "kgoLogger") {
			continue
		}
		client++
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "client" && a.Value.String() == "franz-go" {
				marked++
				return false
			}
			return true
		})
	}
	return len(r.all.records), client, marked
}

// TestClientChatterOnlyAtDebug: a publisher and a consumer joining its
// group log none of the Kafka client's own bookkeeping at info (a new user
// saw about 15 lines of it at every start), and all of it at debug.
func TestClientChatterOnlyAtDebug(t *testing.T) {
	for _, c := range []struct {
		level       slog.Level
		clientLines bool
	}{
		{slog.LevelInfo, false},
		{slog.LevelDebug, true},
	} {
		t.Run(c.level.String(), func(t *testing.T) {
			rec := newRecordedLog(c.level)
			log := slog.New(rec)
			brokers := mustStartCluster(t, kafka.ClusterConfig{}).Addrs()
			ctx := context.Background()
			p, err := kafka.NewPublisher(ctx, kafka.PublisherConfig{Conn: kafka.Brokers(brokers...), Logger: log})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if err := p.Publish(ctx, makeEntries(1, 1)); err != nil {
				t.Fatal(err)
			}
			applied := make(chan struct{})
			var once sync.Once
			consumer, err := kafka.NewConsumer(kafka.ConsumerConfig{Conn: kafka.Brokers(brokers...), Group: "logs", Logger: log},
				applyOnly(func(context.Context, banksync.Entry) error { once.Do(func() { close(applied) }); return nil }))
			if err != nil {
				t.Fatal(err)
			}
			runCtx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { defer close(done); consumer.Run(runCtx) }()
			<-applied // the consumer has joined its group, been assigned and fetched
			cancel()
			<-done
			p.Close()

			all, client, marked := rec.fromClient()
			if all == 0 {
				t.Fatal("nothing logged at all, not even the publisher's own line")
			}
			if got := client > 0; got != c.clientLines {
				t.Errorf("at %v: %d of %d lines from the Kafka client, want some: %v", c.level, client, all, c.clientLines)
			}
			if marked != client {
				t.Errorf("%d of the Kafka client's %d lines say client=franz-go, want all", marked, client)
			}
		})
	}
}
