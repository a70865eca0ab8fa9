package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"banksync"
)

// ConsumerGroupDefault is the channel replicas' consumer group unless
// configured otherwise.
const ConsumerGroupDefault = "banksync-channel"

// Consumer defaults.
const (
	pollRecordsMax       = 10_000
	commitInterval       = 200 * time.Millisecond
	drainTimeoutDefault  = 10 * time.Second // how long a stopping member lets its lanes finish
	applyAttemptsDefault = 5
	// sessionTimeout is how long a dead member keeps its partitions before
	// the group moves them: franz-go's default of 45 s is a long stall for a
	// bank app's history.
	sessionTimeout    = 10 * time.Second
	heartbeatInterval = time.Second
	// rebalanceTimeout is how long a rebalance waits for every member to
	// rejoin; franz-go's default is 60 s. A member killed as a rebalance
	// begins holds the whole group that long (the embedded cluster then
	// let the joins time out, 70 s without consuming, in the cluster test);
	// a live member rejoins within a poll, which is bounded by its lanes.
	rebalanceTimeout = 20 * time.Second
	applyBackoffInit = 20 * time.Millisecond
	applyBackoffMax  = 2 * time.Second
	dlqBackoffMax    = 5 * time.Second
)

// Headers a dead-lettered record carries besides the original's.
const (
	HeaderDLQReason    = "banksync-dlq-reason"
	HeaderDLQAttempts  = "banksync-dlq-attempts"
	HeaderDLQPartition = "banksync-dlq-partition"
	HeaderDLQOffset    = "banksync-dlq-offset"
	HeaderDLQAt        = "banksync-dlq-at"
)

// Applier is the sync engine as the consumer drives it.
type Applier interface {
	// ApplyBatch brings many accounts' entries in at once: groups[i] is one
	// account's entries in the order consumed (repeats and holes allowed);
	// errs[i] == nil means all of group i is applied, else none of it may
	// be. A record's retry is a batch of one.
	ApplyBatch(ctx context.Context, groups [][]banksync.Entry) (errs []error)
}

// applyOne applies one entry through a's ApplyBatch: a record's retry, a
// letter's replay.
func applyOne(ctx context.Context, a Applier, e banksync.Entry) error {
	return a.ApplyBatch(ctx, [][]banksync.Entry{{e}})[0]
}

// ApplyFunc is an Applier from a function that applies one entry: its
// batches apply entry by entry.
type ApplyFunc func(ctx context.Context, e banksync.Entry) error

// ApplyBatch applies each group's entries in turn, stopping a group at its
// first failure.
func (f ApplyFunc) ApplyBatch(ctx context.Context, groups [][]banksync.Entry) []error {
	errs := make([]error, len(groups))
	for i, g := range groups {
		for _, e := range g {
			if errs[i] = f(ctx, e); errs[i] != nil {
				break
			}
		}
	}
	return errs
}

// ConsumerConfig configures a Consumer. Zero values take the defaults.
type ConsumerConfig struct {
	Conn        Conn
	Group       string // consumer group, shared by every channel replica
	Topic       string
	DLQTopic    string // where given-up records go
	Lanes       int    // worker lanes; one account is always on one lane
	AttemptsMax int    // tries of one record before it is given up to the dead-letter topic
	// DrainTimeout is how long a stopping member lets the jobs it handed
	// out finish, so what they apply is committed rather than re-delivered;
	// 0 takes the default, a negative value stops them at once.
	DrainTimeout time.Duration
	Logger       *slog.Logger
	// Tracer, set, gives each record that carries a traceparent a span,
	// a child of the request that wrote its entry at core, from its lane
	// taking it to its apply; nil traces nothing.
	Tracer trace.Tracer
	// Traced, set with Tracer, is told of each traced record's entry and
	// its apply span as the span starts, before the entry can be pushed to
	// a live stream: the channel's live push joins that trace.
	Traced func(account string, seq int64, span trace.SpanContext)

	// UnsafeCommitBeforeApply completes each record as soon as it is
	// dispatched, so offsets are committed past records not yet applied
	// (P4 then breaks). It exists only so that the chaos checker's own
	// tests can show they catch that; nothing else may set it.
	UnsafeCommitBeforeApply bool
}

