// Package storetest is the conformance suite every store must pass: the same
// tests run against SQLite and PostgreSQL, so the embedded default and the
// production deployment are one code path.
package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"banksync"
	"banksync/ledger"
)

// LedgerHarness tells the suite how to make ledger stores.
type LedgerHarness struct {
	// Fresh returns the location of a new, empty ledger database.
	Fresh func(tb testing.TB) string
	// Open opens the ledger database at where.
	Open func(tb testing.TB, where string) ledger.Store
}

// Ledger runs the ledger conformance suite.
func Ledger(t *testing.T, h LedgerHarness) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, LedgerHarness)
	}{
		{"Accounts", testAccounts},
		{"Deposits", testDeposits},
		{"DepositorNames", testDepositorNames},
		{"TransferCompleted", testTransferCompleted},
		{"IdempotentReplay", testIdempotentReplay},
		{"IdempotencyConflict", testIdempotencyConflict},
		{"InsufficientFunds", testInsufficientFunds},
		{"ExpiredDeadline", testExpiredDeadline},
		{"FenceThenLateArrival", testFenceThenLateArrival},
		{"StatusIsReadOnly", testStatusIsReadOnly},
		{"BadInputWritesNothing", testBadInputWritesNothing},
		{"SeqContiguous", testSeqContiguous},
		{"Restart", testRestart},
		{"Concurrent", testConcurrent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, h)
		})
	}
}

// clock is a settable time source for deadline tests.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// fixture is a ledger on a fresh store with a controllable clock.
type fixture struct {
	*ledger.Ledger
	store ledger.Store
	clock *clock
	where string
	once  sync.Once
}

func openFixture(tb testing.TB, h LedgerHarness, cfg ledger.Config) *fixture {
	tb.Helper()
	where := h.Fresh(tb)
	return reopen(tb, h, where, cfg)
}

