// Package postgres stores banksync's ledger (and later the channel) in
// PostgreSQL through pgx v5. Schemas are embedded and migrated on open.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"banksync"
	"banksync/ledger"
)

var _ ledger.Store = (*LedgerStore)(nil)

// ErrLedgerLocked is returned by OpenLedger when another process holds the
// ledger's writer lock on the database, and by writes of a store that lost
// its writer session while another process took the lock.
var ErrLedgerLocked = errors.New("ledger database is locked by another ledger process")

const (
	// writerLockKey is the session-level advisory lock only the one ledger
	// process may hold: two writers would hand out the same positions and
	// sequence numbers.
	writerLockKey int64 = 0x62616e6b6c656467 // "bankledg"

	// writerLockWait bounds how long OpenLedger waits for the writer lock, so
	// a rolling restart gets through while the old process exits, yet a
	// second ledger started by mistake fails fast.
	writerLockWait     = 3 * time.Second
	writerLockInterval = 100 * time.Millisecond

	// writerConnectTimeout bounds connecting the writer session and taking
	// its lock, so a write after a lost session fails in bounded time while
	// the server is unreachable rather than holding the writer up.
	writerConnectTimeout = 5 * time.Second
	// openConnectTimeout bounds reaching the server when a store opens, so
	// an address that drops packets fails the start with the cause instead
	// of hanging it (pgx has no connect timeout unless the DSN sets one).
	openConnectTimeout = 10 * time.Second
	// writerCloseTimeout bounds saying goodbye to the server on a session
	// being given up.
	writerCloseTimeout = 5 * time.Second

	// writerApplicationName is the application_name of the writer session,
	// so operators (and tests) can find it in pg_stat_activity.
	writerApplicationName = "banksync-ledger-writer"
)

// LedgerStore is the ledger.Store on PostgreSQL. Reads go through a pool;
// every write goes through the one session that holds the writer lock, so
// if that session dies the lock and the right to write die with it, and a
// process that lost the lock can never write after another took it over.
//
// A lost session (server restart, network failure, a commit cancelled mid
// flight) is re-established on the next write: a new session takes the lock
// again, with one try, and only then writes; while another process holds
// the lock every write fails with ErrLedgerLocked. That is safe because the
// ledger treats a failed Commit as "state unknown" and reloads what it
// cached before its next batch; so that it always sees one, the first Commit
// after a loss found by another call fails without writing.
type LedgerStore struct {
	pool      *pgxpool.Pool
	writerCfg *pgx.ConnConfig
	log       *slog.Logger

	mu     sync.Mutex // serialises use of writer, which is not concurrency-safe
	writer *pgx.Conn  // holds the lock; nil once lost or closed
	// lost is the last writer session lost, until it is known closed: on a
	// cancelled context pgx cancels its statement and ends it in the
	// background, and the lock is free only once it has.
	lost   *pgx.Conn
	closed bool
	// lossUnseen is set when the writer session was found lost by a call
	// other than Commit: the ledger has not seen a commit fail since, so its
	// cached balances and positions may be stale.
	lossUnseen bool
	readOnly   bool // OpenLedgerReader: every write refused
}

// OpenLedger connects to dsn, migrates the ledger schema and takes the
// writer lock, failing with ErrLedgerLocked if another ledger holds it.
func OpenLedger(ctx context.Context, dsn string, opts ...Option) (*LedgerStore, error) {
	o := newOptions(opts)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open ledger store: parse dsn: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open ledger store: %w", err)
	}
	if err := ping(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open ledger store: %w", err)
	}
	if err := migrate(ctx, pool, "ledger"); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open ledger store: %w", err)
	}
	// A connection of its own rather than one borrowed from the pool, so the
	// pool's idle and lifetime limits never end the session holding the lock.
	writerCfg := cfg.ConnConfig.Copy()
	writerCfg.RuntimeParams["application_name"] = writerApplicationName
	writer, err := connectWriter(ctx, writerCfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open ledger store: %w", err)
	}
	if err := lockWriter(ctx, writer); err != nil {
		closeWriter(writer)
		pool.Close()
		return nil, fmt.Errorf("open ledger store: %w", err)
	}
	return &LedgerStore{pool: pool, writerCfg: writerCfg, log: o.logger, writer: writer}, nil
}

