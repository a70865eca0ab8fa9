package postgres_test

import (
	"context"
	"errors"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"banksync"
	"banksync/ledger"
	"banksync/postgres"
	"banksync/postgres/pgtest"
)

// mustOpenLedger opens a ledger store on a fresh database and closes it when
// tb ends. It returns the DSN too, for tests that look under the store.
func mustOpenLedger(tb testing.TB) (*postgres.LedgerStore, string) {
	tb.Helper()
	dsn := pgtest.Database(tb)
	s, err := postgres.OpenLedger(context.Background(), dsn)
	if err != nil {
		tb.Fatalf("OpenLedger: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return s, dsn
}

func mustCommit(tb testing.TB, s *postgres.LedgerStore, b *ledger.Batch) {
	tb.Helper()
	if err := s.Commit(context.Background(), b); err != nil {
		tb.Fatalf("Commit: %v", err)
	}
}

func queryInt(t *testing.T, dsn, sql string) int64 {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestOpenLedgerMigratesOnce(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.Database(t)
	for i := range 2 {
		s, err := postgres.OpenLedger(ctx, dsn)
		if err != nil {
			t.Fatalf("open %d: %v", i+1, err)
		}
		pos, err := s.RelayPosition(ctx)
		if err != nil || pos != 0 {
			t.Errorf("open %d: RelayPosition = %d, %v; want 0, nil", i+1, pos, err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("close %d: %v", i+1, err)
		}
	}
	if got := queryInt(t, dsn, "SELECT count(*) FROM schema_migrations"); got != 2 {
		t.Errorf("schema_migrations rows = %d, want 2 (each migration once)", got)
	}
	// Keyed by set and file, so the channel's own 001 cannot be taken for
	// the ledger's.
	if got := queryInt(t, dsn, "SELECT count(*) FROM schema_migrations WHERE name = 'ledger/001_init.sql'"); got != 1 {
		t.Errorf("schema_migrations rows named ledger/001_init.sql = %d, want 1", got)
	}
	if got := queryInt(t, dsn, "SELECT count(*) FROM ledger_relay"); got != 1 {
		t.Errorf("ledger_relay rows = %d, want 1", got)
	}
}

// Two processes starting at once on an empty database: the migration lock
// keeps them from applying the schema twice, the writer lock lets one win.
func TestOpenLedgerConcurrently(t *testing.T) {
	dsn := pgtest.Database(t)
	const opens = 2
	stores := make([]*postgres.LedgerStore, opens)
	errs := make([]error, opens)
	var wg sync.WaitGroup
	for i := range opens {
		wg.Go(func() { stores[i], errs[i] = postgres.OpenLedger(context.Background(), dsn) })
	}
	wg.Wait()
	opened := 0
	for i, err := range errs {
		switch {
		case err == nil:
			opened++
			t.Cleanup(func() { stores[i].Close() })
		case !errors.Is(err, postgres.ErrLedgerLocked):
			t.Errorf("open %d: %v, want nil or ErrLedgerLocked", i, err)
		}
	}
	if opened != 1 {
		t.Errorf("%d stores opened, want 1", opened)
	}
}

func TestOpenLedgerLocked(t *testing.T) {
	ctx := context.Background()
	first, dsn := mustOpenLedger(t)

	start := time.Now()
	second, err := postgres.OpenLedger(ctx, dsn)
	if !errors.Is(err, postgres.ErrLedgerLocked) {
		if second != nil {
			second.Close()
		}
		t.Fatalf("second OpenLedger: err = %v, want ErrLedgerLocked", err)
	}
	if waited := time.Since(start); waited > 10*time.Second {
		t.Errorf("second OpenLedger took %s to fail, want a few seconds at most", waited)
	}

	// Closing the first must free the lock for the next process.
	if err := first.Close(); err != nil {
		t.Fatalf("close first: %v", err)
	}
	third, err := postgres.OpenLedger(ctx, dsn)
	if err != nil {
		t.Fatalf("OpenLedger after close: %v", err)
	}
	third.Close()
}

// A reader opens beside the ledger process holding the lock, reads what it
// committed, and can write nothing.
func TestOpenLedgerReader(t *testing.T) {
	ctx := context.Background()
	writer, dsn := mustOpenLedger(t)
	f := newFixture()
	for _, b := range f.batches {
		if err := writer.Commit(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	reader, err := postgres.OpenLedgerReader(ctx, dsn)
	if err != nil {
		t.Fatalf("OpenLedgerReader beside the writer: %v", err)
	}
	defer reader.Close()
	es, err := reader.Entries(ctx, "a", 0, 10)
	if err != nil || len(es) != 2 {
		t.Fatalf("reader's entries of a: %v, %v; want the 2 committed", es, err)
	}
	if err := reader.Commit(ctx, &ledger.Batch{NewAccounts: []banksync.Account{{ID: "c", Owner: "carol"}}}); err == nil {
		t.Fatal("a reader committed a batch")
	}
	if err := reader.SetRelayPosition(ctx, 1); err == nil {
		t.Fatal("a reader moved the relay position")
	}
	if got, _ := writer.Accounts(ctx, []string{"c"}); len(got) != 0 {
		t.Fatalf("the reader's refused batch opened %v", got)
	}
	// The writer still holds the lock and writes.
	if err := writer.SetRelayPosition(ctx, 1); err != nil {
		t.Fatalf("the writer beside a reader: %v", err)
	}
}

// fixture is a small ledger history: two accounts, a deposit into a, a
// transfer a → b and a fenced transfer id core never saw.
type fixture struct {
	batches   []*ledger.Batch
	accounts  []banksync.Account
	entries   []banksync.Entry
	transfers []ledger.TransferRecord
	deposits  []ledger.DepositRecord
}

func newFixture() fixture {
	t0 := banksync.Timestamp(time.Date(2025, 3, 1, 9, 0, 0, 123456789, time.FixedZone("KST", 9*3600)))
	t1 := t0.Add(time.Second)
	dep := banksync.Entry{AccountID: "a", Seq: 1, Position: 1, Kind: banksync.KindDeposit,
		Amount: 1000, BalanceAfter: 1000, Counterparty: "Other Bank", ExternalRef: "ext-1", Memo: "salary", BookedAt: t0}
	debit := banksync.Entry{AccountID: "a", Seq: 2, Position: 2, Kind: banksync.KindTransferOut,
		Amount: -300, BalanceAfter: 700, Counterparty: "b", TransferID: "t-1", Memo: "rent", BookedAt: t1}
	credit := banksync.Entry{AccountID: "b", Seq: 1, Position: 3, Kind: banksync.KindTransferIn,
		Amount: 300, BalanceAfter: 300, Counterparty: "a", TransferID: "t-1", Memo: "rent", BookedAt: t1}
	deposit := ledger.DepositRecord{ExternalRef: "ext-1", BodyHash: "h-ext-1", AccountID: "a", Amount: 1000, Seq: 1, BookedAt: t0}
	done := ledger.TransferRecord{ID: "t-1", BodyHash: "h-t-1", Status: banksync.StatusCompleted,
		FromAccount: "a", ToAccount: "b", Amount: 300, FromSeq: 2, ToSeq: 1, DecidedAt: t1}
	fenced := ledger.TransferRecord{ID: "t-2", Status: banksync.StatusRejected, Reason: banksync.ReasonFenced, DecidedAt: t1}

	f := fixture{
		accounts: []banksync.Account{
			{ID: "a", Owner: "alice", Balance: 700, LastSeq: 2, CreatedAt: t0},
			{ID: "b", Owner: "bob", Balance: 300, LastSeq: 1, CreatedAt: t0},
		},
		entries:   []banksync.Entry{dep, debit, credit},
		transfers: []ledger.TransferRecord{done, fenced},
		deposits:  []ledger.DepositRecord{deposit},
	}
	f.batches = []*ledger.Batch{
		{
			NewAccounts: []banksync.Account{
				{ID: "a", Owner: "alice", Balance: 1000, LastSeq: 1, CreatedAt: t0},
				{ID: "b", Owner: "bob", CreatedAt: t0},
			},
			Entries:  []banksync.Entry{dep},
			Deposits: []ledger.DepositRecord{deposit},
		},
		{
			Accounts:  f.accounts,
			Entries:   []banksync.Entry{debit, credit},
			Transfers: []ledger.TransferRecord{done, fenced},
		},
		{}, // an empty batch is a no-op, not an error
	}
	return f
}

func TestCommitThenRead(t *testing.T) {
	ctx := context.Background()
	s, _ := mustOpenLedger(t)
	f := newFixture()
	for _, b := range f.batches {
		mustCommit(t, s, b)
	}

	accounts, err := s.Accounts(ctx, []string{"b", "a", "missing"})
	sort.Slice(accounts, func(i, j int) bool { return accounts[i].ID < accounts[j].ID })
	check(t, "Accounts", accounts, err, f.accounts)

	transfers, err := s.Transfers(ctx, []string{"t-1", "t-2", "t-3"})
	sort.Slice(transfers, func(i, j int) bool { return transfers[i].ID < transfers[j].ID })
	check(t, "Transfers", transfers, err, f.transfers)

	deposits, err := s.Deposits(ctx, []string{"ext-1", "ext-2"})
	check(t, "Deposits", deposits, err, f.deposits)

	for _, ids := range [][]string{nil, {"missing"}} {
		accounts, err := s.Accounts(ctx, ids)
		check(t, "Accounts of nothing", len(accounts), err, 0)
		transfers, err := s.Transfers(ctx, ids)
		check(t, "Transfers of nothing", len(transfers), err, 0)
		deposits, err := s.Deposits(ctx, ids)
		check(t, "Deposits of nothing", len(deposits), err, 0)
	}

	entries, err := s.Entries(ctx, "a", 0, 10)
	check(t, "Entries(a, 0, 10)", entries, err, f.entries[:2])
	entries, err = s.Entries(ctx, "a", 0, 1)
	check(t, "Entries(a, 0, 1)", entries, err, f.entries[:1])
	entries, err = s.Entries(ctx, "a", 1, 10)
	check(t, "Entries(a, 1, 10)", entries, err, f.entries[1:2])
	entries, err = s.Entries(ctx, "a", 2, 10)
	check(t, "Entries(a, 2, 10)", len(entries), err, 0)

	e, ok, err := s.Entry(ctx, "b", 1)
	check(t, "Entry(b, 1)", e, err, f.entries[2])
	if !ok {
		t.Error("Entry(b, 1): ok = false")
	}
	_, ok, err = s.Entry(ctx, "b", 2)
	check(t, "Entry(b, 2) ok", ok, err, false)

	entries, err = s.EntriesAfter(ctx, 0, 10)
	check(t, "EntriesAfter(0, 10)", entries, err, f.entries)
	entries, err = s.EntriesAfter(ctx, 1, 1)
	check(t, "EntriesAfter(1, 1)", entries, err, f.entries[1:2])
	entries, err = s.EntriesAfter(ctx, 3, 10)
	check(t, "EntriesAfter(3, 10)", len(entries), err, 0)

	last, err := s.LastPosition(ctx)
	check(t, "LastPosition", last, err, int64(3))

	totals, err := s.Totals(ctx)
	check(t, "Totals", totals, err, ledger.Totals{Balances: 1000, Deposits: 1000})

	if err := s.SetRelayPosition(ctx, 2); err != nil {
		t.Fatalf("SetRelayPosition: %v", err)
	}
	relay, err := s.RelayPosition(ctx)
	check(t, "RelayPosition", relay, err, int64(2))
}

func TestEmptyStore(t *testing.T) {
	ctx := context.Background()
	s, _ := mustOpenLedger(t)
	last, err := s.LastPosition(ctx)
	check(t, "LastPosition", last, err, int64(0))
	totals, err := s.Totals(ctx)
	check(t, "Totals", totals, err, ledger.Totals{})
	entries, err := s.EntriesAfter(ctx, 0, 10)
	check(t, "EntriesAfter", len(entries), err, 0)
}

// A batch that breaks a constraint or an invariant must leave nothing behind,
// including the parts of it that were fine on their own.
func TestCommitIsAtomic(t *testing.T) {
	f := newFixture()
	now := f.accounts[0].CreatedAt
	// Valid on their own; each bad batch below carries them too.
	good := func(b ledger.Batch) *ledger.Batch {
		b.NewAccounts = append(b.NewAccounts, banksync.Account{ID: "c", Owner: "carol", Balance: 5, LastSeq: 1, CreatedAt: now})
		b.Entries = append([]banksync.Entry{{AccountID: "c", Seq: 1, Position: 4, Kind: banksync.KindDeposit,
			Amount: 5, BalanceAfter: 5, Counterparty: "Other Bank", ExternalRef: "ext-2", BookedAt: now}}, b.Entries...)
		b.Deposits = append(b.Deposits, ledger.DepositRecord{ExternalRef: "ext-2", AccountID: "c", Amount: 5, Seq: 1, BookedAt: now})
		return &b
	}
	entry := func(account string, seq, position, balanceAfter int64) banksync.Entry {
		return banksync.Entry{AccountID: account, Seq: seq, Position: position, Kind: banksync.KindTransferIn,
			Amount: 1, BalanceAfter: balanceAfter, Counterparty: "x", BookedAt: now}
	}
	tests := []struct {
		name  string
		batch *ledger.Batch
	}{
		{"negative balance", good(ledger.Batch{Accounts: []banksync.Account{{ID: "a", Balance: -1, LastSeq: 3}}})},
		{"duplicate account seq", good(ledger.Batch{Entries: []banksync.Entry{entry("a", 2, 5, 701)}})},
		{"duplicate position", good(ledger.Batch{Entries: []banksync.Entry{entry("a", 3, 3, 701)}})},
		{"seq zero", good(ledger.Batch{Entries: []banksync.Entry{entry("a", 0, 5, 701)}})},
		{"update of a missing account", good(ledger.Batch{Accounts: []banksync.Account{{ID: "nobody", Balance: 1, LastSeq: 1}}})},
		{"account listed twice", good(ledger.Batch{Accounts: []banksync.Account{{ID: "a", Balance: 1, LastSeq: 3}, {ID: "a", Balance: 2, LastSeq: 3}}})},
		{"last seq going back", good(ledger.Batch{Accounts: []banksync.Account{{ID: "a", Balance: 700, LastSeq: 1}}})},
		{"existing account created again", good(ledger.Batch{NewAccounts: []banksync.Account{{ID: "a", Owner: "mallory", CreatedAt: now}}})},
		{"transfer id recorded twice", good(ledger.Batch{Transfers: []ledger.TransferRecord{f.transfers[0]}})},
		{"balance update then a failing insert", good(ledger.Batch{
			Accounts:  []banksync.Account{{ID: "a", Balance: 701, LastSeq: 3}},
			Entries:   []banksync.Entry{entry("a", 3, 5, 701)},
			Transfers: []ledger.TransferRecord{f.transfers[0]},
		})},
		{"deposit recorded twice", good(ledger.Batch{Deposits: []ledger.DepositRecord{f.deposits[0]}})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			s, _ := mustOpenLedger(t)
			for _, b := range f.batches {
				mustCommit(t, s, b)
			}
			err := s.Commit(ctx, tt.batch)
			if err == nil {
				t.Fatal("Commit: err = nil, want an error")
			}
			t.Logf("Commit: %v", err)

			accounts, err := s.Accounts(ctx, []string{"a", "b", "c", "nobody"})
			sort.Slice(accounts, func(i, j int) bool { return accounts[i].ID < accounts[j].ID })
			check(t, "Accounts", accounts, err, f.accounts)
			entries, err := s.EntriesAfter(ctx, 0, 100)
			check(t, "EntriesAfter", entries, err, f.entries)
			deposits, err := s.Deposits(ctx, []string{"ext-1", "ext-2"})
			check(t, "Deposits", deposits, err, f.deposits)
			totals, err := s.Totals(ctx)
			check(t, "Totals", totals, err, ledger.Totals{Balances: 1000, Deposits: 1000})

			// The store must still take the next good batch.
			mustCommit(t, s, good(ledger.Batch{}))
		})
	}
}

func check[T any](t *testing.T, what string, got T, err error, want T) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", what, diff)
	}
}