func reopen(tb testing.TB, h LedgerHarness, where string, cfg ledger.Config) *fixture {
	tb.Helper()
	store := h.Open(tb, where)
	c := &clock{now: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
	if cfg.Now == nil {
		cfg.Now = c.Now
	}
	l, err := ledger.Open(context.Background(), store, cfg)
	if err != nil {
		tb.Fatalf("ledger.Open: %v", err)
	}
	f := &fixture{Ledger: l, store: store, clock: c, where: where}
	tb.Cleanup(f.close)
	return f
}

func (f *fixture) close() {
	f.once.Do(func() {
		f.Ledger.Close()
		f.store.Close()
	})
}

func (f *fixture) mustAccount(tb testing.TB, id string, balance int64) {
	tb.Helper()
	ctx := context.Background()
	if _, _, err := f.CreateAccount(ctx, id, "owner-"+id); err != nil {
		tb.Fatalf("CreateAccount(%s): %v", id, err)
	}
	if balance > 0 {
		if _, err := f.Deposit(ctx, banksync.DepositRequest{ExternalRef: "seed-" + id, AccountID: id, Amount: balance, Sender: "other-bank"}); err != nil {
			tb.Fatalf("Deposit(%s): %v", id, err)
		}
	}
}

func (f *fixture) balance(tb testing.TB, id string) int64 {
	tb.Helper()
	a, err := f.Account(context.Background(), id)
	if err != nil {
		tb.Fatalf("Account(%s): %v", id, err)
	}
	return a.Balance
}

func (f *fixture) transfer(id, from, to string, amount int64) banksync.TransferRequest {
	return banksync.TransferRequest{TransferID: id, FromAccount: from, ToAccount: to, Amount: amount,
		Deadline: f.clock.now.Add(10 * time.Second), Memo: "rent"}
}

// snapshot is everything the ledger has written, for "nothing changed" checks.
type snapshot struct {
	Position int64
	Totals   ledger.Totals
	Accounts []banksync.Account
	Entries  []banksync.Entry
}

func (f *fixture) snapshot(tb testing.TB, accounts ...string) snapshot {
	tb.Helper()
	ctx := context.Background()
	var s snapshot
	var err error
	if s.Position, err = f.store.LastPosition(ctx); err != nil {
		tb.Fatal(err)
	}
	if s.Totals, err = f.store.Totals(ctx); err != nil {
		tb.Fatal(err)
	}
	if s.Accounts, err = f.store.Accounts(ctx, accounts); err != nil {
		tb.Fatal(err)
	}
	if s.Entries, err = f.store.EntriesAfter(ctx, 0, 100000); err != nil {
		tb.Fatal(err)
	}
	return s
}

func wantCode(tb testing.TB, err error, code string) {
	tb.Helper()
	if got := banksync.ErrorCode(err); got != code {
		tb.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
}

func diff(tb testing.TB, what string, got, want any) {
	tb.Helper()
	if d := cmp.Diff(want, got); d != "" {
		tb.Fatalf("%s mismatch (-want +got):\n%s", what, d)
	}
}

func testAccounts(t *testing.T, h LedgerHarness) {
	ctx := context.Background()
	f := openFixture(t, h, ledger.Config{})
	a, created, err := f.CreateAccount(ctx, "acc-1", "c1")
	if err != nil || !created {
		t.Fatalf("CreateAccount = %+v, %v, %v; want created", a, created, err)
	}
	again, created, err := f.CreateAccount(ctx, "acc-1", "c1")
	if err != nil || created {
		t.Fatalf("CreateAccount again = %v, %v; want existing, not created", created, err)
	}
	diff(t, "account", again, a)
	_, _, err = f.CreateAccount(ctx, "acc-1", "c2")
	wantCode(t, err, banksync.EACCOUNTEXISTS)

	gen, created, err := f.CreateAccount(ctx, "", "c1")
	if err != nil || !created || !banksync.ValidID(gen.ID) || gen.ID == "acc-1" {
		t.Fatalf("CreateAccount with generated id = %+v, %v, %v", gen, created, err)
	}
	got, err := f.Account(ctx, gen.ID)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "read account", got, banksync.Account{ID: gen.ID, Owner: "c1", CreatedAt: f.clock.now})
	_, err = f.Account(ctx, "nope")
	wantCode(t, err, banksync.ENOTFOUND)

	mine, err := f.AccountsOf(ctx, "c1")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range mine {
		ids = append(ids, a.ID)
	}
	want := []string{gen.ID, "acc-1"}
	if gen.ID > "acc-1" {
		want = []string{"acc-1", gen.ID}
	}
	diff(t, "accounts of c1", ids, want)
	if none, err := f.AccountsOf(ctx, "c9"); err != nil || len(none) != 0 {
		t.Fatalf("AccountsOf(c9) = %v, %v; want none", none, err)
	}
}

func testDeposits(t *testing.T, h LedgerHarness) {
	ctx := context.Background()
	f := openFixture(t, h, ledger.Config{})
	f.mustAccount(t, "a", 0)
	d := banksync.DepositRequest{ExternalRef: "kb-0001", AccountID: "a", Amount: 500, Sender: "kb-bank"}
	out, err := f.Deposit(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	want := banksync.Entry{AccountID: "a", Seq: 1, Position: 1, Kind: banksync.KindDeposit, Amount: 500,
		BalanceAfter: 500, Counterparty: "kb-bank", ExternalRef: "kb-0001", BookedAt: f.clock.now}
	diff(t, "deposit entry", out.Entry, want)
	replay, err := f.Deposit(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "replayed deposit", replay, out)
	if got := f.balance(t, "a"); got != 500 {
		t.Fatalf("balance after replay = %d, want 500 (deposited once)", got)
	}
	d.Amount = 501
	_, err = f.Deposit(ctx, d)
	wantCode(t, err, banksync.EIDEMPOTENCY)
	_, err = f.Deposit(ctx, banksync.DepositRequest{ExternalRef: "kb-0002", AccountID: "missing", Amount: 1, Sender: "kb-bank"})
	wantCode(t, err, banksync.EACCOUNTMISSING)
	tot, err := f.store.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "totals", tot, ledger.Totals{Balances: 500, Deposits: 500})
}

func testTransferCompleted(t *testing.T, h LedgerHarness) {
	ctx := context.Background()
	f := openFixture(t, h, ledger.Config{})
	f.mustAccount(t, "a", 1000)
	f.mustAccount(t, "b", 0)
	out, err := f.Transfer(ctx, f.transfer("t1", "a", "b", 300))
	if err != nil {
		t.Fatal(err)
	}
	want := banksync.TransferOutcome{TransferID: "t1", Status: banksync.StatusCompleted, Entries: []banksync.Entry{
		{AccountID: "a", Seq: 2, Position: 2, Kind: banksync.KindTransferOut, Amount: -300, BalanceAfter: 700,
			Counterparty: "b", TransferID: "t1", Memo: "rent", BookedAt: f.clock.now},
		{AccountID: "b", Seq: 1, Position: 3, Kind: banksync.KindTransferIn, Amount: 300, BalanceAfter: 300,
			Counterparty: "a", TransferID: "t1", Memo: "rent", BookedAt: f.clock.now},
	}}
	diff(t, "outcome", out, want)
	status, err := f.TransferStatus(ctx, "t1")
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "status", status, want)
	entries, err := f.Entries(ctx, "b", 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "entries of b", entries, want.Entries[1:])
}

