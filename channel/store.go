package channel

import (
	"context"
	"errors"
	"fmt"
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
	// ErrMalformedRun: a store was asked to write entries that are not a
	// run (CheckRun), or two runs of one account at once. It is never a
	// conflict to retry: the sync engine builds every run it writes, so it
	// stops loudly on this error (a bug), and a store writes nothing.
	ErrMalformedRun = errors.New("malformed run of entries")
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

	// Apply appends a run the sync engine planned to an account's history
	// in one transaction, as a compare-and-set on the synced seq: it moves
	// synced seq only from entries[0].Seq - 1 (an account not yet known
	// starts at 0 and is added without an owner), else it writes nothing and
	// returns ErrSeqConflict (another applier got there first). Entries that
	// are not a run of the account (CheckRun) are refused with
	// ErrMalformedRun. It leaves the stale flag alone (applying some entries
	// does not prove the missing ones arrived) and returns the new state.
	Apply(ctx context.Context, account string, entries []banksync.Entry, at time.Time) (AccountState, error)
	// ApplyRuns is the group commit: the runs of many accounts in one
	// transaction. It reads their states and leaves it to PlanRuns (the
	// in-order rule) what to write: repeats are skipped, a run past a hole
	// is left out as a Gap, the others are appended. Runs must be of
	// distinct accounts, each a run as CheckRun takes, else it writes
	// nothing and returns ErrMalformedRun. An error means nothing was
	// written.
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
	// Statement returns up to limit entries with afterSeq < seq <= throughSeq
	// booked in [from, to), oldest first: a statement a page at a time.
	Statement(ctx context.Context, account string, afterSeq, throughSeq int64, from, to time.Time, limit int) ([]banksync.Entry, error)
	// SyncedSeqs returns the synced seq of each account among ids that the
	// channel knows.
	SyncedSeqs(ctx context.Context, ids []string) (map[string]int64, error)
	// Changed receives a value after history entries were committed:
	// through this store, and on PostgreSQL through any store on the same
	// database (another replica's). Values coalesce, so one may stand for
	// many commits, and a receiver re-reads what it watches. It has one
	// receiver, the channel's live streams.
	Changed() <-chan struct{}

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
	// UnsafePastHole has the run appended even past a hole in the history
	// (P4 and P5 then break). Only a Channel configured with
	// Unsafe.OutOfOrder sets it, so that the chaos checker's own tests can
	// show they catch that.
	UnsafePastHole bool
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

// CheckRuns refuses, with ErrMalformedRun, runs that Store.ApplyRuns must
// not write: one that is not a run (CheckRun), or two of one account.
func CheckRuns(runs []Run) error {
	seen := make(map[string]bool, len(runs))
	for _, r := range runs {
		if seen[r.Account] {
			return fmt.Errorf("%w: two runs of %s", ErrMalformedRun, r.Account)
		}
		seen[r.Account] = true
		if err := CheckRun(r.Account, r.Entries); err != nil {
			return err
		}
	}
	return nil
}

// NewPending is t as a store records a new transfer: pending, no reason,
// times at the stores' microsecond precision.
func NewPending(t Transfer) Transfer {
	t.State, t.Reason, t.SettledAt = StatePending, "", time.Time{}
	t.Deadline, t.CreatedAt = banksync.Timestamp(t.Deadline), banksync.Timestamp(t.CreatedAt)
	return t
}

// CheckRun refuses, with ErrMalformedRun, entries that are not all the
// account's in a run of consecutive seqs: the shape of what Store.Apply and
// Store.ApplyRuns take, which a store checks before writing anything. Where
// a run may go in the history is PlanRuns's rule, not this.
func CheckRun(account string, entries []banksync.Entry) error {
	for i, e := range entries {
		if e.AccountID != account || e.Seq < 1 || (i > 0 && e.Seq != entries[i-1].Seq+1) {
			return fmt.Errorf("%w: entry %d is %s/%d, not the next of a run of %s", ErrMalformedRun, i, e.AccountID, e.Seq, account)
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
