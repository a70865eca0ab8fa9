package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"banksync"
	"banksync/channel"
)

var _ channel.Store = (*ChannelStore)(nil)

// ChannelStore is the channel tier's store on PostgreSQL. Several channel
// processes share one database, each with its own pool and no lock: every
// write that depends on what is stored is a single conditional statement or
// is guarded by a unique index, so the database, not the process, keeps the
// promises.
type ChannelStore struct {
	pool *pgxpool.Pool

	// changed is signalled when any process on the database committed
	// history entries: the listener turns NOTIFY on historyNotifyChannel
	// into it.
	changed      chan struct{}
	stopListener context.CancelFunc
	listenerDone chan struct{}
	log          *slog.Logger
}

// historyNotifyChannel is the PostgreSQL notification channel every
// commit of history entries notifies, so that each replica's live streams
// learn of entries another replica applied.
const historyNotifyChannel = "banksync_history"

// The listener waits listenerRetryMin before it connects again, doubling
// up to listenerRetryMax while it keeps failing.
const (
	listenerRetryMin = time.Second
	listenerRetryMax = 30 * time.Second
)

// notifyTimeout bounds Apply's notification after its commit.
const notifyTimeout = 5 * time.Second

// Constraint names the store recognises in unique violations.
const (
	idempotencyConstraint = "channel_transfers_idempotency"
	onePendingConstraint  = "channel_transfers_one_pending"
	uniqueViolation       = "23505"
)

// OpenChannel connects to dsn and migrates the channel schema. WithLogger
// names where the listener of history changes tells of its failures.
func OpenChannel(ctx context.Context, dsn string, opts ...Option) (*ChannelStore, error) {
	o := newOptions(opts)
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("open channel store: %w", err)
	}
	if err := ping(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open channel store: %w", err)
	}
	if err := migrate(ctx, pool, "channel"); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open channel store: %w", err)
	}
	lctx, stop := context.WithCancel(context.Background())
	s := &ChannelStore{pool: pool, changed: make(chan struct{}, 1), stopListener: stop, listenerDone: make(chan struct{}), log: o.logger}
	go s.listen(lctx)
	return s, nil
}

// Close stops the listener and closes the pool.
func (s *ChannelStore) Close() error {
	s.stopListener()
	<-s.listenerDone
	s.pool.Close()
	return nil
}

// Changed is signalled after history entries were committed by any
// process on this database.
func (s *ChannelStore) Changed() <-chan struct{} { return s.changed }

func (s *ChannelStore) signalChanged() {
	select {
	case s.changed <- struct{}{}:
	default: // one is waiting already
	}
}

// listen holds a connection of its own (not the pool's) listening on
// historyNotifyChannel until ctx ends, and connects again after a failure.
// Each time it starts listening it signals Changed too, since commits made
// while it was not listening told no one.
// A failure is logged: while the listener is down, live streams on this
// replica see other replicas' entries only at their periodic check (behind
// a pooler in transaction mode, such as PgBouncer's, LISTEN cannot work at
// all: point the channel at the database itself).
func (s *ChannelStore) listen(ctx context.Context) {
	defer close(s.listenerDone)
	wait := listenerRetryMin
	for ctx.Err() == nil {
		listened, err := s.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if listened {
			wait = listenerRetryMin // it worked for a while: start over
		}
		s.log.Warn("listening for history changes failed; live streams fall back to their periodic check until it listens again",
			"channel", historyNotifyChannel, "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, listenerRetryMax)
	}
}

// listenOnce listens until a failure, and says whether it got as far as
// listening.
func (s *ChannelStore) listenOnce(ctx context.Context) (bool, error) {
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return false, err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+historyNotifyChannel); err != nil {
		return false, err
	}
	s.signalChanged()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return true, err
		}
		s.signalChanged()
	}
}

// notifyChanged tells every listener on the database that history entries
// were committed. Sent after Apply's one-statement transaction; a lost
// notification delays a live stream until the next one or its own
// periodic check, never loses an entry.
func (s *ChannelStore) notifyChanged(ctx context.Context) {
	// Sent even when the caller's ctx ends right after the commit.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyTimeout)
	defer cancel()
	s.pool.Exec(ctx, `SELECT pg_notify($1, '')`, historyNotifyChannel)
}