func testIdempotentReplay(t *testing.T, h LedgerHarness) {
	ctx := context.Background()
	f := openFixture(t, h, ledger.Config{})
	f.mustAccount(t, "a", 1000)
	f.mustAccount(t, "b", 0)
	req := f.transfer("t1", "a", "b", 300)
	first, err := f.Transfer(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		again, err := f.Transfer(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		diff(t, "replayed outcome", again, first)
	}
	if a, b := f.balance(t, "a"), f.balance(t, "b"); a != 700 || b != 300 {
		t.Fatalf("balances = %d, %d; want 700, 300 (executed once)", a, b)
	}
	// A rejection is replayed too: funds arriving later do not change it.
	rej, err := f.Transfer(ctx, f.transfer("t2", "b", "a", 5000))
	if err != nil || rej.Reason != banksync.ReasonInsufficientFunds {
		t.Fatalf("t2 = %+v, %v; want insufficient_funds", rej, err)
	}
	f.mustAccount(t, "b", 0)
	if _, err := f.Deposit(ctx, banksync.DepositRequest{ExternalRef: "big", AccountID: "b", Amount: 10000, Sender: "kb"}); err != nil {
		t.Fatal(err)
	}
	again, err := f.Transfer(ctx, f.transfer("t2", "b", "a", 5000))
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "replayed rejection", again, rej)
}

func testIdempotencyConflict(t *testing.T, h LedgerHarness) {
	ctx := context.Background()
	f := openFixture(t, h, ledger.Config{})
	f.mustAccount(t, "a", 1000)
	f.mustAccount(t, "b", 0)
	f.mustAccount(t, "c", 0)
	if _, err := f.Transfer(ctx, f.transfer("t1", "a", "b", 300)); err != nil {
		t.Fatal(err)
	}
	before := f.snapshot(t, "a", "b", "c")
	for _, req := range []banksync.TransferRequest{
		f.transfer("t1", "a", "b", 301),
		f.transfer("t1", "a", "c", 300),
		func() banksync.TransferRequest { r := f.transfer("t1", "a", "b", 300); r.Memo = "other"; return r }(),
		func() banksync.TransferRequest {
			r := f.transfer("t1", "a", "b", 300)
			r.Deadline = r.Deadline.Add(time.Second)
			return r
		}(),
	} {
		_, err := f.Transfer(ctx, req)
		wantCode(t, err, banksync.EIDEMPOTENCY)
	}
	diff(t, "state after conflicts", f.snapshot(t, "a", "b", "c"), before)
}

