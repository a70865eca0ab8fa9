package ledger

import (
	"context"
	"errors"
	"time"

	"banksync"
)

// Store is the ledger's durable state. The ledger is its only writer: one
// goroutine calls Commit, one batch at a time, so a store need not guard
// against concurrent writers of its own; it must make each Commit atomic.
//
// Reads that find nothing return (zero, false, nil) or an empty slice; errors
// are reserved for failures of the store itself.
type Store interface {
	// LastPosition returns the highest entry position committed, 0 if none.
	LastPosition(ctx context.Context) (int64, error)

	// Accounts returns those of ids that exist, in any order.
	Accounts(ctx context.Context, ids []string) ([]banksync.Account, error)
	// AccountsOf returns up to limit accounts of owner, ordered by id.
	AccountsOf(ctx context.Context, owner string, limit int) ([]banksync.Account, error)
	// Transfers returns the recorded decisions for those of ids that exist.
	Transfers(ctx context.Context, ids []string) ([]TransferRecord, error)
	// Deposits returns the recorded deposits for those of refs that exist.
	Deposits(ctx context.Context, refs []string) ([]DepositRecord, error)

	// Commit writes a batch in one transaction: all of it or none of it.
	// When a transfer id or deposit ref of the batch is already recorded it
	// writes nothing and returns an error wrapping ErrDuplicate.
	Commit(ctx context.Context, b *Batch) error

	// Entries returns up to limit entries of account with seq > afterSeq,
	// ascending by seq.
	Entries(ctx context.Context, account string, afterSeq int64, limit int) ([]banksync.Entry, error)
	// Entry returns the entry of account with the given seq.
	Entry(ctx context.Context, account string, seq int64) (banksync.Entry, bool, error)
	// EntriesAfter returns up to limit entries with position > after, ascending
	// by position: the outbox the relay publishes.
	EntriesAfter(ctx context.Context, after int64, limit int) ([]banksync.Entry, error)

	// RelayPosition returns the position of the last entry the relay has
	// published, 0 if none.
	RelayPosition(ctx context.Context) (int64, error)
	// SetRelayPosition records that every entry up to position is published.
	SetRelayPosition(ctx context.Context, position int64) error

	// Totals returns the sum of all balances, the sum of all deposits and the
	// number of accounts with a negative balance: the conservation check.
	Totals(ctx context.Context) (Totals, error)

	Close() error
}

// ErrDuplicate reports that a batch recorded a transfer id or deposit ref a
// second time. The writer decides batches without reading those records
// first and lets the store's keys catch the rare repeat; it then reloads
// them and decides the batch again.
var ErrDuplicate = errors.New("transfer id or deposit ref already recorded")

// Totals is the money check of promise P6.
type Totals struct {
	Balances         int64
	Deposits         int64
	NegativeAccounts int64
}

// Batch is everything one group commit writes.
type Batch struct {
	NewAccounts []banksync.Account
	// Accounts are the final balance and last seq of every existing account
	// the batch touched (new accounts carry theirs in NewAccounts).
	Accounts  []banksync.Account
	Entries   []banksync.Entry // ascending by position
	Transfers []TransferRecord // new decisions
	Deposits  []DepositRecord  // new deposits
}

// TransferRecord is core's recorded decision on a transfer id. A fenced record
// of an id core had never seen has an empty BodyHash: it answers any body.
type TransferRecord struct {
	ID          string
	BodyHash    string
	Status      string // banksync.StatusCompleted or banksync.StatusRejected
	Reason      string
	FromAccount string
	ToAccount   string
	Amount      int64
	FromSeq     int64 // seq of the debit entry when completed, else 0
	ToSeq       int64 // seq of the credit entry when completed, else 0
	DecidedAt   time.Time
}

// DepositRecord is a deposit from another bank, keyed by its external ref.
type DepositRecord struct {
	ExternalRef string
	BodyHash    string
	AccountID   string
	Amount      int64
	Seq         int64
	BookedAt    time.Time
}