// SyncedSeqs reads the synced seqs of ids.
func (s *ChannelStore) SyncedSeqs(ctx context.Context, ids []string) (map[string]int64, error) {
	seqs := make(map[string]int64, len(ids))
	rows, _ := s.pool.Query(ctx, `SELECT id, synced_seq FROM channel_accounts WHERE id = ANY($1)`, ids)
	var id string
	var seq int64
	if _, err := pgx.ForEachRow(rows, []any{&id, &seq}, func() error { seqs[id] = seq; return nil }); err != nil {
		return nil, fmt.Errorf("read synced seqs of %d accounts: %w", len(ids), err)
	}
	return seqs, nil
}

// Accounts.

const accountColumns = `id, owner, synced_seq, balance, stale, synced_at, stale_since, stale_gen`

func scanAccount(row pgx.CollectableRow) (channel.AccountState, error) {
	var a channel.AccountState
	var synced, staleSince *time.Time
	if err := row.Scan(&a.ID, &a.Owner, &a.SyncedSeq, &a.Balance, &a.Stale, &synced, &staleSince, &a.StaleGen); err != nil {
		return a, err
	}
	a.SyncedAt, a.StaleSince = utcOrZero(synced), utcOrZero(staleSince)
	return a, nil
}

func utcOrZero(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// Account returns the sync state of an account the channel knows.
func (s *ChannelStore) Account(ctx context.Context, id string) (channel.AccountState, bool, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+accountColumns+` FROM channel_accounts WHERE id = $1`, id)
	a, err := pgx.CollectExactlyOneRow(rows, scanAccount)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return channel.AccountState{}, false, nil
	case err != nil:
		return channel.AccountState{}, false, fmt.Errorf("read channel account %s: %w", id, err)
	}
	return a, true, nil
}

// AccountsOf returns the accounts of owner, by id.
func (s *ChannelStore) AccountsOf(ctx context.Context, owner string) ([]channel.AccountState, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+accountColumns+` FROM channel_accounts WHERE owner = $1 ORDER BY id`, owner)
	as, err := pgx.CollectRows(rows, scanAccount)
	if err != nil {
		return nil, fmt.Errorf("read channel accounts of %s: %w", owner, err)
	}
	return as, nil
}

