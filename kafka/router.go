package kafka

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// router gathers a poll's records into one batch per lane, recording each
// in the offset tracker as it goes, and hands the batches to the lanes: one
// lane job per lane per poll, so a lane applies many records at once, and
// one account's records (always on one lane) stay in offset order.
type router struct {
	offsets *offsetTracker
	lanes   *laneSet
	to      batchHandler // the Consumer
	log     *slog.Logger
	// completeOnDispatch: ConsumerConfig.UnsafeCommitBeforeApply.
	completeOnDispatch bool
	// jobs, when set, is what the lanes' jobs run under instead of the
	// poll loop's ctx: it outlives the loop, so that on shutdown the jobs
	// already handed out finish (for a bounded time) and their records are
	// committed instead of re-delivered.
	jobs context.Context

	batches map[int][]*kgo.Record // lane -> records not yet dispatched

	// waiting is each lane's mailbox: the records handed to the lane that
	// its job has not taken yet. A lane runs at most one job, which takes
	// everything waiting each time round, so a busy lane's next batch is
	// all its records of the polls since: one bigger group commit instead
	// of one per poll. The offset tracker's bound on records in flight
	// bounds the mailboxes.
	waiting []mailbox
}

type mailbox struct {
	mu        sync.Mutex
	recs      []*kgo.Record
	scheduled bool // a job of the lane will take recs
}

// batchHandler is where the router's work goes: the Consumer (and, in the
// router's own tests, a stand-in).
type batchHandler interface {
	// handleBatch runs a batch on its lane; it completes, in the tracker,
	// each record it is done with.
	handleBatch(ctx context.Context, recs []*kgo.Record)
	// commit is called when a partition holds its maximum of records in
	// flight, after the batches so far went to the lanes: it commits what
	// can be, before the router waits for room.
	commit(ctx context.Context)
}

func newRouter(offsets *offsetTracker, lanes *laneSet, to batchHandler, log *slog.Logger) *router {
	return &router{offsets: offsets, lanes: lanes, to: to, log: log, batches: make(map[int][]*kgo.Record),
		waiting: make([]mailbox, lanes.Len())}
}

// reset empties the mailboxes, after the lanes' Abandon: the records in
// them are revoked, to be re-delivered to the partitions' next owner.
func (rt *router) reset() {
	for i := range rt.waiting {
		mb := &rt.waiting[i]
		mb.mu.Lock()
		mb.recs, mb.scheduled = nil, false
		mb.mu.Unlock()
	}
}

// add records r as dispatched and adds it to its lane's batch. When r's
// partition has too many records in flight, the batches gathered so far go
// to the lanes first, so that the room r waits for can free.
func (rt *router) add(ctx context.Context, r *kgo.Record) {
	for {
		err := rt.offsets.Dispatch(r.Partition, r.Offset)
		if !errors.Is(err, errInFlightFull) {
			if err != nil {
				rt.log.Error("kafka offset tracking", "partition", r.Partition, "offset", r.Offset, "err", err)
				return
			}
			break
		}
		rt.flush(ctx)
		rt.to.commit(ctx)
		if rt.offsets.WaitRoom(ctx, r.Partition) != nil {
			return
		}
	}
	if rt.completeOnDispatch {
		rt.offsets.Complete(r.Partition, r.Offset)
	}
	lane := rt.lanes.Lane(string(r.Key))
	rt.batches[lane] = append(rt.batches[lane], r)
}

// flush puts each lane's batch in its mailbox, in the order added, and
// starts a job on each lane that has none.
func (rt *router) flush(ctx context.Context) {
	for lane, recs := range rt.batches {
		delete(rt.batches, lane)
		mb := &rt.waiting[lane]
		mb.mu.Lock()
		mb.recs = append(mb.recs, recs...)
		start := !mb.scheduled
		mb.scheduled = true
		mb.mu.Unlock()
		if !start {
			continue
		}
		parent := rt.jobs
		if parent == nil {
			parent = ctx
		}
		job := func(abandoned context.Context) {
			// The job ends with its parent (the consumer's drain) or, on
			// revocation, the lanes' abandonment: a lane retrying a failing
			// record must not hold up the rebalance.
			jctx, cancel := context.WithCancel(parent)
			defer context.AfterFunc(abandoned, cancel)()
			defer cancel()
			rt.drainMailbox(jctx, mb)
		}
		if err := rt.lanes.DispatchTo(ctx, lane, job); err != nil {
			// ctx done or lanes closed: shutting down, so they are re-delivered
			rt.log.Debug("records not dispatched", "records", len(recs), "err", err)
			mb.mu.Lock()
			mb.scheduled = false
			mb.mu.Unlock()
		}
	}
}

// drainMailbox handles what waits in mb until it is empty or ctx ends.
func (rt *router) drainMailbox(ctx context.Context, mb *mailbox) {
	for {
		mb.mu.Lock()
		recs := mb.recs
		mb.recs = nil
		if len(recs) == 0 || ctx.Err() != nil {
			mb.scheduled = false
			mb.mu.Unlock()
			return
		}
		mb.mu.Unlock()
		rt.to.handleBatch(ctx, recs)
	}
}
