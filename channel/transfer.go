package channel

import (
	"context"
	"errors"
	"fmt"
	"time"

	"banksync"
)

// SubmitRequest is a customer's transfer request.
type SubmitRequest struct {
	Customer       string
	IdempotencyKey string
	FromAccount    string
	ToAccount      string
	Amount         int64
	Memo           string
}

// ValidIdempotencyKey reports whether key is an acceptable Idempotency-Key.
func ValidIdempotencyKey(key string) bool {
	if len(key) == 0 || len(key) > idempotencyKeyLengthMax {
		return false
	}
	for i := 0; i < len(key); i++ {
		b := key[i]
		if b <= 0x20 || b >= 0x7f || b == '"' || b == '\\' {
			return false
		}
	}
	return true
}

// Submit takes a transfer: it is stored as pending before core is called,
// so a retry can never make a second one; then core is asked within the
// deadline. It returns the transfer in its state now: completed, failed (a
// coded EFAILED error carries core's reason) or, when core did not answer
// in time, pending — the reconciler settles it later.
func (c *Channel) Submit(ctx context.Context, req SubmitRequest) (Transfer, error) {
	req, err := c.check(req)
	if err != nil {
		return Transfer{}, err
	}
	if _, err := c.authorize(ctx, req.Customer, req.FromAccount); err != nil {
		return Transfer{}, err
	}
	start := time.Now()
	now := c.now()
	t := Transfer{
		ID: newTransferID(), Customer: req.Customer, IdempotencyKey: req.IdempotencyKey,
		BodyHash: hashOf(req.FromAccount, req.ToAccount, req.Amount, req.Memo), FromAccount: req.FromAccount,
		ToAccount: req.ToAccount, Amount: req.Amount, Memo: req.Memo, State: StatePending,
		Deadline: now.Add(c.cfg.Deadline), CreatedAt: now,
	}
	// Bounded like every history call of a request: a hung database
	// answers the customer with an error rather than holding them. A row
	// written as the bound ran out is still pending: the same key finds
	// it, and the reconciler fences it.
	sctx, cancel := c.storeCall(ctx)
	existing, created, err := c.store.CreateTransfer(sctx, t)
	cancel()
	switch {
	case errors.Is(err, ErrInProgress) && c.cfg.Unsafe.NoInFlightRefusal:
		return c.untracked(ctx, t)
	case errors.Is(err, ErrInProgress):
		c.cfg.Observer.Submitted(OutcomeRefused, time.Since(start))
		c.cfg.Logger.InfoContext(ctx, "transfer refused", "account", req.FromAccount, "reason", "account has a transfer in progress")
		return Transfer{}, banksync.Errorf(banksync.EINPROGRESS, "account %s has a transfer in progress; wait for it to finish", req.FromAccount)
	case err != nil:
		return Transfer{}, fmt.Errorf("store transfer: %w", err)
	case !created && existing.BodyHash != t.BodyHash:
		return Transfer{}, banksync.Errorf(banksync.EIDEMPOTENCY, "Idempotency-Key was used for another transfer")
	case !created:
		return existing, failedError(existing)
	}
	c.cfg.Logger.InfoContext(ctx, "transfer pending", "transfer_id", t.ID, "customer", t.Customer, "from", t.FromAccount, "to", t.ToAccount, "amount", t.Amount)

	out, err := c.askCore(ctx, t)
	if err != nil {
		// Lost request, lost answer or a slow core: the outcome is unknown
		// until the deadline passes and the reconciler fences it.
		c.cfg.Logger.WarnContext(ctx, "core did not answer; transfer stays pending", "transfer_id", t.ID, "err", err)
		c.cfg.Observer.Submitted(OutcomePending, time.Since(start))
		return t, nil
	}
	// Core has decided: record it even if the customer has gone, or the
	// account stays blocked until the reconciler fences it after the
	// deadline. WithoutCancel drops the request's deadline too; settle
	// bounds each of its calls itself.
	settled, _, err := c.settle(context.WithoutCancel(ctx), t, out)
	if err != nil {
		c.cfg.Observer.Submitted(OutcomePending, time.Since(start))
		return t, nil // still pending in the store; the reconciler will settle it
	}
	c.cfg.Observer.Submitted(settled.State, time.Since(start)) // completed or failed
	return settled, failedError(settled)
}

// askCore sends the pending transfer t to core within the core timeout. A
// request core refuses outright (a 4xx) is fenced at once rather than left
// to block the account until the deadline; the fence answers whatever core
// decided, should a copy of the request have run after all. An error is an
// outcome still unknown.
func (c *Channel) askCore(ctx context.Context, t Transfer) (banksync.TransferOutcome, error) {
	cctx, cancel := c.coreCall(ctx)
	out, err := c.core.Transfer(cctx, banksync.TransferRequest{TransferID: t.ID, FromAccount: t.FromAccount,
		ToAccount: t.ToAccount, Amount: t.Amount, Deadline: t.Deadline, Memo: t.Memo})
	cancel()
	if err == nil || errIsUnavailable(err) {
		return out, err
	}
	c.cfg.Logger.WarnContext(ctx, "core refused the transfer; fencing it", "transfer_id", t.ID, "err", err)
	cctx, cancel = c.coreCall(context.WithoutCancel(ctx))
	defer cancel()
	return c.core.Fence(cctx, t.ID)
}

