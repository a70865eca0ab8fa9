// Package ledgerbench runs banksync's ledger group-commit workload against
// any database/sql SQLite driver. It is written fresh from the ledger's
// schema and commit path (banksync/sqlite) and imports nothing of banksync,
// so the same code measures every driver.
package ledgerbench

import (
	"context"
	"database/sql"
	_ "embed"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

//go:embed schema.sql
var schema string // copy of sqlite/migrations/ledger/001_init.sql

const (
	Accounts      = 10_000  // accounts created before anything is timed
	SeedTransfers = 100_000 // untimed history: exactly 20 entries per account
	seedBatch     = 4096    // transfers per seeding transaction
	BatchSize     = 64      // transfers per timed group commit
	ReadLimit     = 20      // entries per read query

	rowsPerInsertMax = 256 // as banksync/sqlite
	readersMax       = 8   // as banksync/sqlite
	initialBalance   = 1_000_000_000
	bodyHash         = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
)

// Store is one ledger database opened through one driver.
type Store struct {
	W, R *sql.DB // one writer connection; reader pool (mode=ro)

	insAccounts, insEntries, insTransfers *inserter
	updAccount                            *sql.Stmt

	ids      []string
	balance  []int64
	lastSeq  []int64
	position int64
}

// Open creates the database file in dir through the registered driver name
// and prepares the writer's statements, as banksync/sqlite does at open.
func Open(ctx context.Context, name, dir string) (*Store, error) {
	path := filepath.Join(dir, "ledger.db")
	w, err := open(name, "file:"+path+"?_txlock=immediate")
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	if _, err := w.ExecContext(ctx, schema); err != nil {
		w.Close()
		return nil, fmt.Errorf("schema: %w", err)
	}
	r, err := open(name, "file:"+path+"?mode=ro")
	if err != nil {
		w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(readersMax)
	r.SetMaxIdleConns(readersMax)
	s := &Store{W: w, R: r}
	if err := s.prepare(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) prepare(ctx context.Context) (err error) {
	if s.insAccounts, err = newInserter(ctx, s.W, `INSERT INTO ledger_accounts (id, owner, balance, last_seq, created_at)`, 5); err != nil {
		return err
	}
	if s.insEntries, err = newInserter(ctx, s.W, `INSERT INTO ledger_entries (position, account_id, seq, kind,
		amount, balance_after, counterparty, transfer_id, external_ref, memo, booked_at)`, 11); err != nil {
		return err
	}
	if s.insTransfers, err = newInserter(ctx, s.W, `INSERT INTO ledger_transfers (id, body_hash, status, reason,
		from_account, to_account, amount, from_seq, to_seq, decided_at)`, 10); err != nil {
		return err
	}
	s.updAccount, err = s.W.PrepareContext(ctx, `UPDATE ledger_accounts SET balance = ?, last_seq = ? WHERE id = ?`)
	return err
}

func (s *Store) Close() error {
	for _, in := range []*inserter{s.insAccounts, s.insEntries, s.insTransfers} {
		if in != nil {
			in.close()
		}
	}
	if s.updAccount != nil {
		s.updAccount.Close()
	}
	s.R.Close()
	return s.W.Close()
}

// CheckPragmas fails unless the writer and a reader connection run with the
// settings under test.
func (s *Store) CheckPragmas(ctx context.Context) error {
	want := map[string]string{"journal_mode": "wal", "synchronous": "2", "cache_size": "-131072",
		"temp_store": "2", "foreign_keys": "1", "busy_timeout": "10000", "wal_autocheckpoint": "20000"}
	for _, db := range []*sql.DB{s.W, s.R} {
		for p, v := range want {
			var got string
			if err := db.QueryRowContext(ctx, "PRAGMA "+p).Scan(&got); err != nil {
				return fmt.Errorf("PRAGMA %s: %w", p, err)
			}
			if !strings.EqualFold(got, v) {
				return fmt.Errorf("PRAGMA %s = %s, want %s", p, got, v)
			}
		}
	}
	return nil
}

// Version returns sqlite_version() of the driver's SQLite.
func (s *Store) Version(ctx context.Context) (string, error) {
	var v string
	err := s.R.QueryRowContext(ctx, `SELECT sqlite_version()`).Scan(&v)
	return v, err
}

// Seed inserts the accounts and SeedTransfers transfers in large
// transactions: transfer k moves money from account k%N to account
// (k%N + 1 + k/N) % N, so every account ends with exactly 20 entries.
func (s *Store) Seed(ctx context.Context) error {
	now := time.Now().UnixMicro()
	s.ids = make([]string, Accounts)
	s.balance = make([]int64, Accounts)
	s.lastSeq = make([]int64, Accounts)
	for i := range s.ids {
		s.ids[i] = fmt.Sprintf("acct-%08d", i)
		s.balance[i] = initialBalance
	}
	tx, err := s.W.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := s.insAccounts.insert(ctx, tx, Accounts, func(i int) []any {
		return []any{s.ids[i], "owner-" + s.ids[i], int64(initialBalance), int64(0), now}
	}); err != nil {
		return fmt.Errorf("seed accounts: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	pairs := make([][2]int, 0, seedBatch)
	for k := 0; k < SeedTransfers; k++ {
		from := k % Accounts
		pairs = append(pairs, [2]int{from, (from + 1 + k/Accounts) % Accounts})
		if len(pairs) == seedBatch || k == SeedTransfers-1 {
			if _, err := s.CommitBatch(ctx, pairs); err != nil {
				return fmt.Errorf("seed transfers: %w", err)
			}
			pairs = pairs[:0]
		}
	}
	return nil
}

// CommitBatch commits one group of transfers as the ledger's Commit does:
// one IMMEDIATE transaction with an UPDATE by primary key per touched
// account side, multi-row INSERTs of the entries and of the transfers
// (time-ordered UUIDv7 ids), then COMMIT. It returns the time spent in
// tx.Commit alone (the WAL write and fsync).
func (s *Store) CommitBatch(ctx context.Context, pairs [][2]int) (time.Duration, error) {
	now := time.Now().UnixMicro()
	type upd struct {
		acct         int
		balance, seq int64
	}
	upds := make([]upd, 0, 2*len(pairs))
	entries := make([]any, 0, 2*len(pairs)*11)
	transfers := make([]any, 0, len(pairs)*10)
	for k, p := range pairs {
		from, to := p[0], p[1]
		amount := int64(1 + (k*7919+int(s.position))%1000)
		id := uuid.Must(uuid.NewV7()).String()
		s.balance[from] -= amount
		s.lastSeq[from]++
		s.balance[to] += amount
		s.lastSeq[to]++
		upds = append(upds, upd{from, s.balance[from], s.lastSeq[from]}, upd{to, s.balance[to], s.lastSeq[to]})
		s.position++
		entries = append(entries, s.position, s.ids[from], s.lastSeq[from], "transfer_out", -amount,
			s.balance[from], s.ids[to], id, "", "bench transfer", now)
		s.position++
		entries = append(entries, s.position, s.ids[to], s.lastSeq[to], "transfer_in", amount,
			s.balance[to], s.ids[from], id, "", "bench transfer", now)
		transfers = append(transfers, id, bodyHash, "committed", "", s.ids[from], s.ids[to], amount,
			s.lastSeq[from], s.lastSeq[to], now)
	}

	tx, err := s.W.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	st := tx.StmtContext(ctx, s.updAccount)
	for _, u := range upds {
		res, err := st.ExecContext(ctx, u.balance, u.seq, s.ids[u.acct])
		if err != nil {
			return 0, fmt.Errorf("update account: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return 0, fmt.Errorf("update account %s: %d rows: %v", s.ids[u.acct], n, err)
		}
	}
	if err := s.insEntries.insert(ctx, tx, 2*len(pairs), func(i int) []any { return entries[i*11 : i*11+11] }); err != nil {
		return 0, fmt.Errorf("insert entries: %w", err)
	}
	if err := s.insTransfers.insert(ctx, tx, len(pairs), func(i int) []any { return transfers[i*10 : i*10+10] }); err != nil {
		return 0, fmt.Errorf("insert transfers: %w", err)
	}
	start := time.Now()
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

const lastEntriesSQL = `SELECT account_id, seq, position, kind, amount, balance_after, counterparty,
	transfer_id, external_ref, memo, booked_at FROM ledger_entries
	WHERE account_id = ? ORDER BY seq DESC LIMIT ?`

// LastEntries reads one account's last n entries through the reader pool,
// unprepared as banksync/sqlite's reads are, and scans every column.
func (s *Store) LastEntries(ctx context.Context, acct, n int) (int, error) {
	rows, err := s.R.QueryContext(ctx, lastEntriesSQL, s.ids[acct], n)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var got int
	for rows.Next() {
		var accountID, kind, counterparty, transferID, externalRef, memo string
		var seq, position, amount, balanceAfter, bookedAt int64
		if err := rows.Scan(&accountID, &seq, &position, &kind, &amount, &balanceAfter, &counterparty,
			&transferID, &externalRef, &memo, &bookedAt); err != nil {
			return got, err
		}
		got++
	}
	return got, rows.Err()
}

// Run is the whole benchmark for one registered driver name: one seeded
// database, then the group-commit and read sub-benchmarks on it.
func Run(b *testing.B, name string) {
	ctx := context.Background()
	s, err := Open(ctx, name, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.CheckPragmas(ctx); err != nil {
		b.Fatal(err)
	}
	if err := s.Seed(ctx); err != nil {
		b.Fatal(err)
	}

	b.Run("commit64", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(1, 2))
		pairs := make([][2]int, BatchSize)
		var inCommit time.Duration
		for b.Loop() {
			for i := range pairs {
				from := rng.IntN(Accounts)
				to := rng.IntN(Accounts - 1)
				if to >= from {
					to++
				}
				pairs[i] = [2]int{from, to}
			}
			d, err := s.CommitBatch(ctx, pairs)
			if err != nil {
				b.Fatal(err)
			}
			inCommit += d
		}
		b.ReportMetric(float64(BatchSize*b.N)/b.Elapsed().Seconds(), "transfers/s")
		b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/batch")
		b.ReportMetric(float64(inCommit.Microseconds())/1000/float64(b.N), "commit-ms/batch")
		b.ReportMetric(float64((b.Elapsed()-inCommit).Microseconds())/1000/float64(b.N), "stmts-ms/batch")
	})

	// Warm two reader connections (read20-parallel uses two on 2 cores) by
	// reading every account once on each, untimed, so the read tests see
	// the steady state of a long-running reader pool, not a cold page cache.
	if err := s.Warm(ctx, 2); err != nil {
		b.Fatal(err)
	}

	b.Run("read20", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(3, 4))
		for b.Loop() {
			n, err := s.LastEntries(ctx, rng.IntN(Accounts), ReadLimit)
			if err != nil {
				b.Fatal(err)
			}
			if n != ReadLimit {
				b.Fatalf("read %d entries, want %d", n, ReadLimit)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
	})

	b.Run("read20-parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			rng := rand.New(rand.NewPCG(rand.Uint64(), 5))
			for pb.Next() {
				n, err := s.LastEntries(ctx, rng.IntN(Accounts), ReadLimit)
				if err != nil {
					b.Error(err)
					return
				}
				if n != ReadLimit {
					b.Errorf("read %d entries, want %d", n, ReadLimit)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "queries/s")
	})
}

// Warm reads every account's last entries once on each of conns reader
// connections, concurrently so that each holds its own connection.
func (s *Store) Warm(ctx context.Context, conns int) error {
	errs := make(chan error, conns)
	for range conns {
		go func() {
			for a := range Accounts {
				if _, err := s.LastEntries(ctx, a, ReadLimit); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	var first error
	for range conns {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Info logs the driver's SQLite version, the time to open and ping a first
// connection in a fresh process (cold start), and checks the pragmas.
func Info(t *testing.T, name string) {
	ctx := context.Background()
	start := time.Now()
	s, err := Open(ctx, name, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.W.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	cold := time.Since(start)
	if err := s.CheckPragmas(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := s.Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := s.Seed(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("driver %q: SQLite %s; first open+schema %v; seed %d accounts + %d transfers %v",
		name, v, cold.Round(time.Microsecond), Accounts, SeedTransfers, time.Since(start).Round(time.Millisecond))
}

// inserter runs multi-row INSERTs prepared once per power-of-two chunk
// size, as banksync/sqlite's inserter does.
type inserter struct {
	ncols int
	stmts map[int]*sql.Stmt
}

func newInserter(ctx context.Context, db *sql.DB, prefix string, ncols int) (*inserter, error) {
	in := &inserter{ncols: ncols, stmts: map[int]*sql.Stmt{}}
	one := "(" + strings.TrimSuffix(strings.Repeat("?,", ncols), ",") + ")"
	for size := rowsPerInsertMax; size >= 1; size /= 2 {
		q := prefix + " VALUES " + strings.TrimSuffix(strings.Repeat(one+",", size), ",")
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			in.close()
			return nil, fmt.Errorf("prepare %s: %w", prefix, err)
		}
		in.stmts[size] = st
	}
	return in, nil
}

func (in *inserter) close() {
	for _, st := range in.stmts {
		st.Close()
	}
}

func (in *inserter) insert(ctx context.Context, tx *sql.Tx, n int, row func(i int) []any) error {
	args := make([]any, 0, min(n, rowsPerInsertMax)*in.ncols)
	for start := 0; start < n; {
		size := rowsPerInsertMax
		for size > n-start {
			size /= 2
		}
		args = args[:0]
		for i := start; i < start+size; i++ {
			args = append(args, row(i)...)
		}
		if _, err := tx.StmtContext(ctx, in.stmts[size]).ExecContext(ctx, args...); err != nil {
			return err
		}
		start += size
	}
	return nil
}