// Consumer reads ledger events as one member of a consumer group and applies
// them through worker lanes keyed by account, so each account's entries are
// applied in order. A partition's offset is committed only up to its lowest
// record not yet applied, so a crash re-delivers, harmlessly: the sync
// engine skips what it has.
type Consumer struct {
	cfg       ConsumerConfig
	apply     Applier
	offsets   offsetTracker
	lanes     *laneSet
	router    *router
	cl        *kgo.Client
	commits   sync.Mutex      // one commit at a time: the poll loop's or a revocation's
	committed map[int32]int64 // the last offsets the group accepted; under commits
}

// NewConsumer joins the group; Run consumes.
func NewConsumer(cfg ConsumerConfig, apply Applier) (*Consumer, error) {
	if cfg.Group == "" {
		cfg.Group = ConsumerGroupDefault
	}
	if cfg.Topic == "" {
		cfg.Topic = banksync.TopicLedgerEntries
	}
	if cfg.DLQTopic == "" {
		cfg.DLQTopic = DLQTopicOf(cfg.Topic)
	}
	if cfg.AttemptsMax <= 0 {
		cfg.AttemptsMax = applyAttemptsDefault
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = drainTimeoutDefault
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Consumer{cfg: cfg, apply: apply, lanes: newLaneSet(cfg.Lanes)}
	c.router = newRouter(&c.offsets, c.lanes, c, cfg.Logger)
	c.router.completeOnDispatch = cfg.UnsafeCommitBeforeApply
	cl, err := cfg.Conn.NewClient(
		kgo.ConsumerGroup(cfg.Group),
		kgo.ConsumeTopics(cfg.Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		// Eager rebalancing: every partition is revoked at once, so the
		// lanes can drop all queued work and the tracker forget it all.
		kgo.Balancers(kgo.RangeBalancer()),
		kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(sessionTimeout),
		kgo.HeartbeatInterval(heartbeatInterval),
		kgo.RebalanceTimeout(rebalanceTimeout),
		kgo.OnPartitionsRevoked(c.revoked),
		kgo.OnPartitionsLost(c.lost),
		kgo.WithLogger(newKgoLogger(cfg.Logger)),
	)
	if err != nil {
		c.lanes.Close()
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	c.cl = cl
	return c, nil
}

// Run polls and applies until ctx is done, then drains the lanes, commits
// what was applied and leaves the group.
func (c *Consumer) Run(ctx context.Context) error {
	defer c.cl.Close()
	jobs, cancelJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelJobs()
	c.router.jobs = jobs
	lastCommit := time.Now()
	for ctx.Err() == nil {
		// The poll gives up after commitInterval, so what the lanes
		// applied is committed even when no more records come.
		pollCtx, cancel := context.WithTimeout(ctx, commitInterval)
		fetches := c.cl.PollRecords(pollCtx, pollRecordsMax)
		cancel()
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				c.cfg.Logger.Warn("kafka fetch error", "topic", topic, "partition", p, "err", err)
			}
		})
		fetches.EachRecord(func(r *kgo.Record) {
			if ctx.Err() == nil {
				c.router.add(ctx, r)
			}
		})
		c.router.flush(ctx)
		c.cl.AllowRebalance()
		if time.Since(lastCommit) >= commitInterval {
			c.commit(ctx)
			lastCommit = time.Now()
		}
	}
	// Drain: the jobs handed out finish with their context alive, for at
	// most DrainTimeout, so what they apply is committed, not re-delivered.
	drain := time.AfterFunc(max(0, c.cfg.DrainTimeout), cancelJobs)
	c.lanes.Close()
	drain.Stop()
	c.commit(context.Background())
	return ctx.Err()
}

// traceApply starts a span for each record of recs that carries a
// traceparent, as that trace's child, and returns what ends them.
func (c *Consumer) traceApply(recs []*kgo.Record, events map[*kgo.Record]banksync.LedgerEvent) func() {
	var spans []trace.Span
	for _, r := range recs {
		for _, h := range r.Headers {
			if h.Key != banksync.HeaderTraceParent {
				continue
			}
			parent := propagation.TraceContext{}.Extract(context.Background(),
				propagation.MapCarrier{banksync.HeaderTraceParent: string(h.Value)})
			_, span := c.cfg.Tracer.Start(parent, "banksync.channel.apply", trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(attribute.String("banksync.account", events[r].AccountID), attribute.Int64("banksync.seq", events[r].Seq),
					attribute.Int("messaging.kafka.partition", int(r.Partition)), attribute.Int64("messaging.kafka.offset", r.Offset)))
			if c.cfg.Traced != nil {
				c.cfg.Traced(events[r].AccountID, events[r].Seq, span.SpanContext())
			}
			spans = append(spans, span)
		}
	}
	return func() {
		for _, s := range spans {
			s.End()
		}
	}
}