// untracked sends t to core without recording it: what the in-flight
// refusal exists to prevent (Unsafe.NoInFlightRefusal only).
func (c *Channel) untracked(ctx context.Context, t Transfer) (Transfer, error) {
	cctx, cancel := c.coreCall(ctx)
	out, err := c.core.Transfer(cctx, banksync.TransferRequest{TransferID: t.ID, FromAccount: t.FromAccount,
		ToAccount: t.ToAccount, Amount: t.Amount, Deadline: t.Deadline, Memo: t.Memo})
	cancel()
	if err != nil {
		return t, nil
	}
	if out.Status == banksync.StatusCompleted {
		t.State = StateCompleted
	} else {
		t.State, t.Reason = StateFailed, out.Reason
	}
	return t, failedError(t)
}

// check checks a transfer request and returns it with its memo in NFC, so
// the memo is hashed for the Idempotency-Key, stored and sent to core in
// one form however the customer's keyboard composed it.
func (c *Channel) check(req SubmitRequest) (SubmitRequest, error) {
	switch {
	case !ValidIdempotencyKey(req.IdempotencyKey):
		return req, banksync.Errorf(banksync.EINVALID, "Idempotency-Key must be 1-%d visible ASCII characters", idempotencyKeyLengthMax)
	case !banksync.ValidID(req.FromAccount) || !banksync.ValidID(req.ToAccount):
		return req, banksync.Errorf(banksync.EINVALID, "from_account and to_account must be 1-64 letters, digits or ._:-")
	case req.FromAccount == req.ToAccount:
		return req, banksync.Errorf(banksync.ESAMEACCOUNT, "from_account and to_account are the same")
	}
	if err := banksync.ValidateAmount(req.Amount, c.cfg.AmountMax); err != nil {
		return req, err
	}
	var err error
	if req.Memo, err = banksync.NormalizeMemo(req.Memo); err != nil {
		return req, err
	}
	return req, nil
}

// failedError is the coded error a failed transfer answers with.
func failedError(t Transfer) error {
	if t.State != StateFailed {
		return nil
	}
	return banksync.Errorf(banksync.EFAILED, "transfer failed: %s", t.Reason)
}

// settle records core's decision on t. A completed transfer's entries go
// through the sync engine first, so by the time the customer sees
// "completed" the history shows it (if the history store fails, the account
// is marked stale and repaired on the next read). changed is false when
// another caller (a replica's reconciler, a slow Submit) settled t first;
// the settlement is logged once, by the one that changed it. Each entry's
// Apply and the Settle are bounded (syncCall, storeCall), so a history
// database that hangs holds a settlement for one sync, the stale mark the
// sync engine then writes, and one store call; the transfer then stays
// pending for the reconciler.
func (c *Channel) settle(ctx context.Context, t Transfer, out banksync.TransferOutcome) (settled Transfer, changed bool, err error) {
	var state, reason string
	switch out.Status {
	case banksync.StatusCompleted:
		state = StateCompleted
		for _, e := range out.Entries {
			actx, cancel := c.syncCall(ctx)
			_, err := c.Apply(actx, e.AccountID, []banksync.Entry{e})
			cancel()
			if err != nil {
				c.cfg.Logger.WarnContext(ctx, "applying a completed transfer's entry failed", "transfer_id", t.ID, "account", e.AccountID, "err", err)
			}
			if errIsUnavailable(err) {
				// The history database or core is down or slow: the other
				// entries come through the consumer, and recording the
				// decision matters more than waiting for them.
				break
			}
		}
	case banksync.StatusRejected:
		state, reason = StateFailed, out.Reason
	default:
		// "unknown" is only ever a read-only answer; a fence never gives it.
		return t, false, fmt.Errorf("settle %s: core answered status %q", t.ID, out.Status)
	}
	sctx, cancel := c.storeCall(ctx)
	settled, changed, err = c.store.Settle(sctx, t.ID, state, reason, c.now())
	cancel()
	if err != nil {
		c.cfg.Logger.ErrorContext(ctx, "settling transfer failed", "transfer_id", t.ID, "state", state, "err", err)
		return t, false, fmt.Errorf("settle %s: %w", t.ID, err)
	}
	if changed {
		c.cfg.Logger.InfoContext(ctx, "transfer settled", "transfer_id", t.ID, "account", t.FromAccount, "state", settled.State, "reason", settled.Reason)
	}
	return settled, changed, nil
}

