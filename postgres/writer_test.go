package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"banksync"
	"banksync/internal/testkit"
	"banksync/ledger"
	"banksync/postgres"
	"banksync/storetest"
)

// recoveryWait bounds how long a test waits for the store to write again
// after its writer session was lost and the cause went away.
const recoveryWait = 20 * time.Second

// writerSessionSQL finds the writer session of the test's own database by
// the application_name the store gives it.
const writerSessionSQL = `FROM pg_stat_activity
	WHERE application_name = 'banksync-ledger-writer' AND datname = current_database()`

func mustConnect(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	return conn
}

// writerPID returns the backend pid of the writer session, 0 if none.
func writerPID(t *testing.T, dsn string) int64 {
	t.Helper()
	return queryInt(t, dsn, "SELECT coalesce(max(pid), 0) "+writerSessionSQL)
}

// writerLocks counts writer sessions holding an advisory lock.
func writerLocks(t *testing.T, dsn string) int64 {
	t.Helper()
	return queryInt(t, dsn, `SELECT count(*) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND pid IN (SELECT pid `+writerSessionSQL+`)`)
}

// terminateWriter ends the writer session from another one, as a server
// restart or an operator would, and waits until it is gone, lock included.
// It returns the pid it ended.
func terminateWriter(t *testing.T, dsn string) int64 {
	t.Helper()
	pid := writerPID(t, dsn)
	if pid == 0 {
		t.Fatal("no writer session to terminate")
	}
	var gone bool
	conn := mustConnect(t, dsn)
	if err := conn.QueryRow(context.Background(), "SELECT pg_terminate_backend($1, 5000)", pid).Scan(&gone); err != nil || !gone {
		t.Fatalf("terminate writer session %d: gone = %v, %v", pid, gone, err)
	}
	return pid
}

// commitWithin commits b, retrying while it fails, for up to wait: the
// ledger's part, which decides after a failed commit whether to try again.
func commitWithin(t *testing.T, s *postgres.LedgerStore, b *ledger.Batch, wait time.Duration) {
	t.Helper()
	testkit.Eventually(t, wait, "Commit succeeding", func() error { return s.Commit(context.Background(), b) })
}

// checkFixture checks the store holds exactly the fixture's history.
func checkFixture(t *testing.T, s *postgres.LedgerStore, f fixture) {
	t.Helper()
	ctx := context.Background()
	accounts, err := s.Accounts(ctx, []string{"a", "b"})
	sort.Slice(accounts, func(i, j int) bool { return accounts[i].ID < accounts[j].ID })
	check(t, "Accounts", accounts, err, f.accounts)
	entries, err := s.EntriesAfter(ctx, 0, 100)
	check(t, "EntriesAfter", entries, err, f.entries)
	totals, err := s.Totals(ctx)
	check(t, "Totals", totals, err, ledger.Totals{Balances: 1000, Deposits: 1000})
}

// After the writer session is killed the store opens a new one, takes the
// lock again and writes on: the first commit may fail, the next must not.
func TestWriterReestablishedAfterTerminate(t *testing.T) {
	ctx := context.Background()
	s, dsn := mustOpenLedger(t)
	f := newFixture()
	mustCommit(t, s, f.batches[0])

	killed := terminateWriter(t, dsn)
	if err := s.Commit(ctx, f.batches[1]); err != nil {
		t.Logf("first commit after the writer session died: %v", err)
		mustCommit(t, s, f.batches[1])
	}
	if pid := writerPID(t, dsn); pid == 0 || pid == killed {
		t.Errorf("writer session pid = %d after terminating %d, want a new session", pid, killed)
	}
	if n := writerLocks(t, dsn); n != 1 {
		t.Errorf("writer sessions holding the lock = %d, want 1", n)
	}
	checkFixture(t, s, f)

	if err := s.SetRelayPosition(ctx, 3); err != nil {
		t.Fatalf("SetRelayPosition: %v", err)
	}
	relay, err := s.RelayPosition(ctx)
	check(t, "RelayPosition", relay, err, int64(3))
}