// OpenLedgerReader opens the ledger database of dsn to read only, beside
// the ledger process that writes it: no writer lock, no migrations (the
// ledger process applies them), and every write refused. Audits and the
// deployed chaos run's checker read core's database this way.
func OpenLedgerReader(ctx context.Context, dsn string, opts ...Option) (*LedgerStore, error) {
	o := newOptions(opts)
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open ledger reader: parse dsn: %w", err)
	}
	// The server refuses writes too, not only this type's methods.
	cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open ledger reader: %w", err)
	}
	if err := ping(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open ledger reader: %w", err)
	}
	return &LedgerStore{pool: pool, log: o.logger, readOnly: true}, nil
}

// ping connects once, within openConnectTimeout, so that a server that
// cannot be reached, or has no such database, is reported as such rather
// than as the first migration failing.
func ping(ctx context.Context, pool *pgxpool.Pool) error {
	pingCtx, cancel := context.WithTimeout(ctx, openConnectTimeout)
	defer cancel()
	err := pool.Ping(pingCtx)
	switch {
	case err == nil:
		return nil
	case ctx.Err() == nil && pingCtx.Err() != nil:
		return fmt.Errorf("connect: no answer within %s: %w", openConnectTimeout, err)
	}
	return fmt.Errorf("connect: %w", err)
}

func connectWriter(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, writerConnectTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect writer session: %w", err)
	}
	return conn, nil
}

func closeWriter(conn *pgx.Conn) error {
	ctx, cancel := context.WithTimeout(context.Background(), writerCloseTimeout)
	defer cancel()
	return conn.Close(ctx)
}

// tryLockWriter takes the writer lock on conn if it is free, at once.
func tryLockWriter(ctx context.Context, conn *pgx.Conn) (bool, error) {
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", writerLockKey).Scan(&ok); err != nil {
		return false, fmt.Errorf("take writer lock: %w", err)
	}
	return ok, nil
}

func lockWriter(ctx context.Context, conn *pgx.Conn) error {
	deadline := time.Now().Add(writerLockWait)
	for {
		ok, err := tryLockWriter(ctx, conn)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("take writer lock (waited %s): %w", writerLockWait, ErrLedgerLocked)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("take writer lock: %w", ctx.Err())
		case <-time.After(writerLockInterval):
		}
	}
}

// Close releases the writer lock, by ending its session, and the pool.
func (s *LedgerStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var err error
	if s.writer != nil {
		err = closeWriter(s.writer)
		s.writer = nil
	}
	s.pool.Close()
	if err != nil {
		return fmt.Errorf("close ledger store: %w", err)
	}
	return nil
}

// withWriter runs fn on the session holding the writer lock, first
// re-establishing it if it was lost. fn is run once: whatever it did, a
// failed write is for the caller to judge, never retried here.
func (s *LedgerStore) withWriter(ctx context.Context, commit bool, fn func(conn *pgx.Conn) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("ledger store is closed")
	}
	if s.readOnly {
		return errors.New("ledger store is opened to read only (OpenLedgerReader)")
	}
	if commit && s.lossUnseen {
		s.lossUnseen = false
		return errors.New("ledger writer session was lost since the last commit: reload state and retry")
	}
	if s.writer == nil {
		if err := s.reestablish(ctx); err != nil {
			return err
		}
	}
	err := fn(s.writer)
	// pgx closes a connection on any failure that leaves its state unknown
	// (network error, fatal server error, cancelled context): then the
	// session, and the lock, may be gone.
	if s.writer.IsClosed() {
		s.log.Warn("ledger writer session lost; it will be re-established on the next write",
			"pid", s.writer.PgConn().PID(), "err", err)
		s.lost, s.writer = s.writer, nil
		s.lossUnseen = !commit
	}
	return err
}

