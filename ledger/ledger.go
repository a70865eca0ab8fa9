// Package ledger is core banking: the source of truth the channel tier syncs
// from. One writer goroutine takes every write request from a bounded queue
// and commits them in batches (group commit), so the commit order is one
// global position and throughput comes from batching, not from locks.
package ledger

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"banksync"
)

// Defaults for Config.
const (
	batchSizeMaxDefault       = 2048
	queueSizeMaxDefault       = 65536
	deadlineHorizonMaxDefault = time.Hour
	accountsCachedMaxDefault  = 1 << 20
	entriesPageMax            = 1000
	accountIDAttemptsMax      = 4

	// AccountsPerOwnerMax bounds the accounts listed for one owner.
	AccountsPerOwnerMax = 100
)

// Config tunes a Ledger. Zero values take the defaults.
type Config struct {
	AmountMax          int64         // largest amount of one transfer or deposit
	BatchSizeMax       int           // requests committed in one transaction at most
	QueueSizeMax       int           // requests waiting for the writer at most
	DeadlineHorizonMax time.Duration // how far in the future a deadline may lie
	AccountsCachedMax  int           // accounts the writer keeps in memory at most
	Now                func() time.Time
	Logger             *slog.Logger
	Observer           Observer // told of each commit, for metrics; nil observes nothing
	// Tracer, set, traces each request from its queueing to its commit;
	// nil traces nothing.
	Tracer trace.Tracer
}

// Observer is told what the writer commits. Its methods must be quick.
type Observer interface {
	// Committed: one transaction of requests, writing entries, took this
	// long (reads included).
	Committed(requests, entries int, took time.Duration)
}

