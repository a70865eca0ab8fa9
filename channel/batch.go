package channel

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Limits of the batch path.
const (
	// batchEntriesMax bounds the entries of one store transaction of the
	// batch path: big enough that a commit's fixed cost (a sync to disk) is
	// shared by thousands of entries, small enough to keep a commit short.
	batchEntriesMax = 8192
	// batchCommitTimeout bounds one such transaction.
	batchCommitTimeout = 30 * time.Second
)

// errBatcherClosed answers runs submitted after Close.
var errBatcherClosed = errors.New("channel is closed")

// batcher is the group commit of ApplyBatch (sync.go): one goroutine takes
// the runs every caller has waiting and applies them in one store
// transaction, Store.ApplyRuns, which decides what to write with PlanRuns.
// While a commit is in flight the next batch gathers, so batches grow with
// load.
type batcher struct {
	store Store
	now   func() time.Time
	queue chan *runsRequest
	stop  chan struct{}
	done  chan struct{}
}

type runsRequest struct {
	runs   []Run
	result chan runsResult // buffered: the batcher never blocks on a caller
}

type runsResult struct {
	results []RunResult
	err     error
}

// batcher starts the group commit on first use; after Close it is nil.
func (c *Channel) batcher() *batcher {
	if c.batchClosed.Load() {
		return nil
	}
	c.batchOnce.Do(func() {
		c.batch = &batcher{store: c.store, now: c.now, queue: make(chan *runsRequest, lockStripes),
			stop: make(chan struct{}), done: make(chan struct{})}
		go c.batch.run()
	})
	return c.batch
}

// Close stops the batch path's group commit, after the batch in progress.
// Reads, transfers and Apply keep working; ApplyBatch applies one account
// at a time from then on.
func (c *Channel) Close() {
	c.batchClosed.Store(true)
	c.batchOnce.Do(func() {}) // never start it after Close
	if c.batch != nil {
		c.closeOnce.Do(func() {
			close(c.batch.stop)
			<-c.batch.done
		})
	}
}

// apply submits runs (of distinct accounts) and waits for the transaction
// that took them. A caller whose ctx ends stops waiting; its runs may still
// be applied, which is harmless: applying is idempotent.
func (b *batcher) apply(ctx context.Context, runs []Run) ([]RunResult, error) {
	if b == nil {
		return nil, errBatcherClosed
	}
	req := &runsRequest{runs: runs, result: make(chan runsResult, 1)}
	select {
	case b.queue <- req:
	case <-b.stop:
		return nil, errBatcherClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case res := <-req.result:
		return res.results, res.err
	case <-b.done:
		select {
		case res := <-req.result:
			return res.results, res.err
		default:
			return nil, errBatcherClosed
		}
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (b *batcher) run() {
	defer close(b.done)
	var held *runsRequest // the request that did not fit the last batch
	for {
		var batch []*runsRequest
		accounts := make(map[string]bool)
		entries := 0
		add := func(r *runsRequest) bool {
			for _, run := range r.runs {
				if accounts[run.Account] {
					return false // two runs of one account go in separate transactions
				}
			}
			if len(batch) > 0 && entries+runsEntries(r.runs) > batchEntriesMax {
				return false
			}
			for _, run := range r.runs {
				accounts[run.Account] = true
			}
			entries += runsEntries(r.runs)
			batch = append(batch, r)
			return true
		}
		if held != nil {
			add(held)
			held = nil
		} else {
			select {
			case <-b.stop:
				return
			case r := <-b.queue:
				add(r)
			}
		}
	fill:
		for {
			select {
			case r := <-b.queue:
				if !add(r) {
					held = r
					break fill
				}
			default:
				break fill
			}
		}
		b.commit(batch)
	}
}

func runsEntries(runs []Run) int {
	n := 0
	for _, r := range runs {
		n += len(r.Entries)
	}
	return n
}

// commit applies the batch's runs in one transaction and answers each
// request with its share of the results.
func (b *batcher) commit(batch []*runsRequest) {
	var runs []Run
	for _, r := range batch {
		runs = append(runs, r.runs...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), batchCommitTimeout)
	defer cancel()
	results, err := b.store.ApplyRuns(ctx, runs, b.now())
	for _, r := range batch {
		if err != nil {
			r.result <- runsResult{err: err}
			continue
		}
		r.result <- runsResult{results: results[:len(r.runs):len(r.runs)]}
		results = results[len(r.runs):]
	}
}

// batchState is the part of Channel the batch path adds.
type batchState struct {
	batchOnce   sync.Once
	closeOnce   sync.Once
	batchClosed atomic.Bool
	batch       *batcher
}
