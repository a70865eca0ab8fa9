package ledger

import (
	"context"
	"errors"
	"time"

	"banksync"
)

// commitTimeout bounds one group commit, reads included.
const commitTimeout = 30 * time.Second

// run is the single writer: it takes whatever requests are waiting (up to
// BatchSizeMax), decides each against the state the batch has built so far,
// and commits them in one transaction. While a commit is in flight the queue
// fills, so batches grow with load.
func (l *Ledger) run() {
	defer close(l.done)
	batch := make([]*request, 0, l.cfg.BatchSizeMax)
	for {
		select {
		case <-l.stop:
			l.refuseQueued()
			return
		case r := <-l.queue:
			batch = append(batch[:0], r)
		}
	fill:
		for len(batch) < l.cfg.BatchSizeMax {
			select {
			case r := <-l.queue:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		l.commitBatch(batch)
		clear(batch) // drop references so callers' requests can be collected
	}
}

func (l *Ledger) refuseQueued() {
	for {
		select {
		case r := <-l.queue:
			r.result <- result{err: banksync.Errorf(banksync.EUNAVAILABLE, "ledger is shutting down")}
		default:
			return
		}
	}
}

// batchState is what a batch has decided but not yet committed: the writer
// reads through it so later requests in a batch see earlier ones.
type batchState struct {
	accounts  map[string]banksync.Account // touched accounts, new values
	created   map[string]bool             // accounts created in this batch
	transfers map[string]TransferRecord   // recorded before or in this batch
	deposits  map[string]DepositRecord    // recorded before or in this batch
	position  int64                       // last position handed out
	now       time.Time
	out       Batch
	cache     map[string]banksync.Account // committed accounts
}

func (s *batchState) account(id string) (banksync.Account, bool) {
	if a, ok := s.accounts[id]; ok {
		return a, true
	}
	a, ok := s.cache[id]
	return a, ok
}

func (l *Ledger) commitBatch(batch []*request) {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	start := time.Now()

	// Most transfer ids and deposit refs are new, so the batch is decided
	// without reading their records unless one was seen recently; the
	// store's keys catch the rest (ErrDuplicate), and then it is decided
	// again with the records read.
	lookup := l.recent.containsAny(batch)
	for {
		s, err := l.load(ctx, batch, lookup)
		if err != nil {
			l.fail(batch, err)
			return
		}
		results := make([]result, len(batch))
		for i, r := range batch {
			results[i] = s.decide(r)
		}
		if s.writes() {
			s.finish()
			err := l.store.Commit(ctx, &s.out)
			if errors.Is(err, ErrDuplicate) && !lookup {
				lookup = true
				continue
			}
			if err != nil {
				l.fail(batch, err)
				return
			}
			for id, a := range s.accounts {
				l.accounts[id] = a
			}
			if l.cfg.Observer != nil {
				l.cfg.Observer.Committed(len(batch), len(s.out.Entries), time.Since(start))
			}
			for i, r := range batch {
				l.traces.put(r.logCtx, results[i].entries)
			}
			if s.position != l.lastPosition {
				l.lastPosition = s.position
				select {
				case l.committed <- struct{}{}:
				default:
				}
			}
		}
		for _, r := range batch {
			l.recent.add(r.key())
		}
		for i, r := range batch {
			r.result <- results[i]
		}
		return
	}
}

// key is the idempotency key a request records under, or "" if none.
func (r *request) key() string {
	switch r.kind {
	case kindDeposit:
		return "d:" + r.deposit.ExternalRef
	case kindTransfer:
		return "t:" + r.transfer.TransferID
	case kindFence:
		return "t:" + r.fenceID
	}
	return ""
}

// recentKeys remembers the last recentKeysMax idempotency keys committed, so
// a batch holding a retry reads the recorded decision up front instead of
// failing its first commit.
type recentKeys struct {
	set  map[string]struct{}
	ring []string
	next int
}

const recentKeysMax = 1 << 16

func (k *recentKeys) add(key string) {
	if key == "" {
		return
	}
	if k.set == nil {
		k.set = make(map[string]struct{}, recentKeysMax)
		k.ring = make([]string, recentKeysMax)
	}
	if _, ok := k.set[key]; ok {
		return
	}
	delete(k.set, k.ring[k.next])
	k.ring[k.next] = key
	k.set[key] = struct{}{}
	k.next = (k.next + 1) % recentKeysMax
}

func (k *recentKeys) containsAny(batch []*request) bool {
	for _, r := range batch {
		if _, ok := k.set[r.key()]; ok {
			return true
		}
	}
	return false
}

// fail answers a batch that could not be committed. Whether a failed commit
// reached the disk is not always knowable (a lost COMMIT reply), so the
// writer forgets its cached state and reloads it from the store.
func (l *Ledger) fail(batch []*request, err error) {
	l.cfg.Logger.Error("ledger batch failed", "requests", len(batch), "err", err)
	clear(l.accounts)
	l.lastPosition = -1
	for _, r := range batch {
		r.result <- result{err: banksync.Errorf(banksync.EUNAVAILABLE, "ledger store unavailable; retry with the same id")}
	}
}

// load reads what the batch needs that the writer does not hold: accounts
// missing from the cache and, with lookup, the recorded transfers and
// deposits of the batch's keys.
func (l *Ledger) load(ctx context.Context, batch []*request, lookup bool) (*batchState, error) {
	if l.lastPosition < 0 {
		last, err := l.store.LastPosition(ctx)
		if err != nil {
			return nil, err
		}
		l.lastPosition = last
	}
	missing := l.uncachedAccounts(batch)
	if len(l.accounts)+len(missing) > l.cfg.AccountsCachedMax {
		clear(l.accounts) // a cache, so forgetting is always safe
		missing = l.uncachedAccounts(batch)
	}
	if len(missing) > 0 {
		accts, err := l.store.Accounts(ctx, missing)
		if err != nil {
			return nil, err
		}
		for _, a := range accts {
			l.accounts[a.ID] = a
		}
	}
	s := &batchState{
		accounts:  make(map[string]banksync.Account),
		created:   make(map[string]bool),
		transfers: make(map[string]TransferRecord),
		deposits:  make(map[string]DepositRecord),
		position:  l.lastPosition,
		now:       banksync.Timestamp(l.cfg.Now()),
		cache:     l.accounts,
	}
	if !lookup {
		return s, nil
	}
	var transferIDs, refs []string
	for _, r := range batch {
		switch r.kind {
		case kindDeposit:
			refs = append(refs, r.deposit.ExternalRef)
		case kindTransfer:
			transferIDs = append(transferIDs, r.transfer.TransferID)
		case kindFence:
			transferIDs = append(transferIDs, r.fenceID)
		}
	}
	if len(transferIDs) > 0 {
		recs, err := l.store.Transfers(ctx, transferIDs)
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			s.transfers[rec.ID] = rec
		}
	}
	if len(refs) > 0 {
		recs, err := l.store.Deposits(ctx, refs)
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			s.deposits[rec.ExternalRef] = rec
		}
	}
	return s, nil
}

