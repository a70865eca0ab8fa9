package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"banksync"
	"banksync/channel"
)

// ChannelStore is the channel tier's store on SQLite.
//
// Unlike the ledger it takes no lock file: several channel processes may
// share one database. Every write runs in a BEGIN IMMEDIATE transaction
// (the writer pool's _txlock), which takes SQLite's one write lock up front,
// so a transaction's reads and writes are never interleaved with another
// process's; busy_timeout makes the others wait their turn. The statements
// are still conditional, as on PostgreSQL, so the promises live in the
// schema and the SQL rather than in that lock.
type ChannelStore struct {
	db *db

	insertHistory  *inserter
	upsertAccounts *inserter // sets synced_seq and balance, adding accounts not known
	advance        *sql.Stmt // moves synced_seq from an expected value

	runsMu sync.Mutex // one ApplyRuns at a time, so each plans from what the last one stored
	states stateCache // the group commit's sync states between commits

	// changed is signalled after each commit of history entries. It
	// reaches this process only: another process on the same file is not
	// told.
	changed chan struct{}
}

var _ channel.Store = (*ChannelStore)(nil)

// OpenChannel opens (creating if needed) the channel database at path and
// applies its migrations.
func OpenChannel(ctx context.Context, path string) (*ChannelStore, error) {
	d, err := openDB(ctx, path)
	if err != nil {
		return nil, err
	}
	if err := d.migrate(ctx, "channel"); err != nil {
		d.close()
		return nil, err
	}
	s := &ChannelStore{db: d, changed: make(chan struct{}, 1)}
	if err := s.prepare(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// The multi-row inserts are INSERT OR ROLLBACK: a row that breaks a
// constraint rolls the whole transaction back, which is what every caller
// does with the error anyway. A plain INSERT would undo only its own
// statement, so SQLite would first copy every page the statement changes
// into a statement journal; in a group commit that copy is one more page
// write per entry, about a tenth of the writer's time.
func (s *ChannelStore) prepare(ctx context.Context) (err error) {
	w := s.db.write
	if s.insertHistory, err = newInserter(ctx, w, `INSERT OR ROLLBACK INTO channel_history (account_id, seq, entry_id, kind,
		amount, balance_after, counterparty, transfer_id, external_ref, memo, booked_at)`, "", 11); err != nil {
		return err
	}
	if s.upsertAccounts, err = newInserter(ctx, w, `INSERT OR ROLLBACK INTO channel_accounts (id, synced_seq, balance, synced_at, stale)`,
		`ON CONFLICT (id) DO UPDATE SET synced_seq = excluded.synced_seq, balance = excluded.balance,
			synced_at = excluded.synced_at`, 5); err != nil {
		return err
	}
	s.advance, err = w.PrepareContext(ctx, `UPDATE channel_accounts
		SET synced_seq = ?, balance = ?, synced_at = ?
		WHERE id = ? AND synced_seq = ?
		RETURNING `+accountColumns)
	if err != nil {
		return fmt.Errorf("prepare channel statements: %w", err)
	}
	return nil
}

// Close closes the database.
func (s *ChannelStore) Close() error {
	for _, in := range []*inserter{s.insertHistory, s.upsertAccounts} {
		if in != nil {
			in.close()
		}
	}
	if s.advance != nil {
		s.advance.Close()
	}
	return s.db.close()
}

// inWriteTx runs fn in a write transaction and commits it if fn succeeds.
func (s *ChannelStore) inWriteTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// queryer is what reads need of a *sql.DB or *sql.Tx.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// Accounts.

const accountColumns = `id, owner, synced_seq, balance, stale, synced_at, stale_since, stale_gen`

func scanAccount(sc interface{ Scan(...any) error }) (channel.AccountState, error) {
	var a channel.AccountState
	var synced, staleSince sql.NullInt64
	if err := sc.Scan(&a.ID, &a.Owner, &a.SyncedSeq, &a.Balance, &a.Stale, &synced, &staleSince, &a.StaleGen); err != nil {
		return a, err
	}
	a.SyncedAt = fromNullMicros(synced)
	a.StaleSince = fromNullMicros(staleSince)
	return a, nil
}

func readAccounts(ctx context.Context, q queryer, where string, args ...any) ([]channel.AccountState, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+accountColumns+` FROM channel_accounts WHERE `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []channel.AccountState
	for rows.Next() {
		a, err := scanAccount(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

func readAccount(ctx context.Context, q queryer, id string) (channel.AccountState, bool, error) {
	as, err := readAccounts(ctx, q, `id = ?`, id)
	if err != nil || len(as) == 0 {
		return channel.AccountState{}, false, err
	}
	return as[0], true, nil
}

func (s *ChannelStore) Account(ctx context.Context, id string) (channel.AccountState, bool, error) {
	a, ok, err := readAccount(ctx, s.db.read, id)
	if err != nil {
		return a, false, fmt.Errorf("read channel account %s: %w", id, err)
	}
	return a, ok, nil
}

func (s *ChannelStore) AccountsOf(ctx context.Context, owner string) ([]channel.AccountState, error) {
	as, err := readAccounts(ctx, s.db.read, `owner = ? ORDER BY id`, owner)
	if err != nil {
		return nil, fmt.Errorf("read channel accounts of %s: %w", owner, err)
	}
	return as, nil
}

// AddAccount inserts the account, or fills in the owner of a row that has
// none; an owner once set is never changed here.
func (s *ChannelStore) AddAccount(ctx context.Context, id, owner string) error {
	s.states.foreignWrite()
	defer s.states.foreignWrite()
	_, err := s.db.write.ExecContext(ctx, `INSERT INTO channel_accounts (id, owner, synced_seq, balance, stale)
		VALUES (?, ?, 0, 0, 0)
		ON CONFLICT (id) DO UPDATE SET owner = excluded.owner WHERE channel_accounts.owner = ''`, id, owner)
	if err != nil {
		return fmt.Errorf("add channel account %s: %w", id, err)
	}
	return nil
}

// Transfers.

const transferColumns = `id, customer, idempotency_key, body_hash, from_account, to_account, amount, memo,
	state, reason, deadline, created_at, settled_at`

func readTransfers(ctx context.Context, q queryer, where string, args ...any) ([]channel.Transfer, error) {
	rows, err := q.QueryContext(ctx, `SELECT `+transferColumns+` FROM channel_transfers WHERE `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []channel.Transfer
	for rows.Next() {
		var t channel.Transfer
		var deadline, created int64
		var settled sql.NullInt64
		if err := rows.Scan(&t.ID, &t.Customer, &t.IdempotencyKey, &t.BodyHash, &t.FromAccount, &t.ToAccount,
			&t.Amount, &t.Memo, &t.State, &t.Reason, &deadline, &created, &settled); err != nil {
			return nil, err
		}
		t.Deadline, t.CreatedAt, t.SettledAt = fromMicros(deadline), fromMicros(created), fromNullMicros(settled)
		out = append(out, t)
	}
	return out, rows.Err()
}

func readTransfer(ctx context.Context, q queryer, where string, args ...any) (channel.Transfer, bool, error) {
	ts, err := readTransfers(ctx, q, where, args...)
	if err != nil || len(ts) == 0 {
		return channel.Transfer{}, false, err
	}
	return ts[0], true, nil
}

// CreateTransfer looks the idempotency key up first, so a retry while the
// first attempt is pending gets that transfer back rather than
// ErrInProgress; the partial unique index on pending transfers decides
// whether the source account is free.
func (s *ChannelStore) CreateTransfer(ctx context.Context, t channel.Transfer) (channel.Transfer, bool, error) {
	t = channel.NewPending(t)
	var existing channel.Transfer
	var found bool
	err := s.inWriteTx(ctx, func(tx *sql.Tx) error {
		byKey := func() (err error) {
			existing, found, err = readTransfer(ctx, tx, `customer = ? AND idempotency_key = ?`, t.Customer, t.IdempotencyKey)
			return err
		}
		if err := byKey(); err != nil || found {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO channel_transfers (`+transferColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)`,
			t.ID, t.Customer, t.IdempotencyKey, t.BodyHash, t.FromAccount, t.ToAccount, t.Amount, t.Memo,
			t.State, t.Reason, micros(t.Deadline), micros(t.CreatedAt))
		switch {
		case err == nil:
			return nil
		case uniqueFailed(err, "channel_transfers.customer"):
			return byKey()
		case uniqueFailed(err, "channel_transfers.from_account"):
			return channel.ErrInProgress
		}
		return err
	})
	switch {
	case errors.Is(err, channel.ErrInProgress):
		return channel.Transfer{}, false, err
	case err != nil:
		return channel.Transfer{}, false, fmt.Errorf("create transfer %s: %w", t.ID, err)
	case found:
		return existing, false, nil
	}
	return t, true, nil
}

// uniqueFailed reports whether err is SQLite's unique constraint failure on
// an index whose first column is column (table.column).
func uniqueFailed(err error, column string) bool {
	return strings.Contains(err.Error(), "UNIQUE constraint failed: "+column)
}

func (s *ChannelStore) Transfer(ctx context.Context, id string) (channel.Transfer, bool, error) {
	t, ok, err := readTransfer(ctx, s.db.read, `id = ?`, id)
	if err != nil {
		return t, false, fmt.Errorf("read transfer %s: %w", id, err)
	}
	return t, ok, nil
}

func (s *ChannelStore) Settle(ctx context.Context, id, state, reason string, at time.Time) (channel.Transfer, bool, error) {
	if err := checkSettleState(state); err != nil {
		return channel.Transfer{}, false, fmt.Errorf("settle transfer %s: %w", id, err)
	}
	var t channel.Transfer
	var changed bool
	err := s.inWriteTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE channel_transfers SET state = ?, reason = ?, settled_at = ?
			WHERE id = ? AND state = 'pending'`, state, reason, micros(at), id)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		changed = n == 1
		var ok bool
		if t, ok, err = readTransfer(ctx, tx, `id = ?`, id); err == nil && !ok {
			err = banksync.Errorf(banksync.ENOTFOUND, "no transfer %s", id)
		}
		return err
	})
	if err != nil {
		return channel.Transfer{}, false, fmt.Errorf("settle transfer %s: %w", id, err)
	}
	return t, changed, nil
}

func checkSettleState(state string) error {
	if state != channel.StateCompleted && state != channel.StateFailed {
		return fmt.Errorf("state %q is not a settled state", state)
	}
	return nil
}

func (s *ChannelStore) PendingBefore(ctx context.Context, t time.Time, limit int) ([]channel.Transfer, error) {
	if limit <= 0 {
		return nil, nil
	}
	ts, err := readTransfers(ctx, s.db.read, `state = 'pending' AND deadline < ? ORDER BY deadline, id LIMIT ?`,
		micros(t), limit)
	if err != nil {
		return nil, fmt.Errorf("read transfers pending before %s: %w", t, err)
	}
	return ts, nil
}

func (s *ChannelStore) PendingOf(ctx context.Context, account string) ([]channel.Transfer, error) {
	ts, err := readTransfers(ctx, s.db.read, `from_account = ? AND state = 'pending' ORDER BY id`, account)
	if err != nil {
		return nil, fmt.Errorf("read pending transfers of %s: %w", account, err)
	}
	return ts, nil
}

// History.

// Apply checks the entries' shape before it writes anything, then moves
// synced_seq only from the value the entries follow: if another applier got
// there first the UPDATE matches no row (or, had it written history above
// synced_seq, the insert hits the primary key) and the transaction is
// rolled back whole.
func (s *ChannelStore) Apply(ctx context.Context, account string, entries []banksync.Entry, at time.Time) (channel.AccountState, error) {
	if err := channel.CheckRun(account, entries); err != nil {
		return channel.AccountState{}, fmt.Errorf("apply to %s: %w", account, err)
	}
	s.states.foreignWrite()
	defer s.states.foreignWrite()
	var st channel.AccountState
	err := s.inWriteTx(ctx, func(tx *sql.Tx) error {
		if len(entries) == 0 || entries[0].Seq == 1 {
			// An account not yet known starts at seq 0, without an owner.
			if _, err := tx.ExecContext(ctx, `INSERT INTO channel_accounts (id, synced_seq, balance, stale)
				VALUES (?, 0, 0, 0) ON CONFLICT (id) DO NOTHING`, account); err != nil {
				return err
			}
		}
		if len(entries) == 0 {
			var err error
			st, _, err = readAccount(ctx, tx, account)
			return err
		}
		last := entries[len(entries)-1]
		var err error
		st, err = scanAccount(tx.StmtContext(ctx, s.advance).QueryRowContext(ctx,
			last.Seq, last.BalanceAfter, micros(at), account, entries[0].Seq-1))
		if errors.Is(err, sql.ErrNoRows) {
			return channel.ErrSeqConflict
		}
		if err != nil {
			return err
		}
		return s.appendHistory(ctx, tx, entries)
	})
	if err != nil {
		return channel.AccountState{}, fmt.Errorf("apply %d entries to %s: %w", len(entries), account, err)
	}
	if len(entries) > 0 {
		s.signalChanged()
	}
	return st, nil
}

// appendHistory inserts history rows; a row already there means another
// applier got there first.
func (s *ChannelStore) appendHistory(ctx context.Context, tx *sql.Tx, entries []banksync.Entry) error {
	err := s.insertHistory.insert(ctx, tx, len(entries), func(i int) []any {
		e := entries[i]
		return []any{e.AccountID, e.Seq, e.Position, string(e.Kind), e.Amount, e.BalanceAfter,
			e.Counterparty, e.TransferID, e.ExternalRef, e.Memo, micros(e.BookedAt)}
	})
	if err != nil && uniqueFailed(err, "channel_history.account_id") {
		return channel.ErrSeqConflict
	}
	return err
}

// idsPerReadMax bounds the ids of one "id IN (…)" read.
const idsPerReadMax = 500

// ApplyRuns applies many accounts' runs in one write transaction: one read
// of the states the cache does not hold, from which channel.PlanRuns (the
// in-order rule) decides what to write, then one multi-row insert of the
// history and one of the states.
func (s *ChannelStore) ApplyRuns(ctx context.Context, runs []channel.Run, at time.Time) ([]channel.RunResult, error) {
	if err := channel.CheckRuns(runs); err != nil {
		return nil, fmt.Errorf("apply runs: %w", err)
	}
	s.runsMu.Lock()
	defer s.runsMu.Unlock()
	var results []channel.RunResult
	var gen int64
	err := s.inWriteTx(ctx, func(tx *sql.Tx) error {
		var err error
		if gen, err = s.states.begin(ctx, tx); err != nil {
			return err
		}
		ids := make([]string, len(runs))
		for i, r := range runs {
			ids[i] = r.Account
		}
		known, missing := s.states.lookup(ids)
		if err := readAccountsInto(ctx, tx, known, missing); err != nil {
			return err
		}
		var plan [][]banksync.Entry
		results, plan = channel.PlanRuns(known, runs, at)
		// Written in key order, each insert lands beside the last one
		// in the b-tree, on pages the cache just touched.
		order := make([]int, len(runs))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(i, j int) int { return strings.Compare(runs[i].Account, runs[j].Account) })
		var entries []banksync.Entry
		var moved []channel.AccountState
		for _, i := range order {
			if len(plan[i]) > 0 {
				entries = append(entries, plan[i]...)
				moved = append(moved, results[i].State)
			}
		}
		if err := s.appendHistory(ctx, tx, entries); err != nil {
			return err
		}
		return s.upsertAccounts.insert(ctx, tx, len(moved), func(i int) []any {
			a := moved[i]
			return []any{a.ID, a.SyncedSeq, a.Balance, micros(a.SyncedAt), 0}
		})
	})
	if err != nil {
		s.states.forget()
		return nil, fmt.Errorf("apply runs of %d accounts: %w", len(runs), err)
	}
	s.states.commit(gen, results)
	s.signalChanged()
	return results, nil
}

// Changed is signalled after each commit of history entries in this
// process.
func (s *ChannelStore) Changed() <-chan struct{} { return s.changed }

func (s *ChannelStore) signalChanged() {
	select {
	case s.changed <- struct{}{}:
	default: // one is waiting already
	}
}

// SyncedSeqs reads the synced seqs of ids, idsPerReadMax at a time.
func (s *ChannelStore) SyncedSeqs(ctx context.Context, ids []string) (map[string]int64, error) {
	known := make(map[string]channel.AccountState, len(ids))
	if err := readAccountsInto(ctx, s.db.read, known, ids); err != nil {
		return nil, fmt.Errorf("read synced seqs of %d accounts: %w", len(ids), err)
	}
	seqs := make(map[string]int64, len(known))
	for id, a := range known {
		seqs[id] = a.SyncedSeq
	}
	return seqs, nil
}

// readAccountsInto reads the states of ids into known, idsPerReadMax at a
// time; an account the table does not hold stays out of known.
func readAccountsInto(ctx context.Context, q queryer, known map[string]channel.AccountState, ids []string) error {
	for start := 0; start < len(ids); start += idsPerReadMax {
		in, args := inList(ids[start:min(len(ids), start+idsPerReadMax)])
		as, err := readAccounts(ctx, q, `id IN (`+in+`)`, args...)
		if err != nil {
			return err
		}
		for _, a := range as {
			known[a.ID] = a
		}
	}
	return nil
}

// StaleAccounts returns up to limit stale accounts, stale longest first.
func (s *ChannelStore) StaleAccounts(ctx context.Context, limit int) ([]string, error) {
	rows, err := s.db.read.QueryContext(ctx, `SELECT id FROM channel_accounts WHERE stale = 1
		ORDER BY stale_since, id LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("read stale accounts: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("read stale accounts: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

func (s *ChannelStore) Backlog(ctx context.Context) (channel.Backlog, error) {
	var b channel.Backlog
	var oldest sql.NullInt64
	err := s.db.read.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM channel_transfers WHERE state = 'pending'),
		(SELECT min(created_at) FROM channel_transfers WHERE state = 'pending'),
		(SELECT count(*) FROM channel_accounts WHERE stale = 1)`).Scan(&b.Pending, &oldest, &b.Stale)
	if err != nil {
		return b, fmt.Errorf("read backlog: %w", err)
	}
	if oldest.Valid {
		b.OldestPending = fromMicros(oldest.Int64)
	}
	return b, nil
}

// ClearStale clears the stale flag if no MarkStale came after the one that
// gave gen.
func (s *ChannelStore) ClearStale(ctx context.Context, account string, gen int64) error {
	s.states.foreignWrite()
	defer s.states.foreignWrite()
	if _, err := s.db.write.ExecContext(ctx, `UPDATE channel_accounts SET stale = 0, stale_since = NULL
		WHERE id = ? AND stale = 1 AND stale_gen = ?`, account, gen); err != nil {
		return fmt.Errorf("clear stale %s: %w", account, err)
	}
	return nil
}

// MarkStale keeps stale_since of an account already stale: it says since
// when the history may have been behind.
func (s *ChannelStore) MarkStale(ctx context.Context, account string, at time.Time) error {
	s.states.foreignWrite()
	defer s.states.foreignWrite()
	_, err := s.db.write.ExecContext(ctx, `INSERT INTO channel_accounts (id, synced_seq, balance, stale, stale_since, stale_gen)
		VALUES (?, 0, 0, 1, ?, 1)
		ON CONFLICT (id) DO UPDATE SET stale = 1, stale_gen = channel_accounts.stale_gen + 1,
			stale_since = CASE WHEN channel_accounts.stale = 1 THEN channel_accounts.stale_since ELSE excluded.stale_since END`,
		account, micros(at))
	if err != nil {
		return fmt.Errorf("mark %s stale: %w", account, err)
	}
	return nil
}

func (s *ChannelStore) History(ctx context.Context, account string, beforeSeq int64, limit int) ([]banksync.Entry, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.db.read.QueryContext(ctx, `SELECT account_id, seq, entry_id, kind, amount, balance_after,
			counterparty, transfer_id, external_ref, memo, booked_at
		FROM channel_history WHERE account_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?`, account, beforeSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("read history of %s before seq %d: %w", account, beforeSeq, err)
	}
	es, err := scanEntries(rows)
	if err != nil {
		return nil, fmt.Errorf("read history of %s before seq %d: %w", account, beforeSeq, err)
	}
	return es, nil
}

// Statement reads a page of a statement along the history's primary key:
// the booking times filter the account's rows, so a statement costs a walk
// of the account's entries from afterSeq, and the history keeps no second
// index that every insert of a drain would pay for.
func (s *ChannelStore) Statement(ctx context.Context, account string, afterSeq, throughSeq int64, from, to time.Time, limit int) ([]banksync.Entry, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.db.read.QueryContext(ctx, `SELECT account_id, seq, entry_id, kind, amount, balance_after,
			counterparty, transfer_id, external_ref, memo, booked_at
		FROM channel_history WHERE account_id = ? AND seq > ? AND seq <= ? AND booked_at >= ? AND booked_at < ?
		ORDER BY seq LIMIT ?`, account, afterSeq, throughSeq, micros(from), micros(to), limit)
	if err != nil {
		return nil, fmt.Errorf("read statement of %s after seq %d: %w", account, afterSeq, err)
	}
	es, err := scanEntries(rows)
	if err != nil {
		return nil, fmt.Errorf("read statement of %s after seq %d: %w", account, afterSeq, err)
	}
	return es, nil
}

func fromNullMicros(us sql.NullInt64) time.Time {
	if !us.Valid {
		return time.Time{}
	}
	return fromMicros(us.Int64)
}

// Migrations lists the channel schema's migrations, embedded and applied.
func (s *ChannelStore) Migrations(ctx context.Context) (known, applied []string, err error) {
	return s.db.migrations(ctx, "channel")
}
