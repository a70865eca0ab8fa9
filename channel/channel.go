package channel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strconv"
	"time"

	"github.com/google/uuid"

	"banksync"
)

// Defaults and limits.
const (
	DeadlineDefault          = 10 * time.Second
	CoreTimeoutDefault       = 3 * time.Second
	storeTimeoutDefault      = 3 * time.Second
	ReconcileIntervalDefault = 2 * time.Second
	ReconcileGraceDefault    = time.Second
	readSyncTimeoutDefault   = 500 * time.Millisecond
	reconcileBatchMax        = 500
	staleRepairMax           = 100  // stale accounts one reconcile round syncs at most
	entriesPageMax           = 1000 // entries asked of core per call
	applyAttemptsMax         = 8
	syncPagesMax             = 1000 // pages one Sync reads at most (a million entries)
	lockStripes              = 1024
	idempotencyKeyLengthMax  = 128
)

// Config tunes a Channel. Zero values take the defaults.
type Config struct {
	AmountMax         int64         // largest transfer, as core's
	Deadline          time.Duration // how long core may take to execute a transfer
	CoreTimeout       time.Duration // how long a submit waits for core before answering pending
	StoreTimeout      time.Duration // how long one history-database call of a settlement or the reconciler may take
	ReconcileInterval time.Duration // how often pending transfers past their deadline are settled
	ReconcileGrace    time.Duration // extra wait after a deadline before fencing
	ReadSyncTimeout   time.Duration // how long a history read may spend syncing first
	HistoryScanMax    int           // entries a filtered history page examines at most
	Now               func() time.Time
	Logger            *slog.Logger
	Observer          Observer // told what the channel does, for metrics; nil observes nothing

	// Unsafe switches protections off. It exists only so that the chaos
	// checker's own tests can show it catches each broken promise; nothing
	// else may set it.
	Unsafe Unsafe
}

// Unsafe names the protections a chaos test can switch off, one at a time.
type Unsafe struct {
	// NoFence: the reconciler decides "failed" by its own clock, as the
	// seed did, instead of fencing at core (P3 then breaks).
	NoFence bool
	// NoInFlightRefusal: a second transfer while one is pending goes
	// straight to core instead of being refused (P1 then breaks).
	NoInFlightRefusal bool
	// OutOfOrder: ApplyBatch's group commit appends a run even past a hole
	// in the history (Run.UnsafePastHole; P4 and P5 then break). Apply and
	// Sync still apply in order.
	OutOfOrder bool
}

// Observer is told what the channel does, for metrics. Its methods must be
// quick and safe for concurrent use.
type Observer interface {
	// Submitted: Submit answered a new transfer attempt — outcome is
	// completed, failed, pending or refused (one already pending) — after
	// took.
	Submitted(outcome string, took time.Duration)
	// Applied: entries were written to the history.
	Applied(entries int)
	// GapFilled: the sync engine read entries from core to fill a hole or
	// reach core's head.
	GapFilled(entries int)
	// Decided: the reconciler decided d.
	Decided(d Decision)
}

// Submit outcomes an Observer is told of.
const (
	OutcomeCompleted = "completed"
	OutcomeFailed    = "failed"
	OutcomePending   = "pending"
	OutcomeRefused   = "refused"
)

type nopObserver struct{}

func (nopObserver) Submitted(string, time.Duration) {}
func (nopObserver) Applied(int)                     {}
func (nopObserver) GapFilled(int)                   {}
func (nopObserver) Decided(Decision)                {}

func (c *Config) setDefaults() {
	if c.AmountMax <= 0 {
		c.AmountMax = banksync.AmountMaxDefault
	}
	if c.Deadline <= 0 {
		c.Deadline = DeadlineDefault
	}
	if c.CoreTimeout <= 0 {
		c.CoreTimeout = CoreTimeoutDefault
	}
	if c.StoreTimeout <= 0 {
		c.StoreTimeout = storeTimeoutDefault
	}
	if c.ReconcileInterval <= 0 {
		c.ReconcileInterval = ReconcileIntervalDefault
	}
	if c.ReconcileGrace <= 0 {
		c.ReconcileGrace = ReconcileGraceDefault
	}
	if c.ReadSyncTimeout <= 0 {
		c.ReadSyncTimeout = readSyncTimeoutDefault
	}
	if c.HistoryScanMax <= 0 {
		c.HistoryScanMax = HistoryScanMaxDefault
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
}

// Channel is the transfer server's domain: transfers, the reconciler, the
// one sync engine and history reads. It is safe for concurrent use, and
// several Channels (processes) may share one Store.
type Channel struct {
	store Store
	core  Core
	cfg   Config

	seed  maphash.Seed
	locks [lockStripes]chan struct{} // serialise syncs of one account in this process

	batchState // ApplyBatch's group commit (batch.go)

	applied   meter       // history entries written, for the operations view
	decisions decisionLog // the reconciler's recent decisions

	live   live        // the open live streams (live.go)
	traces entryTraces // applied entries' traces, for their live push (live.go)
}

// New returns a Channel over store and core.
func New(store Store, core Core, cfg Config) *Channel {
	cfg.setDefaults()
	c := &Channel{store: store, core: core, cfg: cfg, seed: maphash.MakeSeed(), live: newLive(store, cfg.Logger)}
	for i := range c.locks {
		c.locks[i] = make(chan struct{}, 1)
	}
	return c
}

// lock takes the account's lock, or gives up when ctx is done: a read that
// may wait only so long must not queue behind a slow sync.
func (c *Channel) lock(ctx context.Context, account string) (unlock func(), err error) {
	m := c.locks[maphash.String(c.seed, account)%lockStripes]
	select {
	case m <- struct{}{}:
		return func() { <-m }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for %s's sync lock: %w", account, ctx.Err())
	}
}

// coreCall bounds one call to core by CoreTimeout, even on a context
// without a deadline.
func (c *Channel) coreCall(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.CoreTimeout)
}