// uncachedAccounts lists, once each, the accounts the batch names that the
// writer does not hold.
func (l *Ledger) uncachedAccounts(batch []*request) []string {
	var ids []string
	seen := make(map[string]bool)
	want := func(id string) {
		if _, ok := l.accounts[id]; !ok && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for _, r := range batch {
		switch r.kind {
		case kindCreateAccount:
			want(r.account.ID)
		case kindDeposit:
			want(r.deposit.AccountID)
		case kindTransfer:
			want(r.transfer.FromAccount)
			want(r.transfer.ToAccount)
		}
	}
	return ids
}

// finish lists the accounts the batch created or changed.
func (s *batchState) finish() {
	for id, a := range s.accounts {
		if s.created[id] {
			s.out.NewAccounts = append(s.out.NewAccounts, a)
		} else {
			s.out.Accounts = append(s.out.Accounts, a)
		}
	}
}

// writes reports whether the batch has anything to commit: every entry and
// deposit touches an account, so accounts and transfer records cover it all.
func (s *batchState) writes() bool {
	return len(s.accounts)+len(s.out.Transfers) > 0
}

// decide applies the posting rules to one request.
func (s *batchState) decide(r *request) result {
	switch r.kind {
	case kindCreateAccount:
		return s.createAccount(r.account)
	case kindDeposit:
		return s.depositOf(r.deposit, r.bodyHash)
	case kindTransfer:
		return s.transferOf(r.transfer, r.bodyHash)
	case kindFence:
		return s.fence(r.fenceID)
	}
	panic("ledger: unknown request kind")
}

func (s *batchState) createAccount(a banksync.Account) result {
	if have, ok := s.account(a.ID); ok {
		if have.Owner != a.Owner {
			return result{err: banksync.Errorf(banksync.EACCOUNTEXISTS, "account %s already exists", a.ID)}
		}
		return result{account: have}
	}
	a.CreatedAt = s.now
	s.accounts[a.ID] = a
	s.created[a.ID] = true
	return result{account: a, created: true}
}

func (s *batchState) depositOf(d banksync.DepositRequest, hash string) result {
	if rec, ok := s.deposits[d.ExternalRef]; ok {
		if rec.BodyHash != hash {
			return result{err: banksync.Errorf(banksync.EIDEMPOTENCY, "external_ref %s was used for another deposit", d.ExternalRef)}
		}
		return result{deposit: rec}
	}
	acct, ok := s.account(d.AccountID)
	if !ok {
		return result{err: banksync.Errorf(banksync.EACCOUNTMISSING, "account %s not found", d.AccountID)}
	}
	balance, ok := banksync.AddAmount(acct.Balance, d.Amount)
	if !ok {
		return result{err: banksync.Errorf(banksync.EOVERFLOW, "deposit would overflow the balance")}
	}
	e := s.post(acct, d.Amount, balance, banksync.Entry{
		Kind: banksync.KindDeposit, Counterparty: d.Sender, ExternalRef: d.ExternalRef,
	})
	rec := DepositRecord{ExternalRef: d.ExternalRef, BodyHash: hash, AccountID: d.AccountID,
		Amount: d.Amount, Seq: e.Seq, BookedAt: s.now}
	s.deposits[d.ExternalRef] = rec
	s.out.Deposits = append(s.out.Deposits, rec)
	return result{deposit: rec, entries: []banksync.Entry{e}}
}

func (s *batchState) transferOf(t banksync.TransferRequest, hash string) result {
	if rec, ok := s.transfers[t.TransferID]; ok {
		if rec.BodyHash != "" && rec.BodyHash != hash {
			return result{err: banksync.Errorf(banksync.EIDEMPOTENCY, "transfer_id %s was used for another transfer", t.TransferID)}
		}
		return result{transfer: rec}
	}
	reject := func(reason string) result {
		rec := TransferRecord{ID: t.TransferID, BodyHash: hash, Status: banksync.StatusRejected, Reason: reason,
			FromAccount: t.FromAccount, ToAccount: t.ToAccount, Amount: t.Amount, DecidedAt: s.now}
		s.record(rec)
		return result{transfer: rec, decided: true}
	}
	if s.now.After(t.Deadline) {
		return reject(banksync.ReasonExpired)
	}
	from, ok1 := s.account(t.FromAccount)
	to, ok2 := s.account(t.ToAccount)
	if !ok1 || !ok2 {
		return reject(banksync.ReasonAccountNotFound)
	}
	if from.Balance < t.Amount {
		return reject(banksync.ReasonInsufficientFunds)
	}
	toBalance, ok := banksync.AddAmount(to.Balance, t.Amount)
	if !ok {
		return reject(banksync.ReasonBalanceOverflow)
	}
	debit := s.post(from, -t.Amount, from.Balance-t.Amount, banksync.Entry{
		Kind: banksync.KindTransferOut, Counterparty: t.ToAccount, TransferID: t.TransferID, Memo: t.Memo,
	})
	to, _ = s.account(t.ToAccount) // unchanged by the debit: the accounts differ
	credit := s.post(to, t.Amount, toBalance, banksync.Entry{
		Kind: banksync.KindTransferIn, Counterparty: t.FromAccount, TransferID: t.TransferID, Memo: t.Memo,
	})
	rec := TransferRecord{ID: t.TransferID, BodyHash: hash, Status: banksync.StatusCompleted,
		FromAccount: t.FromAccount, ToAccount: t.ToAccount, Amount: t.Amount,
		FromSeq: debit.Seq, ToSeq: credit.Seq, DecidedAt: s.now}
	s.record(rec)
	return result{transfer: rec, entries: []banksync.Entry{debit, credit}, decided: true}
}

func (s *batchState) fence(id string) result {
	if rec, ok := s.transfers[id]; ok {
		return result{transfer: rec}
	}
	rec := TransferRecord{ID: id, Status: banksync.StatusRejected, Reason: banksync.ReasonFenced, DecidedAt: s.now}
	s.record(rec)
	return result{transfer: rec, decided: true}
}

func (s *batchState) record(rec TransferRecord) {
	s.transfers[rec.ID] = rec
	s.out.Transfers = append(s.out.Transfers, rec)
}

// post appends the next entry of acct and returns it. The balance is
// computed by the caller, which has checked it.
func (s *batchState) post(acct banksync.Account, amount, balance int64, e banksync.Entry) banksync.Entry {
	if balance < 0 {
		panic("ledger: posting would make balance negative: " + acct.ID)
	}
	s.position++
	e.AccountID = acct.ID
	e.Seq = acct.LastSeq + 1
	e.Position = s.position
	e.Amount = amount
	e.BalanceAfter = balance
	e.BookedAt = s.now
	acct.Balance = balance
	acct.LastSeq = e.Seq
	s.accounts[acct.ID] = acct
	s.out.Entries = append(s.out.Entries, e)
	return e
}