func testInsufficientFunds(t *testing.T, h LedgerHarness) {
	ctx := context.Background()
	f := openFixture(t, h, ledger.Config{})
	f.mustAccount(t, "a", 100)
	f.mustAccount(t, "b", 0)
	out, err := f.Transfer(ctx, f.transfer("t1", "a", "b", 101))
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "outcome", out, banksync.TransferOutcome{TransferID: "t1", Status: banksync.StatusRejected, Reason: banksync.ReasonInsufficientFunds})
	if a, b := f.balance(t, "a"), f.balance(t, "b"); a != 100 || b != 0 {
		t.Fatalf("balances = %d, %d; want 100, 0", a, b)
	}
	// The whole balance may go; the account reaches zero, never below.
	out, err = f.Transfer(ctx, f.transfer("t2", "a", "b", 100))
	if err != nil || out.Status != banksync.StatusCompleted {
		t.Fatalf("t2 = %+v, %v; want completed", out, err)
	}
	if a := f.balance(t, "a"); a != 0 {
		t.Fatalf("balance = %d, want 0", a)
	}
	out, err = f.Transfer(ctx, f.transfer("t3", "a", "missing", 1))
	if err != nil || out.Reason != banksync.ReasonAccountNotFound {
		t.Fatalf("t3 = %+v, %v; want account_not_found", out, err)
	}
}

func testExpiredDeadline(t *testing.T, h LedgerHarness) {
	ctx := context.Background()
	f := openFixture(t, h, ledger.Config{})
	f.mustAccount(t, "a", 1000)
	f.mustAccount(t, "b", 0)
	req := f.transfer("t1", "a", "b", 300)
	f.clock.now = req.Deadline.Add(time.Microsecond) // the request reaches core too late
	out, err := f.Transfer(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "outcome", out, banksync.TransferOutcome{TransferID: "t1", Status: banksync.StatusRejected, Reason: banksync.ReasonExpired})
	if a := f.balance(t, "a"); a != 1000 {
		t.Fatalf("balance = %d, want 1000 (not executed)", a)
	}
	// Even if core's clock went back, the recorded refusal stands.
	f.clock.now = req.Deadline.Add(-time.Second)
	out, err = f.Transfer(ctx, req)
	if err != nil || out.Reason != banksync.ReasonExpired {
		t.Fatalf("retry = %+v, %v; want the recorded expired", out, err)
	}
}

func testFenceThenLateArrival(t *testing.T, h LedgerHarness) {
	ctx := context.Background()
	f := openFixture(t, h, ledger.Config{})
	f.mustAccount(t, "a", 1000)
	f.mustAccount(t, "b", 0)
	fenced := banksync.TransferOutcome{TransferID: "lost", Status: banksync.StatusRejected, Reason: banksync.ReasonFenced}
	out, err := f.Fence(ctx, "lost")
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "fence of unknown id", out, fenced)
	// The delayed request arrives well within its deadline by core's clock:
	// the fence refuses it anyway (P3).
	late := f.transfer("lost", "a", "b", 300)
	out, err = f.Transfer(ctx, late)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "late arrival", out, fenced)
	if a, b := f.balance(t, "a"), f.balance(t, "b"); a != 1000 || b != 0 {
		t.Fatalf("balances = %d, %d; want 1000, 0 (never executed)", a, b)
	}
	// Fencing a completed transfer answers its outcome and changes nothing.
	done, err := f.Transfer(ctx, f.transfer("t2", "a", "b", 100))
	if err != nil {
		t.Fatal(err)
	}
	again, err := f.Fence(ctx, "t2")
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "fence of completed", again, done)
	if again, _ := f.Fence(ctx, "lost"); again.Reason != banksync.ReasonFenced {
		t.Fatalf("second fence = %+v, want fenced", again)
	}
}

