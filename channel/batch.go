package channel

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"banksync"
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

// ApplyBatch brings the entries of many accounts into the history at once:
// the consumer's path. groups[i] holds one account's entries in the order
// they arrived, repeats and holes allowed. Of each group, the run that
// follows the account's synced seq goes into one store transaction shared
// with every other caller's runs waiting at that moment (group commit), so a
// commit's cost is spread over thousands of entries. A group that cannot go
// that way — a hole to fill from core, entries the transaction could not
// take — is applied alone through Apply, which fills holes and marks the
// account stale on failure. errs[i] is nil once group i is applied.
func (c *Channel) ApplyBatch(ctx context.Context, groups [][]banksync.Entry) []error {
	errs := make([]error, len(groups))
	runs := make([]Run, 0, len(groups))
	index := make([]int, 0, len(groups)) // runs[j] is of groups[index[j]]
	alone := make([]int, 0)              // groups to apply through Apply
	seen := make(map[string]bool, len(groups))
	ordered := make([][]banksync.Entry, len(groups))
	for i, g := range groups {
		if len(g) == 0 {
			continue
		}
		account := g[0].AccountID
		if j := slices.IndexFunc(g, func(e banksync.Entry) bool { return e.AccountID != account }); j >= 0 {
			errs[i] = fmt.Errorf("apply batch: group of %s holds an entry of %s", account, g[j].AccountID)
			continue
		}
		g = inSeqOrder(g)
		ordered[i] = g
		run := contiguousFrom(g, g[0].Seq)
		if seen[account] || len(run) < len(g) {
			alone = append(alone, i) // a second group of one account, or a hole inside
			continue
		}
		seen[account] = true
		runs = append(runs, Run{Account: account, Entries: run})
		index = append(index, i)
	}
	if len(runs) > 0 {
		results, err := c.batcher().apply(ctx, runs)
		appended := 0
		for j, i := range index {
			if err != nil || results[j].Gap {
				alone = append(alone, i)
				continue
			}
			appended += results[j].Appended
		}
		c.noteApplied(int64(appended))
		if err != nil && ctx.Err() == nil && !errors.Is(err, errBatcherClosed) {
			c.cfg.Logger.WarnContext(ctx, "batch apply failed; applying its accounts one by one", "runs", len(runs), "err", err)
		}
	}
	if err := ctx.Err(); err != nil {
		// Cut short (the consumer is stopping): what is not applied is
		// re-delivered; applying it alone now would only fail and mark
		// accounts stale for nothing.
		for _, i := range alone {
			errs[i] = err
		}
		return errs
	}
	slices.Sort(alone) // one account's groups in the order given
	for _, i := range alone {
		_, errs[i] = c.Apply(ctx, ordered[i][0].AccountID, ordered[i])
	}
	return errs
}

// ApplyEntry is Apply of one entry: the sync engine as the consumer's
// retries and the dead-letter replay use it.
func (c *Channel) ApplyEntry(ctx context.Context, e banksync.Entry) error {
	_, err := c.Apply(ctx, e.AccountID, []banksync.Entry{e})
	return err
}

// inSeqOrder returns es sorted by seq without repeats: the relay may
// publish an entry twice, and a redelivery may interleave with it.
func inSeqOrder(es []banksync.Entry) []banksync.Entry {
	ascending := true
	for i := 1; i < len(es) && ascending; i++ {
		ascending = es[i].Seq > es[i-1].Seq
	}
	if ascending {
		return es
	}
	out := slices.Clone(es)
	slices.SortStableFunc(out, func(a, b banksync.Entry) int { return cmp.Compare(a.Seq, b.Seq) })
	return slices.CompactFunc(out, func(a, b banksync.Entry) bool { return a.Seq == b.Seq })
}

// batcher is the group commit of the batch path: one goroutine takes the
// runs every caller has waiting and applies them in one store transaction.
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
