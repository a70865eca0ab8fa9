package kafka

import (
	"context"
	"errors"
	"log/slog"

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
	return &router{offsets: offsets, lanes: lanes, to: to, log: log, batches: make(map[int][]*kgo.Record)}
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

// flush hands each lane its batch, in the order added.
func (rt *router) flush(ctx context.Context) {
	for lane, recs := range rt.batches {
		delete(rt.batches, lane)
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
			rt.to.handleBatch(jctx, recs)
		}
		if err := rt.lanes.DispatchTo(ctx, lane, job); err != nil {
			// ctx done or lanes closed: shutting down, so they are re-delivered
			rt.log.Debug("records not dispatched", "records", len(recs), "err", err)
		}
	}
}