func testStatusIsReadOnly(t *testing.T, h LedgerHarness) {
	ctx := context.Background()
	f := openFixture(t, h, ledger.Config{})
	f.mustAccount(t, "a", 1000)
	f.mustAccount(t, "b", 0)
	st, err := f.TransferStatus(ctx, "t1")
	if err != nil || st.Status != banksync.StatusUnknown {
		t.Fatalf("status = %+v, %v; want unknown", st, err)
	}
	// An unfenced status lookup must not block a later execution.
	out, err := f.Transfer(ctx, f.transfer("t1", "a", "b", 300))
	if err != nil || out.Status != banksync.StatusCompleted {
		t.Fatalf("transfer after status = %+v, %v; want completed", out, err)
	}
}

func testBadInputWritesNothing(t *testing.T, h LedgerHarness) {
	ctx := context.Background()
	f := openFixture(t, h, ledger.Config{AmountMax: 1_000_000})
	f.mustAccount(t, "a", 1000)
	f.mustAccount(t, "b", 0)
	before := f.snapshot(t, "a", "b")
	ok := f.transfer("t1", "a", "b", 10)
	mod := func(fn func(*banksync.TransferRequest)) banksync.TransferRequest { r := ok; fn(&r); return r }
	for _, tc := range []struct {
		name string
		req  banksync.TransferRequest
		code string
	}{
		{"zero amount", mod(func(r *banksync.TransferRequest) { r.Amount = 0 }), banksync.EINVALIDAMOUNT},
		{"negative amount", mod(func(r *banksync.TransferRequest) { r.Amount = -5 }), banksync.EINVALIDAMOUNT},
		{"over the limit", mod(func(r *banksync.TransferRequest) { r.Amount = 1_000_001 }), banksync.EINVALIDAMOUNT},
		{"same account", mod(func(r *banksync.TransferRequest) { r.ToAccount = "a" }), banksync.ESAMEACCOUNT},
		{"empty id", mod(func(r *banksync.TransferRequest) { r.TransferID = "" }), banksync.EINVALID},
		{"bad id", mod(func(r *banksync.TransferRequest) { r.TransferID = "a b/c" }), banksync.EINVALID},
		{"long id", mod(func(r *banksync.TransferRequest) { r.TransferID = fmt.Sprintf("%065d", 1) }), banksync.EINVALID},
		{"no from", mod(func(r *banksync.TransferRequest) { r.FromAccount = "" }), banksync.EINVALID},
		{"no deadline", mod(func(r *banksync.TransferRequest) { r.Deadline = time.Time{} }), banksync.EINVALID},
		{"deadline too far", mod(func(r *banksync.TransferRequest) { r.Deadline = f.clock.now.Add(48 * time.Hour) }), banksync.EINVALID},
		{"memo control char", mod(func(r *banksync.TransferRequest) { r.Memo = "a\x00b" }), banksync.EINVALID},
		{"memo too long", mod(func(r *banksync.TransferRequest) { r.Memo = string(make([]byte, 200)) }), banksync.EINVALID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.Transfer(ctx, tc.req)
			wantCode(t, err, tc.code)
		})
	}
	for _, tc := range []struct {
		name string
		req  banksync.DepositRequest
		code string
	}{
		{"zero", banksync.DepositRequest{ExternalRef: "x1", AccountID: "a", Amount: 0, Sender: "kb"}, banksync.EINVALIDAMOUNT},
		{"over the limit", banksync.DepositRequest{ExternalRef: "x1", AccountID: "a", Amount: 1_000_001, Sender: "kb"}, banksync.EINVALIDAMOUNT},
		{"no ref", banksync.DepositRequest{AccountID: "a", Amount: 1, Sender: "kb"}, banksync.EINVALID},
		{"no sender", banksync.DepositRequest{ExternalRef: "x1", AccountID: "a", Amount: 1}, banksync.EINVALID},
		{"missing account", banksync.DepositRequest{ExternalRef: "x1", AccountID: "zz", Amount: 1, Sender: "kb"}, banksync.EACCOUNTMISSING},
	} {
		t.Run("deposit "+tc.name, func(t *testing.T) {
			_, err := f.Deposit(ctx, tc.req)
			wantCode(t, err, tc.code)
		})
	}
	_, _, err := f.CreateAccount(ctx, "bad id!", "c1")
	wantCode(t, err, banksync.EINVALID)
	_, _, err = f.CreateAccount(ctx, "x", "")
	wantCode(t, err, banksync.EINVALID)
	_, err = f.Fence(ctx, "")
	wantCode(t, err, banksync.EINVALID)
	_, err = f.Entries(ctx, "a", -1, 10)
	wantCode(t, err, banksync.EINVALID)
	_, err = f.Entries(ctx, "a", 0, 0)
	wantCode(t, err, banksync.EINVALID)
	diff(t, "state after bad input", f.snapshot(t, "a", "b"), before)
}

