package channel

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"banksync"
)

// The one sync engine. Every write to the history goes through it, by one
// of its three doors, and every one of them decides what to write with
// plan, the in-order rule:
//
//   - Apply: one account's entries core handed the channel (a transfer's
//     settlement), and ApplyBatch's fallback;
//   - Sync: bring an account to core's head (reads, the account listing,
//     manual sync, the reconciler's repair of stale accounts, the dead-letter
//     repair of a letter it cannot decode);
//   - ApplyBatch: the entries of many accounts at once (the Kafka consumer,
//     whose retry of one record is a batch of one, and the dead-letter
//     replay), group-committed through the batcher (batch.go) into
//     Store.ApplyRuns, which plans with PlanRuns.
//
// ManualSync (history.go) is Sync behind the customer's authorisation, and
// SyncAccount is Sync for the kafka package, which needs only the error.
// Apply and Sync write with Store.Apply, a compare-and-set on the synced seq
// of the run plan chose; the group commit plans inside the store's
// transaction, where the synced seqs are read, so it costs no extra read.

// Apply brings entries of one account (in ascending seq order) into the
// history strictly in sequence: an entry at synced+1 is applied, one at or
// below synced is a repeat and skipped, and a hole before an entry is filled
// from core first. The history therefore is always a prefix of core's
// ledger (P5). On failure the account is marked stale. Safe for concurrent
// callers.
func (c *Channel) Apply(ctx context.Context, account string, entries []banksync.Entry) (AccountState, error) {
	for i, e := range entries {
		if e.AccountID != account || (i > 0 && e.Seq <= entries[i-1].Seq) {
			return AccountState{}, fmt.Errorf("apply to %s: entry %d is %s/%d, not the account's in ascending order", account, i, e.AccountID, e.Seq)
		}
	}
	return c.applyLocked(ctx, account, entries)
}

// Sync reads the account's entries after its synced seq from core and
// applies them until caught up; reaching core's head clears the stale mark.
func (c *Channel) Sync(ctx context.Context, account string) (AccountState, error) {
	return c.applyLocked(ctx, account, nil)
}

// SyncAccount is Sync for callers that need only the error and cannot name
// AccountState: the kafka package's dead-letter repair of a letter that
// cannot be decoded.
func (c *Channel) SyncAccount(ctx context.Context, account string) error {
	_, err := c.Sync(ctx, account)
	return err
}