func (c *Config) setDefaults() {
	if c.AmountMax <= 0 {
		c.AmountMax = banksync.AmountMaxDefault
	}
	if c.BatchSizeMax <= 0 {
		c.BatchSizeMax = batchSizeMaxDefault
	}
	if c.QueueSizeMax <= 0 {
		c.QueueSizeMax = queueSizeMaxDefault
	}
	if c.DeadlineHorizonMax <= 0 {
		c.DeadlineHorizonMax = deadlineHorizonMaxDefault
	}
	if c.AccountsCachedMax <= 0 {
		c.AccountsCachedMax = accountsCachedMaxDefault
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Ledger executes deposits and transfers. Reads go straight to the store;
// writes go through the single writer.
type Ledger struct {
	store Store
	cfg   Config

	queue     chan *request
	committed chan struct{} // a token after each commit that wrote entries
	traces    traceParents  // traced requests' entries, for the relay
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	// Owned by the writer goroutine only.
	accounts     map[string]banksync.Account
	lastPosition int64
	recent       recentKeys
}

// Open starts a ledger on store. The caller must ensure no other Ledger
// writes to the same store (the stores take a lock for that).
func Open(ctx context.Context, store Store, cfg Config) (*Ledger, error) {
	cfg.setDefaults()
	last, err := store.LastPosition(ctx)
	if err != nil {
		return nil, fmt.Errorf("open ledger: %w", err)
	}
	l := &Ledger{
		store:        store,
		cfg:          cfg,
		queue:        make(chan *request, cfg.QueueSizeMax),
		committed:    make(chan struct{}, 1),
		stop:         make(chan struct{}),
		done:         make(chan struct{}),
		accounts:     make(map[string]banksync.Account),
		lastPosition: last,
	}
	go l.run()
	return l, nil
}

// Close stops the writer after the batch in progress. Requests still queued
// are answered with EUNAVAILABLE. It does not close the store.
func (l *Ledger) Close() error {
	l.closeOnce.Do(func() { close(l.stop) })
	<-l.done
	return nil
}

// Committed returns a channel that receives a token whenever new entries
// have been committed: the relay's cue to publish.
func (l *Ledger) Committed() <-chan struct{} { return l.committed }

// AmountMax is the largest amount the ledger accepts.
func (l *Ledger) AmountMax() int64 { return l.cfg.AmountMax }

// Store returns the ledger's store, for the relay and for checks.
func (l *Ledger) Store() Store { return l.store }

type requestKind int

const (
	kindCreateAccount requestKind = iota
	kindDeposit
	kindTransfer
	kindFence
)

type request struct {
	kind     requestKind
	account  banksync.Account // kindCreateAccount
	deposit  banksync.DepositRequest
	transfer banksync.TransferRequest
	fenceID  string
	bodyHash string

	result chan result     // buffered: the writer never blocks on a caller
	logCtx context.Context // the caller's, for the attributes its log lines carry
}

type result struct {
	account  banksync.Account
	created  bool
	transfer TransferRecord
	deposit  DepositRecord
	entries  []banksync.Entry // entries this request wrote, if any
	decided  bool             // transfer was decided by this request, not before
	err      error
}

// submit queues r for the writer and waits for its outcome. A caller that
// gives up (ctx done) may leave r executed; the transfer id tells.
func (l *Ledger) submit(ctx context.Context, r *request) result {
	if l.cfg.Tracer != nil {
		var span trace.Span
		ctx, span = l.cfg.Tracer.Start(ctx, "banksync.ledger.commit")
		defer span.End()
	}
	if err := l.enqueue(ctx, r); err != nil {
		return result{err: err}
	}
	return l.wait(ctx, r)
}

// enqueue hands r to the writer without waiting for it, so a caller with
// many requests can queue them all and let them share group commits. A full
// queue refuses at once rather than blocking: the caller retries later.
func (l *Ledger) enqueue(ctx context.Context, r *request) error {
	r.result, r.logCtx = make(chan result, 1), ctx
	select {
	case l.queue <- r:
		return nil
	case <-l.stop:
		return banksync.Errorf(banksync.EUNAVAILABLE, "ledger is shutting down")
	case <-ctx.Done():
		return ctx.Err()
	default:
		return banksync.Errorf(banksync.EUNAVAILABLE, "ledger queue is full")
	}
}

// wait returns the outcome of r, which enqueue has queued, and logs the
// decision it carries. A caller that gives up leaves a goroutine to log
// the decision when it comes, so every decision is logged, and by the
// caller's goroutine, never by the writer, whose pace a slow log must not
// set.
func (l *Ledger) wait(ctx context.Context, r *request) result {
	res, ok := l.receive(ctx, r)
	if !ok {
		go func() {
			if late, ok := l.receive(context.Background(), r); ok {
				l.logDecision(r, late)
			}
		}()
		return result{err: ctx.Err()}
	}
	l.logDecision(r, res)
	return res
}

// receive waits for r's outcome; ok is false if ctx ended first.
func (l *Ledger) receive(ctx context.Context, r *request) (res result, ok bool) {
	select {
	case res := <-r.result:
		return res, true
	case <-l.done:
		// Queued as the writer stopped: it never ran, unless the writer
		// answered it on its way out.
		select {
		case res := <-r.result:
			return res, true
		default:
			return result{err: banksync.Errorf(banksync.EUNAVAILABLE, "ledger is shutting down")}, true
		}
	case <-ctx.Done():
		return result{}, false
	}
}

// logDecision logs, once, what the writer decided for r: a transfer
// decided and a fence (info), a deposit booked (debug: payroll files are
// large; the ledger is the record) and an account opened. A request decided
// before (a retry) is not logged again.
func (l *Ledger) logDecision(r *request, res result) {
	log := l.cfg.Logger
	switch {
	case res.err != nil:
	case r.kind == kindTransfer && res.decided:
		t := res.transfer
		log.LogAttrs(r.logCtx, slog.LevelInfo, "transfer decided", slog.String("transfer_id", t.ID),
			slog.String("account", t.FromAccount), slog.String("to_account", t.ToAccount), slog.Int64("amount", t.Amount),
			slog.String("status", t.Status), slog.String("reason", t.Reason))
	case r.kind == kindFence && res.decided:
		log.LogAttrs(r.logCtx, slog.LevelInfo, "transfer fenced", slog.String("transfer_id", r.fenceID),
			slog.String("status", banksync.StatusRejected), slog.String("reason", banksync.ReasonFenced))
	case r.kind == kindDeposit && len(res.entries) == 1:
		log.LogAttrs(r.logCtx, slog.LevelDebug, "deposit booked", slog.String("account", r.deposit.AccountID),
			slog.String("external_ref", r.deposit.ExternalRef), slog.Int64("amount", r.deposit.Amount))
	case r.kind == kindCreateAccount && res.created:
		log.LogAttrs(r.logCtx, slog.LevelInfo, "account opened", slog.String("account", res.account.ID),
			slog.String("owner", res.account.Owner))
	}
}

// CreateAccount opens an account for owner. With an empty id, one is
// generated. Creating an id that exists with the same owner returns the
// existing account and created=false; with another owner, EACCOUNTEXISTS.
func (l *Ledger) CreateAccount(ctx context.Context, id, owner string) (acct banksync.Account, created bool, err error) {
	if !banksync.ValidID(owner) {
		return acct, false, banksync.Errorf(banksync.EINVALID, "owner must be 1-64 letters, digits or ._:-")
	}
	generated := id == ""
	if !generated && !banksync.ValidID(id) {
		return acct, false, banksync.Errorf(banksync.EINVALID, "account_id must be 1-64 letters, digits or ._:-")
	}
	for attempt := 0; attempt < accountIDAttemptsMax; attempt++ {
		if generated {
			id = newAccountID()
		}
		res := l.submit(ctx, &request{kind: kindCreateAccount, account: banksync.Account{ID: id, Owner: owner}})
		collided := (res.err == nil && !res.created) || banksync.ErrorCode(res.err) == banksync.EACCOUNTEXISTS
		if generated && collided {
			continue // a generated id hit an existing account: draw again
		}
		return res.account, res.created, res.err
	}
	return acct, false, banksync.Errorf(banksync.EINTERNAL, "could not draw a free account id")
}

// newAccountID draws a 14-digit account number.
func newAccountID() string {
	n, err := rand.Int(rand.Reader, big.NewInt(1e13))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return "1" + fmt.Sprintf("%013d", n.Int64())
}

// Account returns an account's balance and last seq as committed.
func (l *Ledger) Account(ctx context.Context, id string) (banksync.Account, error) {
	if !banksync.ValidID(id) {
		return banksync.Account{}, banksync.Errorf(banksync.ENOTFOUND, "account not found")
	}
	accts, err := l.store.Accounts(ctx, []string{id})
	if err != nil {
		return banksync.Account{}, fmt.Errorf("read account: %w", err)
	}
	if len(accts) == 0 {
		return banksync.Account{}, banksync.Errorf(banksync.ENOTFOUND, "account not found")
	}
	return accts[0], nil
}

// AccountsOf returns the accounts of owner, at most AccountsPerOwnerMax.
func (l *Ledger) AccountsOf(ctx context.Context, owner string) ([]banksync.Account, error) {
	if !banksync.ValidID(owner) {
		return nil, banksync.Errorf(banksync.EINVALID, "owner must be 1-64 letters, digits or ._:-")
	}
	accts, err := l.store.AccountsOf(ctx, owner, AccountsPerOwnerMax)
	if err != nil {
		return nil, fmt.Errorf("read accounts of owner: %w", err)
	}
	return accts, nil
}

// Entries returns up to limit entries of an account after afterSeq, ascending.
func (l *Ledger) Entries(ctx context.Context, account string, afterSeq int64, limit int) ([]banksync.Entry, error) {
	if afterSeq < 0 {
		return nil, banksync.Errorf(banksync.EINVALID, "after_seq must not be negative")
	}
	if limit < 1 || limit > entriesPageMax {
		return nil, banksync.Errorf(banksync.EINVALID, "limit must be between 1 and %d", entriesPageMax)
	}
	if _, err := l.Account(ctx, account); err != nil {
		return nil, err
	}
	entries, err := l.store.Entries(ctx, account, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("read entries: %w", err)
	}
	return entries, nil
}

// Deposit books money arriving from another bank. The same ExternalRef with
// the same body returns the recorded outcome; with another body,
// EIDEMPOTENCY.
func (l *Ledger) Deposit(ctx context.Context, d banksync.DepositRequest) (banksync.DepositOutcome, error) {
	d, err := l.checkDeposit(d)
	if err != nil {
		return banksync.DepositOutcome{}, err
	}
	return l.depositOutcome(ctx, d, l.submit(ctx, depositRequest(d)))
}

// DepositsBatchMax bounds the deposits of one Deposits call: a payroll file
// is split into batches of at most this many.
const DepositsBatchMax = 1000

// DepositResult is the outcome of one deposit of a batch: Outcome if Err is
// nil, else the error Deposit would have returned for it alone.
type DepositResult struct {
	Outcome banksync.DepositOutcome
	Err     error
}

// Deposits books a batch of deposits, such as a payroll file, and returns
// one result per deposit in the order given. Every deposit is checked
// first: if any is invalid, or there are none or more than
// DepositsBatchMax, Deposits returns an error naming the first bad one and
// books nothing.
//
// Then all of them are queued before any is waited for, so a batch lands in
// one or a few group commits instead of one round trip each. The deposits
// are independent, not atomic: each succeeds or fails on its own (a missing
// account, a reused external_ref, a full queue: EUNAVAILABLE) and a failed
// one does not undo the others. Each is idempotent by ExternalRef, so
// retrying the whole batch after any failure or a lost answer is safe:
// booked ones replay their recorded outcome. Sending only the refused ones
// again is the surer way forward when the queue is full, since a replay
// takes a queue slot too. Two deposits of a batch with the same ExternalRef
// behave as two Deposit calls in that order would.
func (l *Ledger) Deposits(ctx context.Context, ds []banksync.DepositRequest) ([]DepositResult, error) {
	if len(ds) == 0 || len(ds) > DepositsBatchMax {
		return nil, banksync.Errorf(banksync.EINVALID, "deposits must hold between 1 and %d deposits", DepositsBatchMax)
	}
	ds = slices.Clone(ds) // normalised below; the caller's slice stays as it was
	for i := range ds {
		var err error
		if ds[i], err = l.checkDeposit(ds[i]); err != nil {
			return nil, banksync.Errorf(banksync.ErrorCode(err), "deposits[%d]: %s", i, banksync.ErrorMessage(err))
		}
	}
	reqs := make([]*request, len(ds))
	results := make([]DepositResult, len(ds))
	for i, d := range ds {
		r := depositRequest(d)
		if err := l.enqueue(ctx, r); err != nil {
			results[i].Err = err
			continue
		}
		reqs[i] = r
	}
	for i, r := range reqs {
		if r == nil {
			continue
		}
		results[i].Outcome, results[i].Err = l.depositOutcome(ctx, ds[i], l.wait(ctx, r))
	}
	return results, nil
}

// checkDeposit is the one check of a deposit's fields, for Deposit and
// Deposits alike. It returns d with its sender's name in NFC, so the name
// is stored, hashed and published in one form however the other bank
// composed it.
func (l *Ledger) checkDeposit(d banksync.DepositRequest) (banksync.DepositRequest, error) {
	switch {
	case !banksync.ValidID(d.ExternalRef):
		return d, banksync.Errorf(banksync.EINVALID, "external_ref must be 1-64 letters, digits or ._:-")
	case !banksync.ValidID(d.AccountID):
		return d, banksync.Errorf(banksync.EINVALID, "account_id must be 1-64 letters, digits or ._:-")
	}
	sender, err := banksync.NormalizeSender(d.Sender)
	if err != nil {
		return d, err
	}
	d.Sender = sender
	return d, banksync.ValidateAmount(d.Amount, l.cfg.AmountMax)
}

func depositRequest(d banksync.DepositRequest) *request {
	return &request{kind: kindDeposit, deposit: d, bodyHash: hashOf(d.AccountID, d.Amount, d.Sender)}
}

// depositOutcome turns the writer's answer to d into the API outcome,
// reading the entry of a replayed deposit, which the writer does not hand
// over.
func (l *Ledger) depositOutcome(ctx context.Context, d banksync.DepositRequest, res result) (banksync.DepositOutcome, error) {
	if res.err != nil {
		return banksync.DepositOutcome{}, res.err
	}
	out := banksync.DepositOutcome{ExternalRef: d.ExternalRef, Status: banksync.StatusCompleted}
	if len(res.entries) == 1 {
		out.Entry = res.entries[0]
		return out, nil
	}
	e, ok, err := l.store.Entry(ctx, res.deposit.AccountID, res.deposit.Seq)
	if err != nil || !ok {
		return out, fmt.Errorf("read recorded deposit entry %s/%d: found=%v: %w", res.deposit.AccountID, res.deposit.Seq, ok, err)
	}
	out.Entry = e
	return out, nil
}

// Transfer executes a transfer at most once per TransferID.
func (l *Ledger) Transfer(ctx context.Context, t banksync.TransferRequest) (banksync.TransferOutcome, error) {
	t, err := l.checkTransfer(t)
	if err != nil {
		return banksync.TransferOutcome{}, err
	}
	t.Deadline = banksync.Timestamp(t.Deadline)
	hash := hashOf(t.FromAccount, t.ToAccount, t.Amount, t.Deadline.UnixMicro(), t.Memo)
	res := l.submit(ctx, &request{kind: kindTransfer, transfer: t, bodyHash: hash})
	if res.err != nil {
		return banksync.TransferOutcome{}, res.err
	}
	return l.outcome(ctx, res.transfer, res.entries)
}

// checkTransfer checks a transfer's fields and returns t with its memo in
// NFC, the form that is hashed, stored and published.
func (l *Ledger) checkTransfer(t banksync.TransferRequest) (banksync.TransferRequest, error) {
	now := l.cfg.Now()
	switch {
	case validTransferID(t.TransferID) != nil:
		return t, validTransferID(t.TransferID)
	case !banksync.ValidID(t.FromAccount) || !banksync.ValidID(t.ToAccount):
		return t, banksync.Errorf(banksync.EINVALID, "from_account and to_account must be 1-64 letters, digits or ._:-")
	case t.FromAccount == t.ToAccount:
		return t, banksync.Errorf(banksync.ESAMEACCOUNT, "from_account and to_account are the same")
	case t.Deadline.IsZero():
		return t, banksync.Errorf(banksync.EINVALID, "deadline is required")
	case t.Deadline.After(now.Add(l.cfg.DeadlineHorizonMax)):
		return t, banksync.Errorf(banksync.EINVALID, "deadline is more than %s ahead", l.cfg.DeadlineHorizonMax)
	}
	if err := banksync.ValidateAmount(t.Amount, l.cfg.AmountMax); err != nil {
		return t, err
	}
	var err error
	if t.Memo, err = banksync.NormalizeMemo(t.Memo); err != nil {
		return t, err
	}
	return t, nil
}

// OutboxBacklog returns how many committed entries the relay has not yet
// published.
func (l *Ledger) OutboxBacklog(ctx context.Context) (int64, error) {
	pos, err := l.store.RelayPosition(ctx)
	if err != nil {
		return 0, err
	}
	last, err := l.store.LastPosition(ctx)
	if err != nil {
		return 0, err
	}
	return last - pos, nil
}

// TransferStatus answers core's decision on id without changing anything:
// StatusUnknown if core has never seen it.
func (l *Ledger) TransferStatus(ctx context.Context, id string) (banksync.TransferOutcome, error) {
	if err := validTransferID(id); err != nil {
		return banksync.TransferOutcome{}, err
	}
	recs, err := l.store.Transfers(ctx, []string{id})
	if err != nil {
		return banksync.TransferOutcome{}, fmt.Errorf("read transfer: %w", err)
	}
	if len(recs) == 0 {
		return banksync.TransferOutcome{TransferID: id, Status: banksync.StatusUnknown}, nil
	}
	return l.outcome(ctx, recs[0], nil)
}

// Fence settles id for good: an id core has never seen is recorded as
// rejected/fenced, so a request with that id arriving later is refused
// whatever the clocks say. A known id answers its recorded outcome.
func (l *Ledger) Fence(ctx context.Context, id string) (banksync.TransferOutcome, error) {
	if err := validTransferID(id); err != nil {
		return banksync.TransferOutcome{}, err
	}
	res := l.submit(ctx, &request{kind: kindFence, fenceID: id})
	if res.err != nil {
		return banksync.TransferOutcome{}, res.err
	}
	return l.outcome(ctx, res.transfer, nil)
}

func validTransferID(id string) error {
	if !banksync.ValidID(id) {
		return banksync.Errorf(banksync.EINVALID, "transfer id must be 1-64 letters, digits or ._:-")
	}
	return nil
}

// outcome turns a record into the API outcome, reading the entries of a
// completed transfer unless the writer handed them over.
func (l *Ledger) outcome(ctx context.Context, rec TransferRecord, entries []banksync.Entry) (banksync.TransferOutcome, error) {
	out := banksync.TransferOutcome{TransferID: rec.ID, Status: rec.Status, Reason: rec.Reason}
	if rec.Status != banksync.StatusCompleted {
		return out, nil
	}
	if len(entries) == 2 {
		out.Entries = entries
		return out, nil
	}
	debit, ok1, err1 := l.store.Entry(ctx, rec.FromAccount, rec.FromSeq)
	credit, ok2, err2 := l.store.Entry(ctx, rec.ToAccount, rec.ToSeq)
	if err := errors.Join(err1, err2); err != nil || !ok1 || !ok2 {
		return out, fmt.Errorf("read entries of transfer %s: found=%v,%v: %w", rec.ID, ok1, ok2, err)
	}
	out.Entries = []banksync.Entry{debit, credit}
	return out, nil
}

// hashOf fingerprints a request body for idempotency checks.
func hashOf(fields ...any) string {
	h := sha256.New()
	for _, f := range fields {
		var s string
		switch v := f.(type) {
		case string:
			s = v
		case int64:
			s = strconv.FormatInt(v, 10)
		default:
			panic(fmt.Sprintf("hashOf: unsupported field type %T", f))
		}
		// Length-prefixed so ("ab","c") and ("a","bc") differ.
		fmt.Fprintf(h, "%d:%s;", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil))
}