// reestablish opens a new writer session and takes the lock with one try.
// Retrying is left to the next write, so a store that lost the lock to
// another process keeps failing until that one lets go.
func (s *LedgerStore) reestablish(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, writerConnectTimeout)
	defer cancel()
	var conn *pgx.Conn
	err := s.awaitLost(ctx)
	if err == nil {
		conn, err = s.connectAndLock(ctx)
	}
	if err != nil {
		err = fmt.Errorf("re-establish ledger writer session: %w", err)
		s.log.Warn("ledger writer session not re-established; will try again on the next write", "err", err)
		return err
	}
	s.writer = conn
	s.log.Info("ledger writer session re-established", "pid", conn.PgConn().PID())
	return nil
}

// awaitLost waits until the lost session has closed, so that trying the lock
// right after a cancelled commit does not find it still held by that session.
func (s *LedgerStore) awaitLost(ctx context.Context) error {
	if s.lost == nil {
		return nil
	}
	select {
	case <-s.lost.PgConn().CleanupDone():
		s.lost = nil
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for the lost session to close: %w", ctx.Err())
	}
}

func (s *LedgerStore) connectAndLock(ctx context.Context) (*pgx.Conn, error) {
	conn, err := connectWriter(ctx, s.writerCfg)
	if err != nil {
		return nil, err
	}
	ok, err := tryLockWriter(ctx, conn)
	if err == nil && !ok {
		err = fmt.Errorf("take writer lock: %w", ErrLedgerLocked)
	}
	if err != nil {
		closeWriter(conn)
		return nil, err
	}
	return conn, nil
}

// Commit writes b in one transaction on the writer session.
//
// All statements go out in one pipeline ending in a single Sync, which
// PostgreSQL runs as one implicit transaction: all or nothing, in one round
// trip. Measured on batches of 1 to 2000 transfers this matched COPY at the
// large end and was about twice as fast for small batches, where the extra
// round trips of BEGIN, one COPY per table and COMMIT dominate.
//
// A commit that fails may or may not have reached the disk; it is not
// retried. Cancelling ctx mid-commit closes the writer session, which the
// next write re-establishes.
func (s *LedgerStore) Commit(ctx context.Context, b *ledger.Batch) error {
	var q pgx.Batch
	var parts []string // what each queued statement writes, for errors
	if len(b.NewAccounts) > 0 {
		queueNewAccounts(&q, b.NewAccounts)
		parts = append(parts, fmt.Sprintf("insert %d new accounts", len(b.NewAccounts)))
	}
	if len(b.Accounts) > 0 {
		queueAccountUpdates(&q, b.Accounts)
		parts = append(parts, fmt.Sprintf("update %d accounts", len(b.Accounts)))
	}
	if len(b.Entries) > 0 {
		queueEntries(&q, b.Entries)
		parts = append(parts, fmt.Sprintf("insert %d entries", len(b.Entries)))
	}
	if len(b.Transfers) > 0 {
		queueTransfers(&q, b.Transfers)
		parts = append(parts, fmt.Sprintf("insert %d transfers", len(b.Transfers)))
	}
	if len(b.Deposits) > 0 {
		queueDeposits(&q, b.Deposits)
		parts = append(parts, fmt.Sprintf("insert %d deposits", len(b.Deposits)))
	}
	if q.Len() == 0 {
		return nil
	}

	err := s.withWriter(ctx, true, func(conn *pgx.Conn) error {
		br := conn.SendBatch(ctx, &q)
		for _, part := range parts {
			if _, err := br.Exec(); err != nil {
				br.Close()
				return fmt.Errorf("%s: %w", part, err)
			}
		}
		return br.Close()
	})
	if isDuplicateKey(err) {
		return fmt.Errorf("commit ledger batch: %w: %w", ledger.ErrDuplicate, err)
	}
	if err != nil {
		return fmt.Errorf("commit ledger batch: %w", err)
	}
	return nil
}

// isDuplicateKey reports whether err is a unique violation on a transfer id
// or a deposit ref: the ledger's optimistic idempotency check.
func isDuplicateKey(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505" &&
		(pgErr.TableName == "ledger_transfers" || pgErr.TableName == "ledger_deposits")
}

