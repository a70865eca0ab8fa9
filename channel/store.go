package channel

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"banksync"
)

// Transfer states on the channel. A transfer is pending from the moment it
// is stored (before core is called) until core's decision is known.
const (
	StatePending   = "pending"
	StateCompleted = "completed"
	StateFailed    = "failed"
)

// Transfer is a customer's transfer as the channel tracks it. ID is the
// transfer id sent to core (time-ordered); IdempotencyKey is the customer's.
type Transfer struct {
	ID             string    `json:"transfer_id"`
	Customer       string    `json:"-"`
	IdempotencyKey string    `json:"-"`
	BodyHash       string    `json:"-"`
	FromAccount    string    `json:"from_account"`
	ToAccount      string    `json:"to_account"`
	Amount         int64     `json:"amount"`
	Memo           string    `json:"memo"`
	State          string    `json:"state"`
	Reason         string    `json:"reason,omitempty"`
	Deadline       time.Time `json:"deadline"`
	CreatedAt      time.Time `json:"created_at"`
	SettledAt      time.Time `json:"settled_at,omitzero"`
}

// AccountState is what the channel holds about an account: its owner and
// how far its history is synced with core. Balance is the balance_after of
// the last applied entry: always a balance core really had (P5).
type AccountState struct {
	ID         string    `json:"account_id"`
	Owner      string    `json:"-"`
	SyncedSeq  int64     `json:"synced_through_seq"`
	Balance    int64     `json:"balance"`
	Stale      bool      `json:"stale"`
	SyncedAt   time.Time `json:"synced_at,omitzero"`
	StaleSince time.Time `json:"-"`
	StaleGen   int64     `json:"-"` // counts MarkStale calls
}

// Store errors.
var (
	// ErrInProgress: the source account already has a pending transfer.
	ErrInProgress = errors.New("source account has a pending transfer")
	// ErrSeqConflict: the account's synced seq moved under an Apply (another
	// applier got there first); re-read and try again.
	ErrSeqConflict = errors.New("account synced seq moved")
)

// Store is the channel's database: transfers, per-account sync state, and
// history rows keyed by (account, seq). Several channel processes may share
// one store, so every write that depends on what it read is conditional.
type Store interface {
	// Account returns the sync state of an account the channel knows.
	Account(ctx context.Context, id string) (AccountState, bool, error)
	// AccountsOf returns the accounts of an owner, by id.
	AccountsOf(ctx context.Context, owner string) ([]AccountState, error)
	// AddAccount records an account's owner as core says: it adds the row if
	// missing and fills the owner of a row Apply created without one.
	AddAccount(ctx context.Context, id, owner string) error

	// CreateTransfer stores t as pending. If the customer already used
	// t.IdempotencyKey it stores nothing and returns the existing transfer
	// with created=false; if t.FromAccount has a pending transfer it returns
	// ErrInProgress.
	CreateTransfer(ctx context.Context, t Transfer) (existing Transfer, created bool, err error)
	// Transfer returns a transfer by id.
	Transfer(ctx context.Context, id string) (Transfer, bool, error)
	// Settle moves a pending transfer to completed or failed and reports
	// changed; settling one that is no longer pending changes nothing and
	// returns its current row with changed false (another replica settled
	// it first).
	Settle(ctx context.Context, id, state, reason string, at time.Time) (t Transfer, changed bool, err error)
	// PendingBefore returns up to limit pending transfers whose deadline is
	// before t, oldest deadline first.
	PendingBefore(ctx context.Context, t time.Time, limit int) ([]Transfer, error)
	// PendingOf returns the pending transfers from an account.
	PendingOf(ctx context.Context, account string) ([]Transfer, error)

	// Apply appends entries to an account's history in one transaction:
	// entries must be the account's, contiguous, and start at the stored
	// synced seq + 1 (an account not yet known starts at 0 and is added
	// without an owner), else it writes nothing and returns ErrSeqConflict.
	// It leaves the stale flag alone (applying some entries does not prove
	// the missing ones arrived) and returns the new state.
	Apply(ctx context.Context, account string, entries []banksync.Entry, at time.Time) (AccountState, error)
	// ApplyRuns is Apply for the runs of many accounts in one transaction:
	// the consumer's batch. Runs must be of distinct accounts, each a run as
	// Apply takes. Entries at or below an account's synced seq are skipped
	// as repeats; a run whose remaining entries do not start at synced
	// seq + 1 is left out and reported as a Gap, and the others are applied.
	// An error means nothing was written.
	ApplyRuns(ctx context.Context, runs []Run, at time.Time) ([]RunResult, error)
	// MarkStale flags an account whose history may be behind core's and
	// counts the mark in StaleGen.
	MarkStale(ctx context.Context, account string, at time.Time) error
	// StaleAccounts returns up to limit stale accounts, stale longest first.
	StaleAccounts(ctx context.Context, limit int) ([]string, error)
	// Backlog counts what is waiting, in one read: for the metrics.
	Backlog(ctx context.Context) (Backlog, error)
	// ClearStale clears the flag if StaleGen still equals gen: a sync that
	// read gen and then reached core's head, with no failure marked since.
	ClearStale(ctx context.Context, account string, gen int64) error
	// History returns up to limit entries with seq < beforeSeq, newest
	// first (keyset, never OFFSET).
	History(ctx context.Context, account string, beforeSeq int64, limit int) ([]banksync.Entry, error)

	Close() error
}