// AddAccount inserts the account, or fills in the owner of a row that has
// none; an owner once set is never changed here.
func (s *ChannelStore) AddAccount(ctx context.Context, id, owner string) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO channel_accounts AS a (id, owner, synced_seq, balance, stale)
		VALUES ($1, $2, 0, 0, false)
		ON CONFLICT (id) DO UPDATE SET owner = excluded.owner WHERE a.owner = ''`, id, owner)
	if err != nil {
		return fmt.Errorf("add channel account %s: %w", id, err)
	}
	return nil
}

// Transfers.

const transferColumns = `id, customer, idempotency_key, body_hash, from_account, to_account, amount, memo,
	state, reason, deadline, created_at, settled_at`

func scanTransfer(row pgx.CollectableRow) (channel.Transfer, error) {
	var t channel.Transfer
	var settled *time.Time
	if err := row.Scan(&t.ID, &t.Customer, &t.IdempotencyKey, &t.BodyHash, &t.FromAccount, &t.ToAccount,
		&t.Amount, &t.Memo, &t.State, &t.Reason, &t.Deadline, &t.CreatedAt, &settled); err != nil {
		return t, err
	}
	t.Deadline, t.CreatedAt, t.SettledAt = t.Deadline.UTC(), t.CreatedAt.UTC(), utcOrZero(settled)
	return t, nil
}

func (s *ChannelStore) transfer(ctx context.Context, where string, args ...any) (channel.Transfer, bool, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+transferColumns+` FROM channel_transfers WHERE `+where, args...)
	t, err := pgx.CollectExactlyOneRow(rows, scanTransfer)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return channel.Transfer{}, false, nil
	case err != nil:
		return channel.Transfer{}, false, err
	}
	return t, true, nil
}

// CreateTransfer looks the idempotency key up first, so a retry while the
// first attempt is pending gets that transfer back rather than
// ErrInProgress. The insert that follows is guarded by two unique indexes:
// on the key (a twin request racing this one) and on the source account's
// one pending transfer. A racing twin may trip either, so after any unique
// violation the key is looked up again before ErrInProgress is answered.
func (s *ChannelStore) CreateTransfer(ctx context.Context, t channel.Transfer) (channel.Transfer, bool, error) {
	t = channel.NewPending(t)
	byKey := func() (channel.Transfer, bool, error) {
		return s.transfer(ctx, `customer = $1 AND idempotency_key = $2`, t.Customer, t.IdempotencyKey)
	}
	existing, found, err := byKey()
	if err != nil || found {
		if err != nil {
			err = fmt.Errorf("create transfer %s: read idempotency key: %w", t.ID, err)
		}
		return existing, false, err
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO channel_transfers (id, customer, idempotency_key, body_hash,
			from_account, to_account, amount, memo, state, reason, deadline, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		t.ID, t.Customer, t.IdempotencyKey, t.BodyHash, t.FromAccount, t.ToAccount, t.Amount, t.Memo,
		t.State, t.Reason, t.Deadline, t.CreatedAt)
	if err == nil {
		return t, true, nil
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != uniqueViolation {
		return channel.Transfer{}, false, fmt.Errorf("create transfer %s: %w", t.ID, err)
	}
	existing, found, rerr := byKey()
	switch {
	case rerr != nil:
		return channel.Transfer{}, false, fmt.Errorf("create transfer %s: read idempotency key: %w", t.ID, rerr)
	case found:
		return existing, false, nil
	case pgErr.ConstraintName == onePendingConstraint:
		return channel.Transfer{}, false, channel.ErrInProgress
	}
	return channel.Transfer{}, false, fmt.Errorf("create transfer %s: %w", t.ID, err)
}

// Transfer returns a transfer by id.
func (s *ChannelStore) Transfer(ctx context.Context, id string) (channel.Transfer, bool, error) {
	t, ok, err := s.transfer(ctx, `id = $1`, id)
	if err != nil {
		return t, false, fmt.Errorf("read transfer %s: %w", id, err)
	}
	return t, ok, nil
}

// Settle moves a pending transfer to state; one settled already is read
// back as it is, unchanged.
func (s *ChannelStore) Settle(ctx context.Context, id, state, reason string, at time.Time) (channel.Transfer, bool, error) {
	if state != channel.StateCompleted && state != channel.StateFailed {
		return channel.Transfer{}, false, fmt.Errorf("settle transfer %s: state %q is not a settled state", id, state)
	}
	rows, _ := s.pool.Query(ctx, `UPDATE channel_transfers SET state = $2, reason = $3, settled_at = $4
		WHERE id = $1 AND state = 'pending' RETURNING `+transferColumns, id, state, reason, banksync.Timestamp(at))
	t, err := pgx.CollectExactlyOneRow(rows, scanTransfer)
	changed := err == nil
	if errors.Is(err, pgx.ErrNoRows) {
		var ok bool
		if t, ok, err = s.transfer(ctx, `id = $1`, id); err == nil && !ok {
			err = banksync.Errorf(banksync.ENOTFOUND, "no transfer %s", id)
		}
	}
	if err != nil {
		return channel.Transfer{}, false, fmt.Errorf("settle transfer %s: %w", id, err)
	}
	return t, changed, nil
}

// PendingBefore returns up to limit pending transfers whose deadline is
// before t, oldest deadline first.
func (s *ChannelStore) PendingBefore(ctx context.Context, t time.Time, limit int) ([]channel.Transfer, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, `SELECT `+transferColumns+` FROM channel_transfers
		WHERE state = 'pending' AND deadline < $1 ORDER BY deadline, id LIMIT $2`, t, limit)
	ts, err := pgx.CollectRows(rows, scanTransfer)
	if err != nil {
		return nil, fmt.Errorf("read transfers pending before %s: %w", t, err)
	}
	return ts, nil
}

// PendingOf returns the pending transfers from account.
func (s *ChannelStore) PendingOf(ctx context.Context, account string) ([]channel.Transfer, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+transferColumns+` FROM channel_transfers
		WHERE from_account = $1 AND state = 'pending' ORDER BY id`, account)
	ts, err := pgx.CollectRows(rows, scanTransfer)
	if err != nil {
		return nil, fmt.Errorf("read pending transfers of %s: %w", account, err)
	}
	return ts, nil
}

// History.

// applyHistory appends $6… to the history only if the account statement
// named acct moved synced_seq (from $5 to $2): one statement, so one round
// trip and all or nothing, without an explicit transaction. A concurrent
// applier from the same seq waits on the account's row lock and then finds
// synced_seq moved: its statement returns no row and writes nothing.
const applyHistory = `, hist AS (
		INSERT INTO channel_history (account_id, seq, entry_id, kind, amount, balance_after,
			counterparty, transfer_id, external_ref, memo, booked_at)
		SELECT $1::text, h.* FROM unnest($6::bigint[], $7::bigint[], $8::text[], $9::bigint[], $10::bigint[],
			$11::text[], $12::text[], $13::text[], $14::text[], $15::timestamptz[]) AS h
		WHERE EXISTS (SELECT 1 FROM acct)
	)
	SELECT ` + accountColumns + ` FROM acct`

const (
	// applyFromZero also creates an account not yet known.
	applyFromZero = `WITH acct AS (
		INSERT INTO channel_accounts AS a (id, synced_seq, balance, stale, synced_at)
		VALUES ($1, $2, $3, false, $4)
		ON CONFLICT (id) DO UPDATE SET synced_seq = excluded.synced_seq, balance = excluded.balance,
			synced_at = excluded.synced_at
		WHERE a.synced_seq = $5
		RETURNING ` + accountColumns + `
	)` + applyHistory
	applyFromSeq = `WITH acct AS (
		UPDATE channel_accounts SET synced_seq = $2, balance = $3, synced_at = $4
		WHERE id = $1 AND synced_seq = $5
		RETURNING ` + accountColumns + `
	)` + applyHistory
)

// Apply appends entries to the account's history and moves its synced seq,
// only from the seq the entries follow; see applyHistory.
func (s *ChannelStore) Apply(ctx context.Context, account string, entries []banksync.Entry, at time.Time) (channel.AccountState, error) {
	if err := channel.CheckRun(account, entries); err != nil {
		return channel.AccountState{}, fmt.Errorf("apply to %s: %w", account, err)
	}
	if len(entries) == 0 {
		return s.ensureAccount(ctx, account)
	}
	n := len(entries)
	var (
		seqs, positions, amounts, balances = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		kinds, counterparties, transferIDs = make([]string, n), make([]string, n), make([]string, n)
		externalRefs, memos                = make([]string, n), make([]string, n)
		booked                             = make([]time.Time, n)
	)
	for i, e := range entries {
		seqs[i], positions[i], kinds[i], amounts[i], balances[i] = e.Seq, e.Position, string(e.Kind), e.Amount, e.BalanceAfter
		counterparties[i], transferIDs[i], externalRefs[i], memos[i], booked[i] = e.Counterparty, e.TransferID, e.ExternalRef, e.Memo, e.BookedAt
	}
	first, last := entries[0], entries[n-1]
	q := applyFromSeq
	if first.Seq == 1 {
		q = applyFromZero
	}
	rows, _ := s.pool.Query(ctx, q, account, last.Seq, last.BalanceAfter, banksync.Timestamp(at), first.Seq-1,
		seqs, positions, kinds, amounts, balances, counterparties, transferIDs, externalRefs, memos, booked)
	st, err := pgx.CollectExactlyOneRow(rows, scanAccount)
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		err = channel.ErrSeqConflict
	case errors.As(err, &pgErr) && pgErr.Code == uniqueViolation && pgErr.TableName == "channel_history":
		// History above synced_seq written by another process: not
		// something this store does, but never to be overwritten.
		err = fmt.Errorf("%w: %w", channel.ErrSeqConflict, err)
	}
	if err != nil {
		return channel.AccountState{}, fmt.Errorf("apply %d entries to %s: %w", n, account, err)
	}
	s.notifyChanged(ctx)
	return st, nil
}

// historyColumns are channel_history's columns in the order Entry gives
// them.
var historyColumns = []string{"account_id", "seq", "entry_id", "kind", "amount", "balance_after",
	"counterparty", "transfer_id", "external_ref", "memo", "booked_at"}

// ApplyRuns applies many accounts' runs in one transaction. It locks the
// known accounts' rows in id order, so appliers sharing accounts wait for
// each other but never in a cycle; lets channel.PlanRuns (the in-order
// rule) decide what to write; adds the new accounts, also in id order
// (one another process added meanwhile is left out, as a Gap, for the
// caller to apply alone); copies the history in; and moves the states.
// It is long because it is one transaction's statements in the order that
// keeps appliers from deadlocking, read best in one place.
func (s *ChannelStore) ApplyRuns(ctx context.Context, runs []channel.Run, at time.Time) ([]channel.RunResult, error) {
	if err := channel.CheckRuns(runs); err != nil {
		return nil, fmt.Errorf("apply runs: %w", err)
	}
	ids := make([]string, len(runs))
	for i, r := range runs {
		ids[i] = r.Account
	}
	slices.Sort(ids)
	var results []channel.RunResult
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `SELECT `+accountColumns+` FROM channel_accounts
			WHERE id = ANY($1) ORDER BY id FOR UPDATE`, ids)
		as, err := pgx.CollectRows(rows, scanAccount)
		if err != nil {
			return err
		}
		known := make(map[string]channel.AccountState, len(as))
		for _, a := range as {
			known[a.ID] = a
		}
		var plan [][]banksync.Entry
		results, plan = channel.PlanRuns(known, runs, at)
		var added, moved []channel.AccountState
		appended := make(map[string][]banksync.Entry)
		for i, r := range runs {
			if len(plan[i]) == 0 {
				continue
			}
			appended[r.Account] = plan[i]
			if _, ok := known[r.Account]; ok {
				moved = append(moved, results[i].State)
			} else {
				added = append(added, results[i].State)
			}
		}
		if len(added) > 0 {
			slices.SortFunc(added, func(a, b channel.AccountState) int { return strings.Compare(a.ID, b.ID) })
			ids, seqs, balances := accountArrays(added)
			rows, _ := tx.Query(ctx, `INSERT INTO channel_accounts (id, synced_seq, balance, stale, synced_at)
				SELECT u.id, u.seq, u.balance, false, $4 FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS u (id, seq, balance)
				ORDER BY u.id COLLATE "C"
				ON CONFLICT (id) DO NOTHING RETURNING id`, ids, seqs, balances, banksync.Timestamp(at))
			inserted, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			if len(inserted) < len(added) {
				ins := make(map[string]bool, len(inserted))
				for _, id := range inserted {
					ins[id] = true
				}
				for i, r := range runs {
					if _, ok := known[r.Account]; !ok && !ins[r.Account] && !results[i].Gap {
						results[i] = channel.RunResult{State: channel.AccountState{ID: r.Account}, Gap: true}
						delete(appended, r.Account)
					}
				}
			}
		}
		var history [][]any
		for _, r := range runs {
			for _, e := range appended[r.Account] {
				history = append(history, []any{e.AccountID, e.Seq, e.Position, string(e.Kind), e.Amount, e.BalanceAfter,
					e.Counterparty, e.TransferID, e.ExternalRef, e.Memo, e.BookedAt})
			}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"channel_history"}, historyColumns, pgx.CopyFromRows(history)); err != nil {
			return err
		}
		if len(history) > 0 {
			// Delivered when the transaction commits, and only then.
			if _, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, historyNotifyChannel); err != nil {
				return err
			}
		}
		if len(moved) > 0 {
			ids, seqs, balances := accountArrays(moved)
			if _, err := tx.Exec(ctx, `UPDATE channel_accounts AS a SET synced_seq = u.seq, balance = u.balance, synced_at = $4
				FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS u (id, seq, balance) WHERE a.id = u.id`,
				ids, seqs, balances, banksync.Timestamp(at)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("apply runs of %d accounts: %w", len(runs), err)
	}
	return results, nil
}

func accountArrays(as []channel.AccountState) (ids []string, seqs, balances []int64) {
	for _, a := range as {
		ids, seqs, balances = append(ids, a.ID), append(seqs, a.SyncedSeq), append(balances, a.Balance)
	}
	return ids, seqs, balances
}

// ensureAccount returns the account's state, adding it without an owner if
// it is not known.
func (s *ChannelStore) ensureAccount(ctx context.Context, account string) (channel.AccountState, error) {
	if _, err := s.pool.Exec(ctx, `INSERT INTO channel_accounts (id, synced_seq, balance, stale)
		VALUES ($1, 0, 0, false) ON CONFLICT (id) DO NOTHING`, account); err != nil {
		return channel.AccountState{}, fmt.Errorf("add channel account %s: %w", account, err)
	}
	st, _, err := s.Account(ctx, account)
	return st, err
}

// StaleAccounts returns up to limit stale accounts, stale longest first.
func (s *ChannelStore) StaleAccounts(ctx context.Context, limit int) ([]string, error) {
	rows, _ := s.pool.Query(ctx, `SELECT id FROM channel_accounts WHERE stale
		ORDER BY stale_since, id LIMIT $1`, limit)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read stale accounts: %w", err)
	}
	return ids, nil
}

// Backlog counts the pending transfers, the oldest one's creation, and the
// stale accounts, in one statement.
func (s *ChannelStore) Backlog(ctx context.Context) (channel.Backlog, error) {
	var b channel.Backlog
	var oldest *time.Time
	err := s.pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM channel_transfers WHERE state = 'pending'),
		(SELECT min(created_at) FROM channel_transfers WHERE state = 'pending'),
		(SELECT count(*) FROM channel_accounts WHERE stale)`).Scan(&b.Pending, &oldest, &b.Stale)
	if err != nil {
		return b, fmt.Errorf("read backlog: %w", err)
	}
	if oldest != nil {
		b.OldestPending = oldest.UTC()
	}
	return b, nil
}

