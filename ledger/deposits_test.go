package ledger_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"banksync"
	"banksync/ledger"
	"banksync/sqlite"
)

// countingStore counts group commits, to show a batch shares them.
type countingStore struct {
	ledger.Store
	commits atomic.Int64
}

func (s *countingStore) Commit(ctx context.Context, b *ledger.Batch) error {
	s.commits.Add(1)
	return s.Store.Commit(ctx, b)
}

func openCountingLedger(t *testing.T, cfg ledger.Config) (*ledger.Ledger, *countingStore) {
	t.Helper()
	inner, err := sqlite.OpenLedger(context.Background(), filepath.Join(t.TempDir(), "core.db"))
	if err != nil {
		t.Fatal(err)
	}
	store := &countingStore{Store: inner}
	l, err := ledger.Open(context.Background(), store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); inner.Close() })
	return l, store
}

func mustAccounts(t *testing.T, l *ledger.Ledger, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if _, _, err := l.CreateAccount(context.Background(), id, "payroll"); err != nil {
			t.Fatalf("CreateAccount(%s): %v", id, err)
		}
	}
}

// payroll is n deposits spread over the accounts p-0 … p-9, amount i+1 for
// the i-th.
func payroll(prefix string, n int) []banksync.DepositRequest {
	ds := make([]banksync.DepositRequest, n)
	for i := range ds {
		ds[i] = banksync.DepositRequest{ExternalRef: fmt.Sprintf("%s-%d", prefix, i),
			AccountID: fmt.Sprintf("p-%d", i%10), Amount: int64(i + 1), Sender: "employer-bank"}
	}
	return ds
}

var payrollAccounts = []string{"p-0", "p-1", "p-2", "p-3", "p-4", "p-5", "p-6", "p-7", "p-8", "p-9"}

