package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/gofrs/flock"

	"banksync"
	"banksync/ledger"
)

// LedgerStore is the core ledger on SQLite.
type LedgerStore struct {
	db   *db
	lock *flock.Flock

	insertAccounts, insertEntries, insertTransfers, insertDeposits *inserter
	updateAccount                                                  *sql.Stmt
}

var _ ledger.Store = (*LedgerStore)(nil)

// OpenLedger opens (creating if needed) the ledger database at path and
// applies its migrations. A lock file beside it keeps a second ledger
// process from writing to the same database.
func OpenLedger(ctx context.Context, path string) (*LedgerStore, error) {
	lock := flock.New(path + ".lock")
	ok, err := lock.TryLock()
	if err != nil {
		return nil, fmt.Errorf("lock ledger %s: %w", path, err)
	}
	if !ok {
		return nil, fmt.Errorf("lock ledger %s: another core process holds %s", path, lock.Path())
	}
	d, err := openDB(ctx, path)
	if err != nil {
		lock.Unlock()
		return nil, err
	}
	if err := d.migrate(ctx, "ledger"); err != nil {
		d.close()
		lock.Unlock()
		return nil, err
	}
	s := &LedgerStore{db: d, lock: lock}
	if err := s.prepare(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// The multi-row inserts are INSERT OR ROLLBACK, as the channel's are (see
// ChannelStore.prepare): a failed Commit is rolled back whole anyway, and a
// statement that would undo only itself costs a statement journal.
func (s *LedgerStore) prepare(ctx context.Context) (err error) {
	w := s.db.write
	if s.insertAccounts, err = newInserter(ctx, w, `INSERT OR ROLLBACK INTO ledger_accounts (id, owner, balance, last_seq, created_at)`, "", 5); err != nil {
		return err
	}
	if s.insertEntries, err = newInserter(ctx, w, `INSERT OR ROLLBACK INTO ledger_entries (position, account_id, seq, kind,
		amount, balance_after, counterparty, transfer_id, external_ref, memo, booked_at)`, "", 11); err != nil {
		return err
	}
	if s.insertTransfers, err = newInserter(ctx, w, `INSERT OR ROLLBACK INTO ledger_transfers (id, body_hash, status, reason,
		from_account, to_account, amount, from_seq, to_seq, decided_at)`, "", 10); err != nil {
		return err
	}
	if s.insertDeposits, err = newInserter(ctx, w, `INSERT OR ROLLBACK INTO ledger_deposits (external_ref, body_hash,
		account_id, amount, seq, booked_at)`, "", 6); err != nil {
		return err
	}
	s.updateAccount, err = w.PrepareContext(ctx, `UPDATE ledger_accounts SET balance = ?, last_seq = ? WHERE id = ?`)
	return err
}

// Close closes the database and releases the writer lock.
func (s *LedgerStore) Close() error {
	for _, in := range []*inserter{s.insertAccounts, s.insertEntries, s.insertTransfers, s.insertDeposits} {
		if in != nil {
			in.close()
		}
	}
	if s.updateAccount != nil {
		s.updateAccount.Close()
	}
	return errors.Join(s.db.close(), s.lock.Unlock())
}

func (s *LedgerStore) LastPosition(ctx context.Context) (int64, error) {
	var p int64
	err := s.db.read.QueryRowContext(ctx, `SELECT coalesce(max(position), 0) FROM ledger_entries`).Scan(&p)
	if err != nil {
		return 0, fmt.Errorf("last position: %w", err)
	}
	return p, nil
}

func (s *LedgerStore) Accounts(ctx context.Context, ids []string) ([]banksync.Account, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	in, args := inList(ids)
	rows, err := s.db.read.QueryContext(ctx,
		`SELECT id, owner, balance, last_seq, created_at FROM ledger_accounts WHERE id IN (`+in+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("read accounts: %w", err)
	}
	accts, err := scanAccounts(rows)
	if err != nil {
		return nil, fmt.Errorf("read accounts: %w", err)
	}
	return accts, nil
}

// AccountsOf returns up to limit accounts of owner, by id.
func (s *LedgerStore) AccountsOf(ctx context.Context, owner string, limit int) ([]banksync.Account, error) {
	rows, err := s.db.read.QueryContext(ctx, `SELECT id, owner, balance, last_seq, created_at
		FROM ledger_accounts WHERE owner = ? ORDER BY id LIMIT ?`, owner, limit)
	if err != nil {
		return nil, fmt.Errorf("read accounts of %s: %w", owner, err)
	}
	accts, err := scanAccounts(rows)
	if err != nil {
		return nil, fmt.Errorf("read accounts of %s: %w", owner, err)
	}
	return accts, nil
}

func scanAccounts(rows *sql.Rows) ([]banksync.Account, error) {
	defer rows.Close()
	var out []banksync.Account
	for rows.Next() {
		var a banksync.Account
		var created int64
		if err := rows.Scan(&a.ID, &a.Owner, &a.Balance, &a.LastSeq, &created); err != nil {
			return nil, err
		}
		a.CreatedAt = fromMicros(created)
		out = append(out, a)
	}
	return out, rows.Err()
}

func (s *LedgerStore) Transfers(ctx context.Context, ids []string) ([]ledger.TransferRecord, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	in, args := inList(ids)
	rows, err := s.db.read.QueryContext(ctx, `SELECT id, body_hash, status, reason, from_account, to_account,
		amount, from_seq, to_seq, decided_at FROM ledger_transfers WHERE id IN (`+in+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("read transfers: %w", err)
	}
	defer rows.Close()
	var out []ledger.TransferRecord
	for rows.Next() {
		var r ledger.TransferRecord
		var decided int64
		if err := rows.Scan(&r.ID, &r.BodyHash, &r.Status, &r.Reason, &r.FromAccount, &r.ToAccount,
			&r.Amount, &r.FromSeq, &r.ToSeq, &decided); err != nil {
			return nil, fmt.Errorf("read transfers: %w", err)
		}
		r.DecidedAt = fromMicros(decided)
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *LedgerStore) Deposits(ctx context.Context, refs []string) ([]ledger.DepositRecord, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	in, args := inList(refs)
	rows, err := s.db.read.QueryContext(ctx, `SELECT external_ref, body_hash, account_id, amount, seq, booked_at
		FROM ledger_deposits WHERE external_ref IN (`+in+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("read deposits: %w", err)
	}
	defer rows.Close()
	var out []ledger.DepositRecord
	for rows.Next() {
		var r ledger.DepositRecord
		var booked int64
		if err := rows.Scan(&r.ExternalRef, &r.BodyHash, &r.AccountID, &r.Amount, &r.Seq, &booked); err != nil {
			return nil, fmt.Errorf("read deposits: %w", err)
		}
		r.BookedAt = fromMicros(booked)
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *LedgerStore) Commit(ctx context.Context, b *ledger.Batch) (err error) {
	tx, err := s.db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("commit batch: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	if err := s.insertAccounts.insert(ctx, tx, len(b.NewAccounts), func(i int) []any {
		a := b.NewAccounts[i]
		return []any{a.ID, a.Owner, a.Balance, a.LastSeq, micros(a.CreatedAt)}
	}); err != nil {
		return fmt.Errorf("commit batch: insert accounts: %w", err)
	}
	if len(b.Accounts) > 0 {
		upd := tx.StmtContext(ctx, s.updateAccount)
		for _, a := range b.Accounts {
			res, err := upd.ExecContext(ctx, a.Balance, a.LastSeq, a.ID)
			if err != nil {
				return fmt.Errorf("commit batch: update account %s: %w", a.ID, err)
			}
			if n, err := res.RowsAffected(); err != nil || n != 1 {
				return fmt.Errorf("commit batch: update account %s: %d rows: %w", a.ID, n, err)
			}
		}
	}
	if err := s.insertEntries.insert(ctx, tx, len(b.Entries), func(i int) []any {
		e := b.Entries[i]
		return []any{e.Position, e.AccountID, e.Seq, string(e.Kind), e.Amount, e.BalanceAfter,
			e.Counterparty, e.TransferID, e.ExternalRef, e.Memo, micros(e.BookedAt)}
	}); err != nil {
		return fmt.Errorf("commit batch: insert entries: %w", err)
	}
	if err := s.insertTransfers.insert(ctx, tx, len(b.Transfers), func(i int) []any {
		r := b.Transfers[i]
		return []any{r.ID, r.BodyHash, r.Status, r.Reason, r.FromAccount, r.ToAccount, r.Amount,
			r.FromSeq, r.ToSeq, micros(r.DecidedAt)}
	}); err != nil {
		return fmt.Errorf("commit batch: insert transfers: %w", duplicateKey(err))
	}
	if err := s.insertDeposits.insert(ctx, tx, len(b.Deposits), func(i int) []any {
		r := b.Deposits[i]
		return []any{r.ExternalRef, r.BodyHash, r.AccountID, r.Amount, r.Seq, micros(r.BookedAt)}
	}); err != nil {
		return fmt.Errorf("commit batch: insert deposits: %w", duplicateKey(err))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit batch: %w", err)
	}
	return nil
}

const entryColumns = `account_id, seq, position, kind, amount, balance_after, counterparty, transfer_id,
	external_ref, memo, booked_at`

func scanEntries(rows *sql.Rows) ([]banksync.Entry, error) {
	defer rows.Close()
	var out []banksync.Entry
	for rows.Next() {
		var e banksync.Entry
		var kind string
		var booked int64
		if err := rows.Scan(&e.AccountID, &e.Seq, &e.Position, &kind, &e.Amount, &e.BalanceAfter,
			&e.Counterparty, &e.TransferID, &e.ExternalRef, &e.Memo, &booked); err != nil {
			return nil, err
		}
		e.Kind = banksync.EntryKind(kind)
		e.BookedAt = fromMicros(booked)
		out = append(out, e)
	}
	return out, rows.Err()
}

func (s *LedgerStore) Entries(ctx context.Context, account string, afterSeq int64, limit int) ([]banksync.Entry, error) {
	rows, err := s.db.read.QueryContext(ctx, `SELECT `+entryColumns+` FROM ledger_entries
		WHERE account_id = ? AND seq > ? ORDER BY seq LIMIT ?`, account, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("read entries: %w", err)
	}
	entries, err := scanEntries(rows)
	if err != nil {
		return nil, fmt.Errorf("read entries: %w", err)
	}
	return entries, nil
}

func (s *LedgerStore) Entry(ctx context.Context, account string, seq int64) (banksync.Entry, bool, error) {
	rows, err := s.db.read.QueryContext(ctx, `SELECT `+entryColumns+` FROM ledger_entries
		WHERE account_id = ? AND seq = ?`, account, seq)
	if err != nil {
		return banksync.Entry{}, false, fmt.Errorf("read entry: %w", err)
	}
	entries, err := scanEntries(rows)
	if err != nil || len(entries) == 0 {
		return banksync.Entry{}, false, err
	}
	return entries[0], true, nil
}

func (s *LedgerStore) EntriesAfter(ctx context.Context, after int64, limit int) ([]banksync.Entry, error) {
	rows, err := s.db.read.QueryContext(ctx, `SELECT `+entryColumns+` FROM ledger_entries
		WHERE position > ? ORDER BY position LIMIT ?`, after, limit)
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	entries, err := scanEntries(rows)
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	return entries, nil
}

func (s *LedgerStore) RelayPosition(ctx context.Context) (int64, error) {
	var p int64
	if err := s.db.read.QueryRowContext(ctx, `SELECT position FROM ledger_relay WHERE id = 1`).Scan(&p); err != nil {
		return 0, fmt.Errorf("read relay position: %w", err)
	}
	return p, nil
}

// SetRelayPosition goes through the writer pool: SQLite allows one writer,
// and the relay is a writer too.
func (s *LedgerStore) SetRelayPosition(ctx context.Context, position int64) error {
	if _, err := s.db.write.ExecContext(ctx, `UPDATE ledger_relay SET position = ? WHERE id = 1`, position); err != nil {
		return fmt.Errorf("set relay position: %w", err)
	}
	return nil
}

func (s *LedgerStore) Totals(ctx context.Context) (ledger.Totals, error) {
	var t ledger.Totals
	err := s.db.read.QueryRowContext(ctx, `SELECT
		(SELECT coalesce(sum(balance), 0) FROM ledger_accounts),
		(SELECT coalesce(sum(amount), 0) FROM ledger_deposits),
		(SELECT count(*) FROM ledger_accounts WHERE balance < 0)`).Scan(&t.Balances, &t.Deposits, &t.NegativeAccounts)
	if err != nil {
		return t, fmt.Errorf("read totals: %w", err)
	}
	return t, nil
}

// duplicateKey marks a primary key violation of a transfer id or deposit ref
// as ledger.ErrDuplicate: the ledger's optimistic idempotency check.
func duplicateKey(err error) error {
	msg := err.Error()
	if strings.Contains(msg, "UNIQUE constraint failed: ledger_transfers.id") ||
		strings.Contains(msg, "UNIQUE constraint failed: ledger_deposits.external_ref") {
		return fmt.Errorf("%w: %w", ledger.ErrDuplicate, err)
	}
	return err
}

// Migrations lists the ledger schema's migrations, embedded and applied.
func (s *LedgerStore) Migrations(ctx context.Context) (known, applied []string, err error) {
	return s.db.migrations(ctx, "ledger")
}