// Transfer returns a customer's transfer; another customer's is not found.
func (c *Channel) Transfer(ctx context.Context, customer, id string) (Transfer, error) {
	if !banksync.ValidID(id) {
		return Transfer{}, banksync.Errorf(banksync.ENOTFOUND, "transfer not found")
	}
	t, ok, err := c.store.Transfer(ctx, id)
	if err != nil {
		return t, fmt.Errorf("read transfer: %w", err)
	}
	if !ok || t.Customer != customer {
		return Transfer{}, banksync.Errorf(banksync.ENOTFOUND, "transfer not found")
	}
	return t, nil
}

// Reconcile settles pending transfers whose deadline (plus the grace) has
// passed: each is fenced at core, which answers its final decision — an id
// core never saw is recorded there as rejected/fenced, so it can never run
// later (P3). It returns how many it settled; transfers core cannot be
// reached for stay pending for the next round. Then it repairs stale
// accounts. The round runs under one deadline, roundTimeout, and each call
// in it under its own bound, so that neither core nor the history database
// can hold it by hanging.
func (c *Channel) Reconcile(ctx context.Context) (int, error) {
	ctx, endRound := context.WithTimeout(ctx, c.roundTimeout())
	defer endRound()
	lctx, cancel := c.storeCall(ctx)
	due, err := c.store.PendingBefore(lctx, c.now().Add(-c.cfg.ReconcileGrace), reconcileBatchMax)
	cancel()
	if err != nil {
		return 0, fmt.Errorf("list pending transfers: %w", err)
	}
	settled := 0
	var errs []error
	for _, t := range due {
		if c.cfg.Unsafe.NoFence {
			// The seed's way: past the deadline, a transfer without an
			// answer is failed, trusting core to refuse it by its clock.
			if st, changed, err := c.settle(ctx, t, banksync.TransferOutcome{Status: banksync.StatusRejected, Reason: "timeout"}); err == nil && changed {
				c.decide(ctx, Decision{Action: DecisionFenced, TransferID: t.ID, AccountID: t.FromAccount, Outcome: st.State, Detail: "by the channel's clock, without fencing"})
				settled++
			}
			continue
		}
		cctx, cancel := c.coreCall(ctx)
		out, err := c.core.Fence(cctx, t.ID)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("fence %s: %w", t.ID, err))
			if errIsUnavailable(err) {
				break // core is down or slow: the next round tries again
			}
			continue
		}
		st, changed, err := c.settle(ctx, t, out)
		if err != nil {
			errs = append(errs, err)
			if errIsUnavailable(err) {
				break // the history database is down or slow (or the round is over): the next round tries again
			}
			continue
		}
		if !changed {
			continue // settled meanwhile by another replica or the request itself: its decision, not ours
		}
		c.decide(ctx, Decision{Action: DecisionFenced, TransferID: t.ID, AccountID: t.FromAccount, Outcome: st.State, Detail: fenceDetail(out)})
		settled++
	}
	return settled, errors.Join(append(errs, c.repairStale(ctx))...)
}

// repairStale syncs accounts marked stale with core, stale longest first,
// so a history left behind (a dead-lettered event, a failed write) catches
// up within a reconcile round or so even if nobody reads it.
func (c *Channel) repairStale(ctx context.Context) error {
	lctx, cancel := c.storeCall(ctx)
	ids, err := c.store.StaleAccounts(lctx, staleRepairMax)
	cancel()
	if err != nil {
		return fmt.Errorf("list stale accounts: %w", err)
	}
	for _, id := range ids {
		sctx, cancel := c.syncCall(ctx)
		st, err := c.Sync(sctx, id)
		cancel()
		if err != nil {
			c.decide(ctx, Decision{Action: DecisionRepairFailed, AccountID: id, Detail: err.Error()})
			if errIsUnavailable(err) {
				return fmt.Errorf("repair stale %s: %w", id, err) // core or the history database is down or slow: next round
			}
			continue
		}
		c.decide(ctx, Decision{Action: DecisionRepaired, AccountID: id, Detail: fmt.Sprintf("history synced through seq %d", st.SyncedSeq)})
	}
	return nil
}

// fenceDetail says in words what core answered a fence with.
func fenceDetail(out banksync.TransferOutcome) string {
	if out.Reason == "" {
		return "core: " + out.Status
	}
	return "core: " + out.Status + " (" + out.Reason + ")"
}

// RunReconciler reconciles every ReconcileInterval until ctx is done. Its
// ctx lives as long as the process; each round bounds itself (Reconcile).
func (c *Channel) RunReconciler(ctx context.Context) error {
	tick := time.NewTicker(c.cfg.ReconcileInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if _, err := c.Reconcile(ctx); err != nil && ctx.Err() == nil {
			c.cfg.Logger.WarnContext(ctx, "reconcile round incomplete", "err", err)
		}
	}
}