func queueNewAccounts(q *pgx.Batch, as []banksync.Account) {
	n := len(as)
	ids, owners, balances, seqs, created := make([]string, n), make([]string, n), make([]int64, n), make([]int64, n), make([]time.Time, n)
	for i, a := range as {
		ids[i], owners[i], balances[i], seqs[i], created[i] = a.ID, a.Owner, a.Balance, a.LastSeq, a.CreatedAt
	}
	q.Queue(`INSERT INTO ledger_accounts (id, owner, balance, last_seq, created_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::timestamptz[])`,
		ids, owners, balances, seqs, created)
}

// queueAccountUpdates sets final balances in one statement. Each listed
// account must be updated exactly once, else the whole batch fails: a missing
// or doubled account, or a last_seq going back (a writer with a stale view),
// is a bug in the writer, never data to store. The check runs in SQL because
// the pipeline's transaction commits before the client sees any row count.
func queueAccountUpdates(q *pgx.Batch, as []banksync.Account) {
	n := len(as)
	ids, balances, seqs := make([]string, n), make([]int64, n), make([]int64, n)
	for i, a := range as {
		ids[i], balances[i], seqs[i] = a.ID, a.Balance, a.LastSeq
	}
	q.Queue(`WITH updated AS (
			UPDATE ledger_accounts a
			SET balance = u.balance, last_seq = u.last_seq
			FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS u(id, balance, last_seq)
			WHERE a.id = u.id AND u.last_seq >= a.last_seq
			RETURNING 1
		), counted AS (SELECT count(*) AS n FROM updated)
		SELECT ledger_assert(n = cardinality($1::text[]), format(
			'invariant broken: updated %s of %s accounts (one is missing, listed twice or its last_seq went back)',
			n, cardinality($1::text[])))
		FROM counted`, ids, balances, seqs)
}

func queueEntries(q *pgx.Batch, es []banksync.Entry) {
	n := len(es)
	var (
		positions, seqs, amounts, balances = make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		accounts, kinds, counterparties    = make([]string, n), make([]string, n), make([]string, n)
		transferIDs, externalRefs, memos   = make([]string, n), make([]string, n), make([]string, n)
		booked                             = make([]time.Time, n)
	)
	for i, e := range es {
		positions[i], accounts[i], seqs[i], kinds[i] = e.Position, e.AccountID, e.Seq, string(e.Kind)
		amounts[i], balances[i], counterparties[i] = e.Amount, e.BalanceAfter, e.Counterparty
		transferIDs[i], externalRefs[i], memos[i], booked[i] = e.TransferID, e.ExternalRef, e.Memo, e.BookedAt
	}
	q.Queue(`INSERT INTO ledger_entries (position, account_id, seq, kind, amount, balance_after,
			counterparty, transfer_id, external_ref, memo, booked_at)
		SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[],
			$7::text[], $8::text[], $9::text[], $10::text[], $11::timestamptz[])`,
		positions, accounts, seqs, kinds, amounts, balances,
		counterparties, transferIDs, externalRefs, memos, booked)
}

func queueTransfers(q *pgx.Batch, ts []ledger.TransferRecord) {
	n := len(ts)
	var (
		ids, hashes, statuses, reasons = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		froms, tos                     = make([]string, n), make([]string, n)
		amounts, fromSeqs, toSeqs      = make([]int64, n), make([]int64, n), make([]int64, n)
		decided                        = make([]time.Time, n)
	)
	for i, t := range ts {
		ids[i], hashes[i], statuses[i], reasons[i] = t.ID, t.BodyHash, t.Status, t.Reason
		froms[i], tos[i], amounts[i], fromSeqs[i], toSeqs[i], decided[i] = t.FromAccount, t.ToAccount, t.Amount, t.FromSeq, t.ToSeq, t.DecidedAt
	}
	q.Queue(`INSERT INTO ledger_transfers (id, body_hash, status, reason, from_account, to_account,
			amount, from_seq, to_seq, decided_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
			$7::bigint[], $8::bigint[], $9::bigint[], $10::timestamptz[])`,
		ids, hashes, statuses, reasons, froms, tos, amounts, fromSeqs, toSeqs, decided)
}

