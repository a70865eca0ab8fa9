package channel

import (
	"context"
	"errors"
	"fmt"

	"banksync"
)

// Apply is the one sync engine: the only code that writes history. It
// brings entries of one account (from an event, a transfer's answer or a
// read of core) into the history strictly in sequence: an entry at synced+1
// is applied, one at or below synced is a repeat and skipped, and a hole
// before the first entry is filled from core first. The history therefore
// is always a prefix of core's ledger (P5). Safe for concurrent callers.
func (c *Channel) Apply(ctx context.Context, account string, entries []banksync.Entry) (AccountState, error) {
	for i, e := range entries {
		if e.AccountID != account || (i > 0 && e.Seq <= entries[i-1].Seq) {
			return AccountState{}, fmt.Errorf("apply to %s: entry %d is %s/%d, not the account's in ascending order", account, i, e.AccountID, e.Seq)
		}
	}
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

// Sync reads the account's entries after its synced seq from core and
// applies them until caught up: the trigger of manual sync and of reads.
func (c *Channel) Sync(ctx context.Context, account string) (AccountState, error) {
	unlock, err := c.lock(ctx, account)
	if err != nil {
		return AccountState{}, err
	}
	defer unlock()
	st, err := c.apply(ctx, account, nil)
	if err != nil {
		c.markStale(ctx, account, err)
	}
	return st, err
}

// SyncAccount is Sync for callers that need only the error: the
// dead-letter repair of a letter that cannot be decoded.
func (c *Channel) SyncAccount(ctx context.Context, account string) error {
	_, err := c.Sync(ctx, account)
	return err
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

// apply runs under the account's lock. With no entries it syncs to core's
// head. Other processes may apply the same account at the same time; the
// store's conditional Apply (ErrSeqConflict) keeps them from interleaving.
func (c *Channel) apply(ctx context.Context, account string, entries []banksync.Entry) (AccountState, error) {
	toHead := len(entries) == 0
	var st, first AccountState
	for attempt, pages := 0, 0; ; {
		var err error
		if st, _, err = c.store.Account(ctx, account); err != nil {
			return st, fmt.Errorf("read sync state of %s: %w", account, err)
		}
		if pages == 0 && attempt == 0 {
			first = st
		}
		entries = after(entries, st.SyncedSeq)
		if len(entries) == 0 && !toHead {
			return st, nil
		}
		batch := contiguousFrom(entries, st.SyncedSeq+1)
		if len(batch) == 0 {
			// A hole (or a sync to head): read what follows synced from core.
			if pages++; pages > syncPagesMax {
				return st, fmt.Errorf("sync %s: more than %d pages behind", account, syncPagesMax)
			}
			cctx, cancel := c.coreCall(ctx)
			fetched, err := c.core.Entries(cctx, account, st.SyncedSeq, entriesPageMax)
			cancel()
			if err != nil {
				return st, fmt.Errorf("fill %s after seq %d from core: %w", account, st.SyncedSeq, err)
			}
			batch = contiguousFrom(fetched, st.SyncedSeq+1)
			if len(batch) > 0 {
				c.cfg.Observer.GapFilled(len(batch))
			}
			if len(batch) != len(fetched) {
				return st, fmt.Errorf("core answered entries of %s after %d that are not %d, %d, …", account, st.SyncedSeq, st.SyncedSeq+1, st.SyncedSeq+2)
			}
			if len(batch) == 0 {
				if len(entries) > 0 {
					return st, fmt.Errorf("core has no entry %s/%d that an event announced", account, st.SyncedSeq+1)
				}
				return c.reachedHead(ctx, account, first, st)
			}
		}
		before := st.SyncedSeq
		st, err = c.store.Apply(ctx, account, batch, c.now())
		if err == nil {
			c.noteApplied(st.SyncedSeq - before)
		}
		switch {
		case errors.Is(err, ErrSeqConflict):
			if attempt++; attempt >= applyAttemptsMax {
				return st, fmt.Errorf("apply %s: synced seq keeps moving: %w", account, err)
			}
		case err != nil:
			return st, fmt.Errorf("apply %d entries to %s: %w", len(batch), account, err)
		}
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

// after drops entries at or below seq.
func after(entries []banksync.Entry, seq int64) []banksync.Entry {
	for len(entries) > 0 && entries[0].Seq <= seq {
		entries = entries[1:]
	}
	return entries
}

// contiguousFrom returns the longest prefix of entries numbered next,
// next+1, …
func contiguousFrom(entries []banksync.Entry, next int64) []banksync.Entry {
	n := 0
	for n < len(entries) && entries[n].Seq == next+int64(n) {
		n++
	}
	return entries[:n]
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