// ledgerState is everything the ledger has written, for "nothing changed"
// checks.
func ledgerState(t *testing.T, s ledger.Store) any {
	t.Helper()
	ctx := context.Background()
	accts, err := s.Accounts(ctx, payrollAccounts)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := s.EntriesAfter(ctx, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	totals, err := s.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return []any{accts, entries, totals}
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	if got := banksync.ErrorCode(err); got != code {
		t.Fatalf("error code = %q (%v), want %q", got, err, code)
	}
}

func TestDepositsBooksEachInOrderAndReplays(t *testing.T) {
	ctx := context.Background()
	l, store := openLedger(t)
	mustAccounts(t, l, payrollAccounts...)
	ds := payroll("pay", 200)

	got, err := l.Deposits(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ds) {
		t.Fatalf("%d results for %d deposits", len(got), len(ds))
	}
	lastSeq := map[string]int64{}
	balance := map[string]int64{}
	var booked []banksync.Entry
	for i, res := range got {
		d := ds[i]
		if res.Err != nil {
			t.Fatalf("deposits[%d]: %v", i, res.Err)
		}
		e := res.Outcome.Entry
		if res.Outcome.ExternalRef != d.ExternalRef || res.Outcome.Status != banksync.StatusCompleted ||
			e.AccountID != d.AccountID || e.Amount != d.Amount || e.ExternalRef != d.ExternalRef ||
			e.Counterparty != d.Sender || e.Kind != banksync.KindDeposit {
			t.Fatalf("deposits[%d] = %+v, want the booking of %+v", i, res.Outcome, d)
		}
		// Queued in request order, so each account's seqs follow it: 1, 2, 3 …
		if e.Seq != lastSeq[d.AccountID]+1 {
			t.Fatalf("deposits[%d]: seq %d on %s after %d", i, e.Seq, d.AccountID, lastSeq[d.AccountID])
		}
		lastSeq[d.AccountID] = e.Seq
		balance[d.AccountID] += d.Amount
		if e.BalanceAfter != balance[d.AccountID] {
			t.Fatalf("deposits[%d]: balance_after %d, want %d", i, e.BalanceAfter, balance[d.AccountID])
		}
		booked = append(booked, e)
	}
	for id, want := range balance {
		a, err := l.Account(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if a.Balance != want || a.LastSeq != lastSeq[id] {
			t.Fatalf("account %s = balance %d last_seq %d, want %d and %d", id, a.Balance, a.LastSeq, want, lastSeq[id])
		}
	}
	committed, err := store.EntriesAfter(ctx, 0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(booked, committed); d != "" {
		t.Fatalf("committed entries != answered entries (-answered +committed):\n%s", d)
	}

	before := ledgerState(t, store)
	again, err := l.Deposits(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(got, again); d != "" {
		t.Fatalf("replayed batch answered differently (-first +replay):\n%s", d)
	}
	if d := cmp.Diff(before, ledgerState(t, store)); d != "" {
		t.Fatalf("replayed batch wrote (-before +after):\n%s", d)
	}
}

func TestDepositsItemsFailAlone(t *testing.T) {
	ctx := context.Background()
	l, store := openLedger(t)
	mustAccounts(t, l, "p-0", "p-1")
	ds := []banksync.DepositRequest{
		{ExternalRef: "r-0", AccountID: "p-0", Amount: 100, Sender: "kb"},
		{ExternalRef: "r-1", AccountID: "p-9", Amount: 100, Sender: "kb"}, // no such account
		{ExternalRef: "r-2", AccountID: "p-1", Amount: 200, Sender: "kb"},
		{ExternalRef: "r-0", AccountID: "p-0", Amount: 100, Sender: "kb"}, // same ref, same body: a replay
		{ExternalRef: "r-0", AccountID: "p-0", Amount: 999, Sender: "kb"}, // same ref, another body
	}
	got, err := l.Deposits(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 2, 3} {
		if got[i].Err != nil {
			t.Fatalf("deposits[%d]: %v", i, got[i].Err)
		}
	}
	wantCode(t, got[1].Err, banksync.EACCOUNTMISSING)
	wantCode(t, got[4].Err, banksync.EIDEMPOTENCY)
	if d := cmp.Diff(got[0].Outcome, got[3].Outcome); d != "" {
		t.Fatalf("repeated ref in one batch was not a replay (-first +repeat):\n%s", d)
	}
	totals, err := store.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (ledger.Totals{Balances: 300, Deposits: 300}); totals != want {
		t.Fatalf("totals = %+v, want %+v: only r-0 and r-2 booked, once each", totals, want)
	}
	// The one a single deposit gives for the same request.
	_, single := l.Deposit(ctx, ds[1])
	if d := cmp.Diff(single, got[1].Err); d != "" {
		t.Fatalf("batch item error != Deposit error (-single +batch):\n%s", d)
	}
}

func TestDepositsRefusesBadBatchWritingNothing(t *testing.T) {
	ctx := context.Background()
	l, store := openLedger(t)
	mustAccounts(t, l, payrollAccounts...)
	before := ledgerState(t, store)
	with := func(i int, change func(*banksync.DepositRequest)) []banksync.DepositRequest {
		ds := payroll("bad", 5)
		change(&ds[i])
		return ds
	}
	for _, tc := range []struct {
		name string
		ds   []banksync.DepositRequest
		code string
		msg  string
	}{
		{"none", nil, banksync.EINVALID, "deposits must hold between 1 and 1000"},
		{"empty", []banksync.DepositRequest{}, banksync.EINVALID, "deposits must hold between 1 and 1000"},
		{"too many", payroll("big", ledger.DepositsBatchMax+1), banksync.EINVALID, "deposits must hold between 1 and 1000"},
		{"bad external_ref", with(2, func(d *banksync.DepositRequest) { d.ExternalRef = "../x" }), banksync.EINVALID, "deposits[2]: external_ref"},
		{"missing account_id", with(4, func(d *banksync.DepositRequest) { d.AccountID = "" }), banksync.EINVALID, "deposits[4]: account_id"},
		{"missing sender", with(0, func(d *banksync.DepositRequest) { d.Sender = "" }), banksync.EINVALID, "deposits[0]: sender"},
		{"zero amount", with(1, func(d *banksync.DepositRequest) { d.Amount = 0 }), banksync.EINVALIDAMOUNT, "deposits[1]: amount"},
		{"over the limit", with(3, func(d *banksync.DepositRequest) { d.Amount = l.AmountMax() + 1 }), banksync.EINVALIDAMOUNT, "deposits[3]: amount"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := l.Deposits(ctx, tc.ds)
			wantCode(t, err, tc.code)
			if msg := banksync.ErrorMessage(err); !strings.HasPrefix(msg, tc.msg) {
				t.Fatalf("message = %q, want it to start %q", msg, tc.msg)
			}
			if got != nil {
				t.Fatalf("results = %v, want none", got)
			}
		})
	}
	if d := cmp.Diff(before, ledgerState(t, store)); d != "" {
		t.Fatalf("a refused batch wrote (-before +after):\n%s", d)
	}
}

func TestDepositsShareGroupCommits(t *testing.T) {
	ctx := context.Background()
	l, store := openCountingLedger(t, ledger.Config{})
	mustAccounts(t, l, payrollAccounts...)
	start := store.commits.Load()
	got, err := l.Deposits(ctx, payroll("pay", ledger.DepositsBatchMax))
	if err != nil {
		t.Fatal(err)
	}
	for i, res := range got {
		if res.Err != nil {
			t.Fatalf("deposits[%d]: %v", i, res.Err)
		}
	}
	// Waiting for each deposit in turn would take one commit each.
	commits := store.commits.Load() - start
	if commits < 1 || commits > 20 {
		t.Fatalf("%d deposits took %d commits, want 1 to 20", ledger.DepositsBatchMax, commits)
	}
	t.Logf("%d deposits in %d commits", ledger.DepositsBatchMax, commits)
}

func TestDepositsRefusedByAFullQueueSucceedOnRetry(t *testing.T) {
	ctx := context.Background()
	l, store := openCountingLedger(t, ledger.Config{QueueSizeMax: 8})
	mustAccounts(t, l, payrollAccounts...)
	ds := payroll("pay", 300)
	// A queue smaller than the batch never takes all of it at once, so the
	// refused deposits are sent again on their own.
	const attemptsMax = 100
	pending, refused := ds, 0
	for attempt := 1; len(pending) > 0; attempt++ {
		if attempt > attemptsMax {
			t.Fatalf("%d deposits still refused after %d attempts", len(pending), attemptsMax)
		}
		got, err := l.Deposits(ctx, pending)
		if err != nil {
			t.Fatal(err)
		}
		var again []banksync.DepositRequest
		for i, res := range got {
			if res.Err == nil {
				continue
			}
			wantCode(t, res.Err, banksync.EUNAVAILABLE)
			if res.Outcome != (banksync.DepositOutcome{}) {
				t.Fatalf("%s refused but answered %+v", pending[i].ExternalRef, res.Outcome)
			}
			again = append(again, pending[i])
		}
		if attempt == 1 {
			refused = len(again)
		}
		pending = again
	}
	if refused == 0 {
		t.Fatalf("a queue of 8 took 300 deposits at once; the test did not fill it")
	}
	totals, err := store.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(300 * 301 / 2); totals.Deposits != want || totals.Balances != want {
		t.Fatalf("totals = %+v, want %d: every deposit booked exactly once", totals, want)
	}
	t.Logf("first attempt: %d of %d refused by the full queue", refused, len(ds))
}

func TestDepositsAfterCloseAreRefusedEach(t *testing.T) {
	l, _ := openLedger(t)
	l.Close()
	got, err := l.Deposits(context.Background(), payroll("pay", 3))
	if err != nil {
		t.Fatal(err)
	}
	for i, res := range got {
		if banksync.ErrorCode(res.Err) != banksync.EUNAVAILABLE {
			t.Fatalf("deposits[%d] after Close = %v, want %s", i, res.Err, banksync.EUNAVAILABLE)
		}
	}
}