func queueDeposits(q *pgx.Batch, ds []ledger.DepositRecord) {
	n := len(ds)
	refs, hashes, accounts, amounts, seqs, booked := make([]string, n), make([]string, n), make([]string, n), make([]int64, n), make([]int64, n), make([]time.Time, n)
	for i, d := range ds {
		refs[i], hashes[i], accounts[i], amounts[i], seqs[i], booked[i] = d.ExternalRef, d.BodyHash, d.AccountID, d.Amount, d.Seq, d.BookedAt
	}
	q.Queue(`INSERT INTO ledger_deposits (external_ref, body_hash, account_id, amount, seq, booked_at)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::timestamptz[])`,
		refs, hashes, accounts, amounts, seqs, booked)
}

// LastPosition returns the highest committed entry position, 0 if none.
func (s *LedgerStore) LastPosition(ctx context.Context) (int64, error) {
	var p int64
	if err := s.pool.QueryRow(ctx, "SELECT coalesce(max(position), 0) FROM ledger_entries").Scan(&p); err != nil {
		return 0, fmt.Errorf("read last position: %w", err)
	}
	return p, nil
}

// Accounts returns those of ids that exist.
func (s *LedgerStore) Accounts(ctx context.Context, ids []string) ([]banksync.Account, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, `SELECT id, owner, balance, last_seq, created_at
		FROM ledger_accounts WHERE id = ANY($1)`, ids)
	as, err := collectAccounts(rows)
	if err != nil {
		return nil, fmt.Errorf("read %d accounts: %w", len(ids), err)
	}
	return as, nil
}

// AccountsOf returns up to limit accounts of owner, by id.
func (s *LedgerStore) AccountsOf(ctx context.Context, owner string, limit int) ([]banksync.Account, error) {
	rows, _ := s.pool.Query(ctx, `SELECT id, owner, balance, last_seq, created_at
		FROM ledger_accounts WHERE owner = $1 ORDER BY id LIMIT $2`, owner, limit)
	as, err := collectAccounts(rows)
	if err != nil {
		return nil, fmt.Errorf("read accounts of %s: %w", owner, err)
	}
	return as, nil
}

func collectAccounts(rows pgx.Rows) ([]banksync.Account, error) {
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (banksync.Account, error) {
		var a banksync.Account
		err := row.Scan(&a.ID, &a.Owner, &a.Balance, &a.LastSeq, &a.CreatedAt)
		a.CreatedAt = a.CreatedAt.UTC()
		return a, err
	})
}

// Transfers returns the recorded decisions for those of ids that exist.
func (s *LedgerStore) Transfers(ctx context.Context, ids []string) ([]ledger.TransferRecord, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, `SELECT id, body_hash, status, reason, from_account, to_account,
			amount, from_seq, to_seq, decided_at
		FROM ledger_transfers WHERE id = ANY($1)`, ids)
	ts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ledger.TransferRecord, error) {
		var t ledger.TransferRecord
		err := row.Scan(&t.ID, &t.BodyHash, &t.Status, &t.Reason, &t.FromAccount, &t.ToAccount,
			&t.Amount, &t.FromSeq, &t.ToSeq, &t.DecidedAt)
		t.DecidedAt = t.DecidedAt.UTC()
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("read %d transfers: %w", len(ids), err)
	}
	return ts, nil
}

// Deposits returns the recorded deposits for those of refs that exist.
func (s *LedgerStore) Deposits(ctx context.Context, refs []string) ([]ledger.DepositRecord, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, `SELECT external_ref, body_hash, account_id, amount, seq, booked_at
		FROM ledger_deposits WHERE external_ref = ANY($1)`, refs)
	ds, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (ledger.DepositRecord, error) {
		var d ledger.DepositRecord
		err := row.Scan(&d.ExternalRef, &d.BodyHash, &d.AccountID, &d.Amount, &d.Seq, &d.BookedAt)
		d.BookedAt = d.BookedAt.UTC()
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("read %d deposits: %w", len(refs), err)
	}
	return ds, nil
}

const entryColumns = `account_id, seq, position, kind, amount, balance_after,
	counterparty, transfer_id, external_ref, memo, booked_at`