// ApplyBatch brings the entries of many accounts into the history at once:
// the consumer's path (its retry of one record is a batch of one) and the
// dead-letter replay's. groups[i] holds one account's entries in the order
// they arrived, repeats and holes allowed. Each group that is a run goes
// into one store transaction shared with every other caller's runs waiting
// at that moment (group commit), so a commit's cost is spread over
// thousands of entries. A group that cannot go that way — a hole to fill
// from core, entries the transaction could not take — is applied alone
// through Apply, which fills holes and marks the account stale on failure.
// errs[i] is nil once group i is applied.
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
		if _, holeInside := plan(g[0].Seq-1, g, false); seen[account] || holeInside {
			alone = append(alone, i) // a second group of one account, or a hole inside
			continue
		}
		seen[account] = true
		runs = append(runs, Run{Account: account, Entries: g, UnsafePastHole: c.cfg.Unsafe.OutOfOrder})
		index = append(index, i)
	}
	if len(runs) > 0 {
		results, err := c.batcher().apply(ctx, runs)
		panicIfMalformed(err)
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

// plan is the in-order rule, the one place it is written; Apply, Sync,
// ApplyBatch and (through PlanRuns) both stores' group commit decide with
// it. Of an account's entries in ascending seq order, those at or below
// synced are repeats, skipped; next is the run that follows synced without
// a hole (synced+1, synced+2, …), to append; gap reports entries left past
// a hole, which core must fill before they can go in. pastHoles
// (Run.UnsafePastHole only) makes next everything past synced, hole or not.
func plan(synced int64, entries []banksync.Entry, pastHoles bool) (next []banksync.Entry, gap bool) {
	for len(entries) > 0 && entries[0].Seq <= synced {
		entries = entries[1:]
	}
	if pastHoles {
		return entries, false
	}
	n := 0
	for n < len(entries) && entries[n].Seq == synced+1+int64(n) {
		n++
	}
	return entries[:n], n < len(entries)
}

// PlanRuns decides what Store.ApplyRuns does with runs, given the stored
// states of their accounts (known; an account missing starts at seq 0):
// the result of each run and the entries to append for it — none for a run
// of repeats or a Gap. A store calls it inside its transaction, after
// reading the states, so the rule is plan's whatever the store.
func PlanRuns(known map[string]AccountState, runs []Run, at time.Time) (results []RunResult, appends [][]banksync.Entry) {
	results, appends = make([]RunResult, len(runs)), make([][]banksync.Entry, len(runs))
	for i, r := range runs {
		st, ok := known[r.Account]
		if !ok {
			st = AccountState{ID: r.Account}
		}
		next, gap := plan(st.SyncedSeq, r.Entries, r.UnsafePastHole)
		switch {
		case gap:
			results[i] = RunResult{State: st, Gap: true}
		case len(next) == 0:
			results[i] = RunResult{State: st}
		default:
			last := next[len(next)-1]
			st.SyncedSeq, st.Balance, st.SyncedAt = last.Seq, last.BalanceAfter, banksync.Timestamp(at)
			results[i], appends[i] = RunResult{State: st, Appended: len(next)}, next
		}
	}
	return results, appends
}

// applyLocked runs apply under the account's lock and marks the account
// stale if it fails.
func (c *Channel) applyLocked(ctx context.Context, account string, entries []banksync.Entry) (AccountState, error) {
	unlock, err := c.lock(ctx, account)
	if err != nil {
		return AccountState{}, err
	}
	defer unlock()
	st, err := c.apply(ctx, account, entries)
	if err != nil {
		c.markStale(ctx, account, err)
	}
	return st, err
}

// apply runs under the account's lock. With no entries it syncs to core's
// head. Other processes may apply the same account at the same time; the
// store's compare-and-set (ErrSeqConflict) keeps them from interleaving.
func (c *Channel) apply(ctx context.Context, account string, entries []banksync.Entry) (AccountState, error) {
	toHead := len(entries) == 0
	var st, first AccountState
	var progress syncProgress
	for attempt, pages := 0, 0; ; {
		var err error
		if st, _, err = c.store.Account(ctx, account); err != nil {
			return st, fmt.Errorf("read sync state of %s: %w", account, err)
		}
		if pages == 0 && attempt == 0 {
			first = st
		}
		next, gap := plan(st.SyncedSeq, entries, false)
		if len(next) == 0 {
			if !gap && !toHead {
				return st, nil // repeats only
			}
			// A hole (or a sync to head): read what follows synced from core.
			if pages++; pages > syncPagesMax {
				return st, fmt.Errorf("sync %s: more than %d pages behind", account, syncPagesMax)
			}
			c.sayProgress(ctx, account, &progress, st, pages)
			if next, err = c.fill(ctx, account, st.SyncedSeq); err != nil {
				return st, err
			}
			if len(next) == 0 {
				if gap {
					return st, fmt.Errorf("core has no entry %s/%d that an event announced", account, st.SyncedSeq+1)
				}
				return c.reachedHead(ctx, account, first, st)
			}
		}
		before := st.SyncedSeq
		st, err = c.store.Apply(ctx, account, next, c.now())
		panicIfMalformed(err)
		switch {
		case err == nil:
			c.noteApplied(st.SyncedSeq - before)
		case errors.Is(err, ErrSeqConflict):
			if attempt++; attempt >= applyAttemptsMax {
				return st, fmt.Errorf("apply %s: synced seq keeps moving: %w", account, err)
			}
		default:
			return st, fmt.Errorf("apply %d entries to %s: %w", len(next), account, err)
		}
	}
}

// syncProgressInterval is how often a sync that reads page after page
// from core (the first sync of an account with years of history) logs how
// far it got, so that an operator sees it working rather than hung.
const syncProgressInterval = 3 * time.Second

// syncProgress is when a sync began reading pages from core and when it
// last said how far it got.
type syncProgress struct{ start, said time.Time }

// sayProgress, before page pages of a sync is read from core, logs how far
// the sync has got once syncProgressInterval has passed since it began or
// last said so. The clock is read only when pages are read: the sync of
// one new entry never touches it.
func (c *Channel) sayProgress(ctx context.Context, account string, p *syncProgress, st AccountState, pages int) {
	now := c.cfg.Now()
	if pages == 1 {
		p.start, p.said = now, now
		return
	}
	if now.Sub(p.said) < syncProgressInterval {
		return
	}
	p.said = now
	c.cfg.Logger.InfoContext(ctx, "syncing account from core", "account", account, "synced_seq", st.SyncedSeq,
		"pages", pages-1, "took", now.Sub(p.start))
}

// fill reads from core a page of the account's entries after synced: the
// run that fills a hole or moves toward core's head, none at the head. Core's
// answer is checked here, so that the run given to the store is well formed
// whatever core said.
func (c *Channel) fill(ctx context.Context, account string, synced int64) ([]banksync.Entry, error) {
	cctx, cancel := c.coreCall(ctx)
	fetched, err := c.core.Entries(cctx, account, synced, entriesPageMax)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("fill %s after seq %d from core: %w", account, synced, err)
	}
	next, gap := plan(synced, fetched, false)
	foreign := slices.IndexFunc(fetched, func(e banksync.Entry) bool { return e.AccountID != account })
	if gap || len(next) != len(fetched) || foreign >= 0 {
		return nil, fmt.Errorf("core answered entries of %s after %d that are not %d, %d, …", account, synced, synced+1, synced+2)
	}
	if len(next) > 0 {
		c.cfg.Observer.GapFilled(len(next))
	}
	return next, nil
}