// handleBatch applies one lane's records: all their accounts in one
// ApplyBatch, so many records share a database transaction. An account
// whose entries did not all apply goes record by record through handle's
// retries (and the dead-letter topic). A record is completed — its offset
// may be committed past — only once done with.
func (c *Consumer) handleBatch(ctx context.Context, recs []*kgo.Record) {
	var (
		accounts []string                     // in order of first record
		groups   = map[string][]*kgo.Record{} // account -> its records
		events   = map[*kgo.Record]banksync.LedgerEvent{}
	)
	for _, r := range recs {
		ev, err := decode(r)
		if err != nil {
			if !c.deadLetter(ctx, r, "undecodable: "+err.Error(), 0) {
				return
			}
			c.markStale(ctx, string(r.Key))
			c.complete(r)
			continue
		}
		if groups[ev.AccountID] == nil {
			accounts = append(accounts, ev.AccountID)
		}
		groups[ev.AccountID] = append(groups[ev.AccountID], r)
		events[r] = ev
	}
	if c.cfg.Tracer != nil {
		defer c.traceApply(recs, events)()
	}
	entries := make([][]banksync.Entry, len(accounts))
	for i, a := range accounts {
		for _, r := range groups[a] {
			entries[i] = append(entries[i], events[r].Entry())
		}
	}
	errs := c.apply.ApplyBatch(ctx, entries)
	for i, a := range accounts {
		if errs[i] == nil {
			for _, r := range groups[a] {
				c.complete(r)
			}
		}
	}
	// Then the accounts that failed, record by record, each after the
	// healthy ones were completed: one poisoned account holds up nobody.
	for i, a := range accounts {
		if errs[i] == nil {
			continue
		}
		for j, r := range groups[a] {
			tried := 0
			if j == 0 {
				tried = 1 // the batch's try counts as the first record's first
			}
			if !c.retry(ctx, r, events[r], tried) {
				return // shutting down: the rest is re-delivered
			}
			c.complete(r)
		}
	}
}

// staleMarker is the part of the sync engine that flags an account whose
// history is behind core's.
type staleMarker interface {
	MarkStale(ctx context.Context, account string) error
}

// markStale flags the account a record that cannot be decoded is keyed by,
// when the key names one, so a read syncs it at once. Only a fast path: the
// record is in the dead-letter topic, whose repair syncs the account anyway.
func (c *Consumer) markStale(ctx context.Context, account string) {
	m, ok := c.apply.(staleMarker)
	if !ok || !banksync.ValidID(account) {
		return
	}
	if err := m.MarkStale(ctx, account); err != nil {
		c.cfg.Logger.WarnContext(ctx, "marking the account of an undecodable record stale failed; the dead-letter repair syncs it", "account", account, "err", err)
	}
}

// complete marks r applied in the offset tracker.
func (c *Consumer) complete(r *kgo.Record) {
	if err := c.offsets.Complete(r.Partition, r.Offset); err != nil {
		c.cfg.Logger.Debug("completed a record of a revoked partition", "partition", r.Partition, "offset", r.Offset)
	}
}

// decode reads a record's ledger event, which must be of the account the
// record is keyed by: the consumer and the dead-letter replay read records
// with this one rule, so a record one refuses the other does not apply.
func decode(r *kgo.Record) (banksync.LedgerEvent, error) {
	ev, err := banksync.DecodeLedgerEvent(r.Value)
	if err != nil {
		return ev, err
	}
	if ev.AccountID != string(r.Key) {
		return ev, fmt.Errorf("event of account %q under key %q", ev.AccountID, r.Key)
	}
	return ev, nil
}