func testSeqContiguous(t *testing.T, h LedgerHarness) {
	ctx := context.Background()
	// A cache smaller than one transfer's accounts: every batch evicts and
	// reloads, so the reload path must keep the chain intact too.
	f := openFixture(t, h, ledger.Config{AccountsCachedMax: 1})
	ids := []string{"a", "b", "c"}
	for _, id := range ids {
		f.mustAccount(t, id, 1000)
	}
	for i := 0; i < 60; i++ {
		from, to := ids[i%3], ids[(i+1)%3]
		if _, err := f.Transfer(ctx, f.transfer(fmt.Sprintf("t%d", i), from, to, int64(i+1)*7)); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range ids {
		CheckAccountChain(t, f.store, id)
	}
}

// CheckAccountChain checks an account's entries are seq 1..n without holes,
// each balance_after follows from the one before, and the last equals the
// account's balance.
func CheckAccountChain(tb testing.TB, store ledger.Store, id string) (entries []banksync.Entry) {
	tb.Helper()
	ctx := context.Background()
	accts, err := store.Accounts(ctx, []string{id})
	if err != nil || len(accts) != 1 {
		tb.Fatalf("Accounts(%s) = %v, %v", id, accts, err)
	}
	entries, err = store.Entries(ctx, id, 0, 1<<30)
	if err != nil {
		tb.Fatal(err)
	}
	var balance int64
	for i, e := range entries {
		if e.Seq != int64(i+1) {
			tb.Fatalf("account %s: entry %d has seq %d, want %d", id, i, e.Seq, i+1)
		}
		balance += e.Amount
		if e.BalanceAfter != balance || balance < 0 {
			tb.Fatalf("account %s seq %d: balance_after %d, want %d (>= 0)", id, e.Seq, e.BalanceAfter, balance)
		}
	}
	if a := accts[0]; a.Balance != balance || a.LastSeq != int64(len(entries)) {
		tb.Fatalf("account %s = balance %d last_seq %d; entries say %d and %d", id, a.Balance, a.LastSeq, balance, len(entries))
	}
	return entries
}

func testRestart(t *testing.T, h LedgerHarness) {
	ctx := context.Background()
	f := openFixture(t, h, ledger.Config{})
	f.mustAccount(t, "a", 1000)
	f.mustAccount(t, "b", 0)
	first, err := f.Transfer(ctx, f.transfer("t1", "a", "b", 300))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Fence(ctx, "lost"); err != nil {
		t.Fatal(err)
	}
	f.close()
	g := reopen(t, h, f.where, ledger.Config{})
	g.clock.now = f.clock.now
	again, err := g.Transfer(ctx, f.transfer("t1", "a", "b", 300))
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "replay after restart", again, first)
	late, err := g.Transfer(ctx, g.transfer("lost", "a", "b", 1))
	if err != nil || late.Reason != banksync.ReasonFenced {
		t.Fatalf("late arrival after restart = %+v, %v; want fenced", late, err)
	}
	next, err := g.Transfer(ctx, g.transfer("t3", "b", "a", 50))
	if err != nil {
		t.Fatal(err)
	}
	if got := next.Entries[0].Position; got != first.Entries[1].Position+1 {
		t.Fatalf("position after restart = %d, want %d", got, first.Entries[1].Position+1)
	}
	CheckAccountChain(t, g.store, "a")
	CheckAccountChain(t, g.store, "b")
}