// A loss found by the relay, not by a commit, must still reach the ledger as
// a failed commit, or it would keep writing from a cache another ledger may
// have made stale while the lock was free.
func TestCommitFailsOnceAfterLossFoundByRelay(t *testing.T) {
	ctx := context.Background()
	s, dsn := mustOpenLedger(t)
	f := newFixture()
	mustCommit(t, s, f.batches[0])

	terminateWriter(t, dsn)
	if err := s.SetRelayPosition(ctx, 1); err != nil {
		t.Logf("SetRelayPosition after the writer session died: %v", err)
		if err := s.SetRelayPosition(ctx, 1); err != nil {
			t.Fatalf("SetRelayPosition again: %v", err)
		}
	}
	if err := s.Commit(ctx, f.batches[1]); err == nil {
		t.Fatal("first Commit after a loss found by SetRelayPosition: err = nil, want an error")
	}
	last, err := s.LastPosition(ctx)
	check(t, "LastPosition after the refused commit", last, err, int64(1))
	mustCommit(t, s, f.batches[1])
	checkFixture(t, s, f)
}

// While the writer session is lost another ledger may take the lock; the
// first store must then refuse every write rather than write without it, and
// may write again only once the other lets go.
func TestWriterLockTakenWhileLost(t *testing.T) {
	ctx := context.Background()
	first, dsn := mustOpenLedger(t)
	f := newFixture()
	terminateWriter(t, dsn)

	second, err := postgres.OpenLedger(ctx, dsn)
	if err != nil {
		t.Fatalf("OpenLedger while the first store's writer is lost: %v", err)
	}
	t.Cleanup(func() { second.Close() })

	for i := range 3 {
		err := first.Commit(ctx, f.batches[0])
		if err == nil {
			t.Fatalf("commit %d of the store that lost the lock: err = nil", i+1)
		}
		// The first may fail on the dead session; later ones find the lock taken.
		if i > 0 && !errors.Is(err, postgres.ErrLedgerLocked) {
			t.Errorf("commit %d of the store that lost the lock: %v, want ErrLedgerLocked", i+1, err)
		}
	}
	if err := first.SetRelayPosition(ctx, 7); !errors.Is(err, postgres.ErrLedgerLocked) {
		t.Errorf("SetRelayPosition of the store that lost the lock: %v, want ErrLedgerLocked", err)
	}
	last, err := second.LastPosition(ctx)
	check(t, "LastPosition", last, err, int64(0))
	relay, err := second.RelayPosition(ctx)
	check(t, "RelayPosition", relay, err, int64(0))
	if n := queryInt(t, dsn, "SELECT count(*) FROM ledger_accounts"); n != 0 {
		t.Fatalf("accounts = %d, want 0: the store without the lock wrote", n)
	}

	mustCommit(t, second, f.batches[0])
	if err := second.Close(); err != nil {
		t.Fatalf("close second: %v", err)
	}
	commitWithin(t, first, f.batches[1], recoveryWait)
	checkFixture(t, first, f)
}

// A commit whose context ends mid-flight loses its session: pgx cancels the
// statement and ends the session in the background. The next write waits for
// that, takes the lock on a new session and writes on; the cancelled commit
// is left to the ledger, which treats it as unknown.
func TestCommitCancelledMidFlight(t *testing.T) {
	ctx := context.Background()
	s, dsn := mustOpenLedger(t)
	f := newFixture()
	mustCommit(t, s, f.batches[0])

	// Hold account a's row so the next commit blocks on it.
	blocker := mustConnect(t, dsn)
	tx, err := blocker.Begin(ctx)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1 FROM ledger_accounts WHERE id = 'a' FOR UPDATE"); err != nil {
		t.Fatalf("lock row: %v", err)
	}
	killed := writerPID(t, dsn)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err = s.Commit(short, f.batches[1])
	cancel()
	if err == nil {
		t.Fatal("Commit blocked past its context: err = nil, want an error")
	}
	t.Logf("cancelled commit: %v", err)

	// Account a is still held, but a batch not touching it goes through.
	c := &ledger.Batch{NewAccounts: []banksync.Account{{ID: "c", Owner: "carol", CreatedAt: f.accounts[0].CreatedAt}}}
	mustCommit(t, s, c)
	if pid := writerPID(t, dsn); pid == 0 || pid == killed {
		t.Errorf("writer session pid = %d after cancelling a commit on %d, want a new session", pid, killed)
	}
	if n := writerLocks(t, dsn); n != 1 {
		t.Errorf("writer sessions holding the lock = %d, want 1", n)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatalf("rollback: %v", err)
	}

	last, err := s.LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	switch last {
	case 1: // cancelled on the server, as pgx asks
		mustCommit(t, s, f.batches[1])
	case 3:
		t.Log("the cancelled commit landed after all")
	default:
		t.Fatalf("LastPosition = %d, want 1 (cancelled commit rolled back) or 3 (landed)", last)
	}
	checkFixture(t, s, f)
}