// Core is what the channel asks of core banking. Implementations return
// banksync errors with EUNAVAILABLE for anything that may have gone either
// way (timeouts, lost responses): the caller then treats the transfer as
// pending, never as failed.
type Core interface {
	Transfer(ctx context.Context, req banksync.TransferRequest) (banksync.TransferOutcome, error)
	Fence(ctx context.Context, id string) (banksync.TransferOutcome, error)
	Entries(ctx context.Context, account string, afterSeq int64, limit int) ([]banksync.Entry, error)
	Account(ctx context.Context, id string) (banksync.Account, error)
	AccountsOf(ctx context.Context, owner string) ([]banksync.Account, error)
}

// Run is entries of one account to apply: the account's, in a run of
// consecutive seqs.
type Run struct {
	Account string
	Entries []banksync.Entry
}

// RunResult is what Store.ApplyRuns did with one run.
type RunResult struct {
	// State is the account after the call; for a Gap on an account the
	// store does not know, only ID is set.
	State AccountState
	// Gap: nothing was written, because the run's entries past the synced
	// seq do not start at synced seq + 1. The hole is core's to fill.
	Gap bool
	// Appended is how many entries the call wrote (repeats are skipped).
	Appended int
}

// CheckRuns refuses, with ErrSeqConflict, runs that Store.ApplyRuns must not
// write: one that is not a run (CheckRun), or two of one account.
func CheckRuns(runs []Run) error {
	seen := make(map[string]bool, len(runs))
	for _, r := range runs {
		if seen[r.Account] {
			return fmt.Errorf("%w: two runs of %s", ErrSeqConflict, r.Account)
		}
		seen[r.Account] = true
		if err := CheckRun(r.Account, r.Entries); err != nil {
			return err
		}
	}
	return nil
}

// unsafeOutOfOrder makes PlanRuns apply a run past a hole; see
// UnsafeOutOfOrder.
var unsafeOutOfOrder atomic.Bool

// UnsafeOutOfOrder switches in-order application off for the whole process:
// a batch's entries are written even past a hole in the history (P4 and P5
// then break). It exists only so that the chaos checker's own tests can show
// they catch that; nothing else may call it.
func UnsafeOutOfOrder(on bool) { unsafeOutOfOrder.Store(on) }

// PlanRuns decides what Store.ApplyRuns does with runs, given the stored
// states of their accounts (known; an account missing starts at seq 0):
// the result of each run and the entries to append for it — none for a run
// of repeats or a Gap.
func PlanRuns(known map[string]AccountState, runs []Run, at time.Time) (results []RunResult, appends [][]banksync.Entry) {
	results, appends = make([]RunResult, len(runs)), make([][]banksync.Entry, len(runs))
	for i, r := range runs {
		st, ok := known[r.Account]
		if !ok {
			st = AccountState{ID: r.Account}
		}
		entries := after(r.Entries, st.SyncedSeq)
		switch {
		case len(entries) == 0:
			results[i] = RunResult{State: st}
		case entries[0].Seq != st.SyncedSeq+1 && !unsafeOutOfOrder.Load():
			results[i] = RunResult{State: st, Gap: true}
		default:
			last := entries[len(entries)-1]
			st.SyncedSeq, st.Balance, st.SyncedAt = last.Seq, last.BalanceAfter, banksync.Timestamp(at)
			results[i], appends[i] = RunResult{State: st, Appended: len(entries)}, entries
		}
	}
	return results, appends
}

// NewPending is t as a store records a new transfer: pending, no reason,
// times at the stores' microsecond precision.
func NewPending(t Transfer) Transfer {
	t.State, t.Reason, t.SettledAt = StatePending, "", time.Time{}
	t.Deadline, t.CreatedAt = banksync.Timestamp(t.Deadline), banksync.Timestamp(t.CreatedAt)
	return t
}

// CheckRun refuses, with ErrSeqConflict, entries that are not all the
// account's in a run of consecutive seqs: the precondition of Store.Apply
// that a store checks before writing anything.
func CheckRun(account string, entries []banksync.Entry) error {
	for i, e := range entries {
		if e.AccountID != account || e.Seq < 1 || (i > 0 && e.Seq != entries[i-1].Seq+1) {
			return fmt.Errorf("%w: entry %d is %s/%d, not the next of a run of %s", ErrSeqConflict, i, e.AccountID, e.Seq, account)
		}
	}
	return nil
}

// Backlog is what is waiting in the channel's store: the pending transfers,
// when the oldest of them was created (zero if none), and the accounts
// marked stale.
type Backlog struct {
	Pending       int64
	OldestPending time.Time
	Stale         int64
}