// panicIfMalformed stops the sync engine loudly when a store refused a run
// as malformed: the engine builds every run it writes from entries it has
// checked, so that is its own bug — never a conflict to retry, a reason to
// mark the account stale, or an error a caller (the consumer's retries, the
// dead-letter replay) would retry.
func panicIfMalformed(err error) {
	if errors.Is(err, ErrMalformedRun) {
		panic(fmt.Sprintf("channel: the sync engine built a run its store refused: %v", err))
	}
}

// reachedHead ends a sync that caught up with core: the account is no
// longer stale, unless a failure marked it again after the sync began.
func (c *Channel) reachedHead(ctx context.Context, account string, first, st AccountState) (AccountState, error) {
	if !first.Stale {
		return st, nil
	}
	if err := c.store.ClearStale(ctx, account, first.StaleGen); err != nil {
		return st, fmt.Errorf("clear stale %s: %w", account, err)
	}
	st, _, err := c.store.Account(ctx, account)
	if err != nil {
		return st, fmt.Errorf("read sync state of %s: %w", account, err)
	}
	return st, nil
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

// MarkStale flags an account whose history may be behind core's, so the
// next read or the reconciler syncs it, within StoreTimeout: the sync
// engine's mark after a failed sync, and the consumer's fast path for a
// record it could not even decode. It is a hint, not the repair: the
// dead-letter repair syncs the account whether or not the mark was written.
func (c *Channel) MarkStale(ctx context.Context, account string) error {
	if !banksync.ValidID(account) {
		return banksync.Errorf(banksync.EINVALID, "mark stale: %q is not an account id", account)
	}
	ctx, cancel := c.storeCall(ctx)
	defer cancel()
	return c.store.MarkStale(ctx, account, c.now())
}

// markStale flags an account whose sync failed, so the next read or manual
// sync repairs it. A sync its caller called off (ctx cancelled: the
// consumer stopping or giving up a revoked partition, a client gone) did
// not fail: whoever gets the work next brings the account up to date.
func (c *Channel) markStale(ctx context.Context, account string, cause error) {
	if errors.Is(ctx.Err(), context.Canceled) {
		return
	}
	c.cfg.Logger.WarnContext(ctx, "account history behind core; marked stale", "account", account, "err", cause)
	// Not cut short with its caller (the mark is why the caller failed);
	// MarkStale bounds it, as on a hung database it would hold the
	// account's lock.
	if err := c.MarkStale(context.WithoutCancel(ctx), account); err != nil {
		c.cfg.Logger.ErrorContext(ctx, "mark account stale", "account", account, "err", err)
	}
}