// End to end: a ledger on the store keeps taking transfers across the loss
// of its writer session, each executed once, money conserved and every
// account's history without holes.
func TestLedgerRecoversAfterWriterLost(t *testing.T) {
	ctx := context.Background()
	s, dsn := mustOpenLedger(t)
	l, err := ledger.Open(ctx, s, ledger.Config{})
	if err != nil {
		t.Fatalf("ledger.Open: %v", err)
	}
	t.Cleanup(func() { l.Close() }) // before the store's cleanup: LIFO

	const opening, amount = 1000, 10
	accounts := []string{"a", "b", "c", "d"}
	for _, id := range accounts {
		if _, _, err := l.CreateAccount(ctx, id, "owner-"+id); err != nil {
			t.Fatalf("CreateAccount(%s): %v", id, err)
		}
		d := banksync.DepositRequest{ExternalRef: "seed-" + id, AccountID: id, Amount: opening, Sender: "other-bank"}
		if _, err := l.Deposit(ctx, d); err != nil {
			t.Fatalf("Deposit(%s): %v", id, err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	transfer := func(i int) banksync.TransferRequest {
		return banksync.TransferRequest{TransferID: fmt.Sprintf("t-%d", i),
			FromAccount: accounts[i%len(accounts)], ToAccount: accounts[(i+1)%len(accounts)],
			Amount: amount, Deadline: deadline, Memo: "rent"}
	}
	mustTransfer := func(i int) {
		t.Helper()
		out, err := l.Transfer(ctx, transfer(i))
		if err != nil || out.Status != banksync.StatusCompleted {
			t.Fatalf("Transfer %d = %+v, %v; want completed", i, out, err)
		}
	}

	const before, after = 5, 10
	for i := range before {
		mustTransfer(i)
	}
	killed := terminateWriter(t, dsn)

	// Retry the next transfer with the same id, as a client told
	// "unavailable" does, until the ledger takes it.
	failures := 0
	retryUntil := time.Now().Add(recoveryWait)
	for {
		out, err := l.Transfer(ctx, transfer(before))
		if err == nil {
			if out.Status != banksync.StatusCompleted {
				t.Fatalf("Transfer %d = %+v; want completed", before, out)
			}
			break
		}
		if code := banksync.ErrorCode(err); code != banksync.EUNAVAILABLE {
			t.Fatalf("Transfer %d while the writer is lost: %v (code %s), want %s", before, err, code, banksync.EUNAVAILABLE)
		}
		failures++
		if time.Now().After(retryUntil) {
			t.Fatalf("Transfer %d still failing after %s: %v", before, recoveryWait, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d failed attempts before the writer session was back", failures)
	if pid := writerPID(t, dsn); pid == 0 || pid == killed {
		t.Errorf("writer session pid = %d after terminating %d, want a new session", pid, killed)
	}
	for i := before + 1; i <= before+after; i++ {
		mustTransfer(i)
	}

	transfers := before + 1 + after
	totals, err := s.Totals(ctx)
	want := ledger.Totals{Balances: opening * int64(len(accounts)), Deposits: opening * int64(len(accounts))}
	check(t, "Totals", totals, err, want)

	entries, err := s.EntriesAfter(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(entries), len(accounts)+2*transfers; got != want {
		t.Fatalf("entries = %d, want %d (a deposit per account, two per transfer)", got, want)
	}
	for i, e := range entries {
		if e.Position != int64(i+1) {
			t.Fatalf("entry %d has position %d, want %d", i, e.Position, i+1)
		}
	}
	for _, id := range accounts {
		storetest.CheckAccountChain(t, s, id)
	}
}