// storeCall bounds one history-database call by StoreTimeout, even on a
// context without a deadline: a database that hangs (a PostgreSQL behind a
// dead network path blocks until the context ends) must not hold a
// settlement or a reconcile round forever.
func (c *Channel) storeCall(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.StoreTimeout)
}

// syncCall bounds one Apply or Sync of a settlement or the reconciler's
// repair: a page read from core and its writes to the history. A sync cut
// short keeps what it wrote and leaves the account marked stale, for the
// next round to carry on.
func (c *Channel) syncCall(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.CoreTimeout+c.cfg.StoreTimeout)
}

// roundTimeout bounds one reconcile round: about when the next one is due,
// plus room for a call to core and one to the history database already
// under way. Each call in a round is bounded, but 500 fences and 100
// repairs of bounded calls still add up; a round cut short leaves the rest
// to the next, which starts at once.
func (c *Channel) roundTimeout() time.Duration {
	return c.cfg.ReconcileInterval + c.cfg.CoreTimeout + c.cfg.StoreTimeout
}

func (c *Channel) now() time.Time { return banksync.Timestamp(c.cfg.Now()) }

// authorize returns the account's state if customer owns it. Another
// customer's account is answered exactly like a missing one.
func (c *Channel) authorize(ctx context.Context, customer, account string) (AccountState, error) {
	notFound := banksync.Errorf(banksync.ENOTFOUND, "account not found")
	if !banksync.ValidID(account) {
		return AccountState{}, notFound
	}
	st, ok, err := c.account(ctx, account)
	if err != nil {
		return st, fmt.Errorf("read account: %w", err)
	}
	if !ok || st.Owner == "" {
		// Core is the source of truth for ownership; learn it once.
		cctx, cancel := c.coreCall(ctx)
		a, err := c.core.Account(cctx, account)
		cancel()
		switch {
		case banksync.ErrorCode(err) == banksync.ENOTFOUND:
			return st, notFound
		case err != nil:
			return st, err
		}
		sctx, cancel := c.storeCall(ctx)
		err = c.store.AddAccount(sctx, account, a.Owner)
		cancel()
		if err != nil {
			return st, fmt.Errorf("add account: %w", err)
		}
		if st, _, err = c.account(ctx, account); err != nil {
			return st, fmt.Errorf("read account: %w", err)
		}
	}
	if st.Owner != customer {
		return AccountState{}, notFound
	}
	return st, nil
}

// account reads an account's state, bounded by StoreTimeout: a request
// waits no longer than that on a hung database.
func (c *Channel) account(ctx context.Context, id string) (AccountState, bool, error) {
	ctx, cancel := c.storeCall(ctx)
	defer cancel()
	return c.store.Account(ctx, id)
}

// Accounts returns the customer's accounts. Core is asked for the list (so
// new accounts appear), and accounts core has entries for that the channel
// has not applied are synced first; if core cannot answer in time, the
// known accounts are listed as they are.
func (c *Channel) Accounts(ctx context.Context, customer string) ([]AccountState, error) {
	// One bound for the whole read: listing at core and syncing accounts
	// core says are ahead of the channel.
	rctx, cancel := context.WithTimeout(ctx, c.cfg.ReadSyncTimeout)
	defer cancel()
	accts, err := c.core.AccountsOf(rctx, customer)
	if err != nil {
		c.cfg.Logger.WarnContext(ctx, "listing accounts from core failed; answering with known accounts", "customer", customer, "err", err)
	}
	for _, a := range accts {
		if err := c.store.AddAccount(ctx, a.ID, a.Owner); err != nil {
			return nil, fmt.Errorf("add account: %w", err)
		}
		st, _, err := c.store.Account(ctx, a.ID)
		if err != nil {
			return nil, fmt.Errorf("read account: %w", err)
		}
		if st.SyncedSeq < a.LastSeq {
			c.Sync(rctx, a.ID) // on failure the account is marked stale, and listed so
		}
	}
	return c.store.AccountsOf(ctx, customer)
}

// hashOf fingerprints a transfer body for the idempotency check.
func hashOf(from, to string, amount int64, memo string) string {
	h := sha256.New()
	for _, f := range []string{from, to, strconv.FormatInt(amount, 10), memo} {
		h.Write([]byte(strconv.Itoa(len(f))))
		h.Write([]byte{':'})
		h.Write([]byte(f))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// newTransferID returns a time-ordered id (UUIDv7), so core's transfers
// index grows at its right edge.
func newTransferID() string { return uuid.Must(uuid.NewV7()).String() }

// errIsUnavailable reports whether err means "may have happened, unknown".
func errIsUnavailable(err error) bool {
	return banksync.ErrorCode(err) == banksync.EUNAVAILABLE || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}