// retry applies one record's event, retrying with capped backoff, and
// reports whether the record is done with: applied, or — failing
// AttemptsMax times, tried of them already made — published to the
// dead-letter topic, so the partition moves on. That topic is the durable
// repair queue: DeadLetters.RunRepair applies the record once the history
// database answers again (the sync engine has also tried to mark the
// account stale, a fast path for reads that an outage may refuse). A
// record left when ctx ends is not done: it is re-delivered.
func (c *Consumer) retry(ctx context.Context, r *kgo.Record, ev banksync.LedgerEvent, tried int) bool {
	backoff := applyBackoffInit
	for attempt := tried + 1; ; attempt++ {
		err := applyOne(ctx, c.apply, ev.Entry())
		switch {
		case err == nil:
			return true
		case ctx.Err() != nil:
			return false
		case attempt >= c.cfg.AttemptsMax:
			return c.deadLetter(ctx, r, err.Error(), attempt)
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, applyBackoffMax)
	}
}

// deadLetter publishes r to the dead-letter topic with why, retrying until
// the broker acknowledges it or ctx ends (then r is not done, and is
// re-delivered rather than lost). A letter written is logged once, with
// its reason.
func (c *Consumer) deadLetter(ctx context.Context, r *kgo.Record, reason string, attempts int) bool {
	headers := append(append([]kgo.RecordHeader(nil), r.Headers...),
		kgo.RecordHeader{Key: HeaderDLQReason, Value: []byte(reason)},
		kgo.RecordHeader{Key: HeaderDLQAttempts, Value: []byte(strconv.Itoa(attempts))},
		kgo.RecordHeader{Key: HeaderDLQPartition, Value: []byte(strconv.Itoa(int(r.Partition)))},
		kgo.RecordHeader{Key: HeaderDLQOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))},
		kgo.RecordHeader{Key: HeaderDLQAt, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
	)
	backoff := applyBackoffInit
	for {
		dead := &kgo.Record{Topic: c.cfg.DLQTopic, Key: r.Key, Value: r.Value, Headers: headers}
		err := c.cl.ProduceSync(ctx, dead).FirstErr()
		if err == nil {
			c.cfg.Logger.Error("ledger event dead-lettered; the dead-letter repair applies it", "account", string(r.Key),
				"partition", r.Partition, "offset", r.Offset, "attempts", attempts, "reason", reason,
				"dlq_partition", dead.Partition, "dlq_offset", dead.Offset)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		c.cfg.Logger.Warn("publishing to the dead-letter topic failed; retrying", "topic", c.cfg.DLQTopic, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, dlqBackoffMax)
	}
}

// commit commits, per partition, the offset of the lowest record not yet
// applied.
func (c *Consumer) commit(ctx context.Context) {
	c.commits.Lock()
	defer c.commits.Unlock()
	committable := c.offsets.Committable()
	if len(committable) == 0 || maps.Equal(committable, c.committed) {
		return // nothing new: an idle member does not repeat its commit
	}
	offsets := make(map[int32]kgo.EpochOffset, len(committable))
	for p, off := range committable {
		offsets[p] = kgo.EpochOffset{Epoch: -1, Offset: off}
	}
	c.committed = nil
	c.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{c.cfg.Topic: offsets},
		func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			if err == nil {
				err = commitResponseError(resp)
			}
			if err != nil {
				if !errors.Is(err, context.Canceled) {
					c.cfg.Logger.Warn("kafka offset commit failed", "err", err)
				}
				return
			}
			c.committed = committable
		})
}

// commitResponseError is the first partition error in a commit's answer.
func commitResponseError(resp *kmsg.OffsetCommitResponse) error {
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return fmt.Errorf("commit %s/%d: %w", t.Topic, p.Partition, err)
			}
		}
	}
	return nil
}

// revoked runs between polls (BlockRebalanceOnPoll): queued work is dropped,
// what was applied is committed, and the tracker forgets the partitions;
// their unapplied records go to the next owner.
func (c *Consumer) revoked(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	c.lanes.Abandon()
	c.router.reset()
	c.commit(ctx)
	c.offsets.Revoke(lost[c.cfg.Topic]...)
}

// lost is revoked without the commit, which would fail anyway.
func (c *Consumer) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	c.lanes.Abandon()
	c.router.reset()
	c.offsets.Revoke(lost[c.cfg.Topic]...)
}

// Joined tells whether this member has joined its group (it may hold no
// partitions when there are more members than partitions): the channel's
// readiness.
func (c *Consumer) Joined(ctx context.Context) error {
	if err := c.cl.Ping(ctx); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	if _, generation := c.cl.GroupMetadata(); generation <= 0 {
		return fmt.Errorf("kafka: not yet joined group %s", c.cfg.Group)
	}
	return nil
}