// ClearStale clears the stale flag if no MarkStale came after the one that
// gave gen.
func (s *ChannelStore) ClearStale(ctx context.Context, account string, gen int64) error {
	if _, err := s.pool.Exec(ctx, `UPDATE channel_accounts SET stale = false, stale_since = NULL
		WHERE id = $1 AND stale AND stale_gen = $2`, account, gen); err != nil {
		return fmt.Errorf("clear stale %s: %w", account, err)
	}
	return nil
}

// MarkStale flags the account, adding it without an owner if it is not
// known. It keeps stale_since of an account already stale: it says since
// when the history may have been behind.
func (s *ChannelStore) MarkStale(ctx context.Context, account string, at time.Time) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO channel_accounts AS a (id, synced_seq, balance, stale, stale_since, stale_gen)
		VALUES ($1, 0, 0, true, $2, 1)
		ON CONFLICT (id) DO UPDATE SET stale = true, stale_gen = a.stale_gen + 1,
			stale_since = CASE WHEN a.stale THEN a.stale_since ELSE excluded.stale_since END`,
		account, banksync.Timestamp(at))
	if err != nil {
		return fmt.Errorf("mark %s stale: %w", account, err)
	}
	return nil
}

// History returns up to limit entries of account with seq < beforeSeq,
// newest first.
func (s *ChannelStore) History(ctx context.Context, account string, beforeSeq int64, limit int) ([]banksync.Entry, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, `SELECT account_id, seq, entry_id, kind, amount, balance_after,
			counterparty, transfer_id, external_ref, memo, booked_at
		FROM channel_history WHERE account_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3`, account, beforeSeq, limit)
	es, err := pgx.CollectRows(rows, scanEntry)
	if err != nil {
		return nil, fmt.Errorf("read history of %s before seq %d: %w", account, beforeSeq, err)
	}
	return es, nil
}

// Statement reads a page of a statement along the history's primary key
// (see the SQLite store's Statement for why no index of booking times).
func (s *ChannelStore) Statement(ctx context.Context, account string, afterSeq, throughSeq int64, from, to time.Time, limit int) ([]banksync.Entry, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, `SELECT account_id, seq, entry_id, kind, amount, balance_after,
			counterparty, transfer_id, external_ref, memo, booked_at
		FROM channel_history WHERE account_id = $1 AND seq > $2 AND seq <= $3 AND booked_at >= $4 AND booked_at < $5
		ORDER BY seq LIMIT $6`, account, afterSeq, throughSeq, from, to, limit)
	es, err := pgx.CollectRows(rows, scanEntry)
	if err != nil {
		return nil, fmt.Errorf("read statement of %s after seq %d: %w", account, afterSeq, err)
	}
	return es, nil
}

// Migrations lists the channel schema's migrations, embedded and applied.
func (s *ChannelStore) Migrations(ctx context.Context) (known, applied []string, err error) {
	return migrations(ctx, s.pool, "channel")
}