func scanEntry(row pgx.CollectableRow) (banksync.Entry, error) {
	var e banksync.Entry
	err := row.Scan(&e.AccountID, &e.Seq, &e.Position, &e.Kind, &e.Amount, &e.BalanceAfter,
		&e.Counterparty, &e.TransferID, &e.ExternalRef, &e.Memo, &e.BookedAt)
	e.BookedAt = e.BookedAt.UTC()
	return e, err
}

// Entries returns up to limit entries of account with seq > afterSeq,
// ascending by seq.
func (s *LedgerStore) Entries(ctx context.Context, account string, afterSeq int64, limit int) ([]banksync.Entry, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, `SELECT `+entryColumns+` FROM ledger_entries
		WHERE account_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`, account, afterSeq, limit)
	es, err := pgx.CollectRows(rows, scanEntry)
	if err != nil {
		return nil, fmt.Errorf("read entries of %s after seq %d: %w", account, afterSeq, err)
	}
	return es, nil
}

// Entry returns the entry of account with the given seq.
func (s *LedgerStore) Entry(ctx context.Context, account string, seq int64) (banksync.Entry, bool, error) {
	rows, _ := s.pool.Query(ctx, `SELECT `+entryColumns+` FROM ledger_entries
		WHERE account_id = $1 AND seq = $2`, account, seq)
	e, err := pgx.CollectExactlyOneRow(rows, scanEntry)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return banksync.Entry{}, false, nil
	case err != nil:
		return banksync.Entry{}, false, fmt.Errorf("read entry %s/%d: %w", account, seq, err)
	}
	return e, true, nil
}

// EntriesAfter returns up to limit entries with position > after, ascending
// by position.
func (s *LedgerStore) EntriesAfter(ctx context.Context, after int64, limit int) ([]banksync.Entry, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, `SELECT `+entryColumns+` FROM ledger_entries
		WHERE position > $1 ORDER BY position LIMIT $2`, after, limit)
	es, err := pgx.CollectRows(rows, scanEntry)
	if err != nil {
		return nil, fmt.Errorf("read entries after position %d: %w", after, err)
	}
	return es, nil
}

// RelayPosition returns the position of the last published entry.
func (s *LedgerStore) RelayPosition(ctx context.Context) (int64, error) {
	var p int64
	if err := s.pool.QueryRow(ctx, "SELECT position FROM ledger_relay WHERE id = 1").Scan(&p); err != nil {
		return 0, fmt.Errorf("read relay position: %w", err)
	}
	return p, nil
}

// SetRelayPosition records that every entry up to position is published. It
// writes through the writer session so only the lock holder's relay moves it.
func (s *LedgerStore) SetRelayPosition(ctx context.Context, position int64) error {
	err := s.withWriter(ctx, false, func(conn *pgx.Conn) error {
		tag, err := conn.Exec(ctx, "UPDATE ledger_relay SET position = $1 WHERE id = 1", position)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return errors.New("ledger_relay has no row: the schema is damaged")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("set relay position %d: %w", position, err)
	}
	return nil
}

// Totals returns the sums of promise P6. It scans every account and deposit:
// a check, not a hot path.
func (s *LedgerStore) Totals(ctx context.Context) (ledger.Totals, error) {
	var t ledger.Totals
	err := s.pool.QueryRow(ctx, `SELECT a.balances, d.deposits, a.negative
		FROM (SELECT coalesce(sum(balance), 0)::bigint AS balances,
				count(*) FILTER (WHERE balance < 0) AS negative
			FROM ledger_accounts) a,
			(SELECT coalesce(sum(amount), 0)::bigint AS deposits FROM ledger_deposits) d`,
	).Scan(&t.Balances, &t.Deposits, &t.NegativeAccounts)
	if err != nil {
		return ledger.Totals{}, fmt.Errorf("read totals: %w", err)
	}
	return t, nil
}

// Migrations lists the ledger schema's migrations, embedded and applied.
func (s *LedgerStore) Migrations(ctx context.Context) (known, applied []string, err error) {
	return migrations(ctx, s.pool, "ledger")
}
