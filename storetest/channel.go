package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"banksync"
	"banksync/channel"
)

// ChannelHarness tells the suite how to make channel stores.
type ChannelHarness struct {
	// Fresh returns the location of a new, empty channel database.
	Fresh func(tb testing.TB) string
	// Open opens the channel database at where. The suite may open one
	// location several times at once, as several channel processes do, and
	// closes every store it opens.
	Open func(tb testing.TB, where string) channel.Store
	// ChangesCrossStores: a store's Changed also hears commits made
	// through another store on the same database (PostgreSQL's NOTIFY).
	ChangesCrossStores bool
}

// Channel runs the channel store conformance suite.
func Channel(t *testing.T, h ChannelHarness) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, ChannelHarness)
	}{
		{"Accounts", testChannelAccounts},
		{"MarkStale", testChannelMarkStale},
		{"StaleAccounts", testChannelStaleAccounts},
		{"CreateTransferIdempotent", testChannelIdempotent},
		{"OnePendingPerAccount", testChannelOnePending},
		{"Settle", testChannelSettle},
		{"PendingBefore", testChannelPendingBefore},
		{"ApplyAndHistory", testChannelApplyHistory},
		{"Statement", testChannelStatement},
		{"Changed", testChannelChanged},
		{"NamesAndMemos", testChannelNames},
		{"ApplyRejectsWritesNothing", testChannelApplyRejects},
		{"ApplyRuns", testChannelApplyRuns},
		{"ApplyRunsPastHoleOnlyWhenAsked", testChannelApplyRunsPastHole},
		{"HistoryPagesWhileApplying", testChannelHistoryPages},
		{"Restart", testChannelRestart},
		{"ConcurrentApply", testChannelConcurrentApply},
		{"ConcurrentApplyRuns", testChannelConcurrentApplyRuns},
		{"ApplyRunsAfterOtherWrites", testChannelApplyRunsAfterOtherWrites},
		{"ConcurrentOnePending", testChannelConcurrentOnePending},
		{"ConcurrentSameKey", testChannelConcurrentSameKey},
		{"ConcurrentSettle", testChannelConcurrentSettle},
		{"Backlog", testChannelBacklog},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, h)
		})
	}
}

// channelT0 has a microsecond fraction, so a store that drops precision
// fails the comparisons.
var channelT0 = time.Date(2026, 11, 24, 9, 0, 0, 123456000, time.UTC)

// openChannel opens a store on a fresh database; see openChannelAt.
func openChannel(tb testing.TB, h ChannelHarness) (channel.Store, string) {
	tb.Helper()
	where := h.Fresh(tb)
	return openChannelAt(tb, h, where), where
}

// openChannelAt opens a store at where and closes it when tb ends, unless
// the test closed it already through the returned store.
func openChannelAt(tb testing.TB, h ChannelHarness, where string) channel.Store {
	tb.Helper()
	s := &closeOnce{Store: h.Open(tb, where)}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close channel store: %v", err)
		}
	})
	return s
}

type closeOnce struct {
	channel.Store
	once sync.Once
	err  error
}

func (c *closeOnce) Close() error {
	c.once.Do(func() { c.err = c.Store.Close() })
	return c.err
}

// ledgerEntries returns entries from..to of account as core would book
// them: a deposit of seq won each, so balance_after is 1+2+…+seq, and every
// third one a transfer leg, to fill every column.
func ledgerEntries(account string, from, to int64) []banksync.Entry {
	var es []banksync.Entry
	for seq := from; seq <= to; seq++ {
		e := banksync.Entry{AccountID: account, Seq: seq, Position: 1000 + 7*seq, Kind: banksync.KindDeposit,
			Amount: seq, BalanceAfter: seq * (seq + 1) / 2, Counterparty: "kb-bank",
			ExternalRef: fmt.Sprintf("kb-%d", seq), Memo: fmt.Sprintf("memo %d", seq),
			BookedAt: channelT0.Add(time.Duration(seq) * time.Second)}
		if seq%3 == 0 {
			e.Kind, e.Counterparty, e.ExternalRef, e.TransferID = banksync.KindTransferIn, "acc-other", "", fmt.Sprintf("t-%d", seq)
		}
		es = append(es, e)
	}
	return es
}

// reversed returns es newest first, as History answers.
func reversed(es []banksync.Entry) []banksync.Entry {
	out := make([]banksync.Entry, len(es))
	for i, e := range es {
		out[len(es)-1-i] = e
	}
	return out
}

func mustApply(tb testing.TB, s channel.Store, account string, es []banksync.Entry, at time.Time) channel.AccountState {
	tb.Helper()
	st, err := s.Apply(context.Background(), account, es, at)
	if err != nil {
		tb.Fatalf("Apply(%s, %d entries): %v", account, len(es), err)
	}
	return st
}

func mustAccountState(tb testing.TB, s channel.Store, id string) channel.AccountState {
	tb.Helper()
	st, ok, err := s.Account(context.Background(), id)
	if err != nil || !ok {
		tb.Fatalf("Account(%s) = %v, %v; want it known", id, ok, err)
	}
	return st
}

func mustHistory(tb testing.TB, s channel.Store, account string, beforeSeq int64, limit int) []banksync.Entry {
	tb.Helper()
	es, err := s.History(context.Background(), account, beforeSeq, limit)
	if err != nil {
		tb.Fatalf("History(%s, %d, %d): %v", account, beforeSeq, limit, err)
	}
	return es
}

func wantUnknown(tb testing.TB, s channel.Store, id string) {
	tb.Helper()
	if st, ok, err := s.Account(context.Background(), id); err != nil || ok {
		tb.Fatalf("Account(%s) = %+v, %v, %v; want unknown", id, st, ok, err)
	}
}

func newTransfer(id, customer, key, from string) channel.Transfer {
	return channel.Transfer{ID: id, Customer: customer, IdempotencyKey: key, BodyHash: "hash-" + key,
		FromAccount: from, ToAccount: "acc-to", Amount: 300, Memo: "rent", State: channel.StatePending,
		Deadline: channelT0.Add(10 * time.Second), CreatedAt: channelT0}
}

func mustCreate(tb testing.TB, s channel.Store, t channel.Transfer) channel.Transfer {
	tb.Helper()
	got, created, err := s.CreateTransfer(context.Background(), t)
	if err != nil || !created {
		tb.Fatalf("CreateTransfer(%s) = %v, %v; want created", t.ID, created, err)
	}
	diff(tb, "created transfer", got, t)
	return got
}

func mustTransfer(tb testing.TB, s channel.Store, id string) channel.Transfer {
	tb.Helper()
	t, ok, err := s.Transfer(context.Background(), id)
	if err != nil || !ok {
		tb.Fatalf("Transfer(%s) = %v, %v; want it stored", id, ok, err)
	}
	return t
}

func wantNoTransfer(tb testing.TB, s channel.Store, id string) {
	tb.Helper()
	if t, ok, err := s.Transfer(context.Background(), id); err != nil || ok {
		tb.Fatalf("Transfer(%s) = %+v, %v, %v; want none stored", id, t, ok, err)
	}
}

func transferIDs(ts []channel.Transfer) []string {
	out := []string{}
	for _, t := range ts {
		out = append(out, t.ID)
	}
	return out
}

func testChannelAccounts(t *testing.T, h ChannelHarness) {
	ctx := context.Background()
	s, _ := openChannel(t, h)
	wantUnknown(t, s, "acc-1")
	for _, a := range [][2]string{{"acc-2", "alice"}, {"acc-1", "alice"}, {"acc-3", "bob"}} {
		if err := s.AddAccount(ctx, a[0], a[1]); err != nil {
			t.Fatalf("AddAccount(%s, %s): %v", a[0], a[1], err)
		}
	}
	diff(t, "new account", mustAccountState(t, s, "acc-1"), channel.AccountState{ID: "acc-1", Owner: "alice"})

	// Core's word on an owner is kept: a second AddAccount changes nothing.
	if err := s.AddAccount(ctx, "acc-1", "mallory"); err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, "acc-1", ledgerEntries("acc-1", 1, 2), channelT0)
	if err := s.AddAccount(ctx, "acc-1", "alice"); err != nil {
		t.Fatal(err)
	}
	diff(t, "account after AddAccount again", mustAccountState(t, s, "acc-1"),
		channel.AccountState{ID: "acc-1", Owner: "alice", SyncedSeq: 2, Balance: 3, SyncedAt: channelT0})

	// Apply meets an account before anyone asked core whose it is; the
	// owner is filled in later, and the sync state kept.
	st := mustApply(t, s, "acc-0", ledgerEntries("acc-0", 1, 3), channelT0)
	want := channel.AccountState{ID: "acc-0", SyncedSeq: 3, Balance: 6, SyncedAt: channelT0}
	diff(t, "Apply's state of an unknown account", st, want)
	diff(t, "account added by Apply", mustAccountState(t, s, "acc-0"), want)
	if err := s.AddAccount(ctx, "acc-0", "alice"); err != nil {
		t.Fatal(err)
	}
	want.Owner = "alice"
	diff(t, "account with owner filled in", mustAccountState(t, s, "acc-0"), want)

	mine, err := s.AccountsOf(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range mine {
		got = append(got, a.ID)
		if a.Owner != "alice" {
			t.Errorf("AccountsOf(alice) lists %s of %q", a.ID, a.Owner)
		}
	}
	diff(t, "accounts of alice, by id", got, []string{"acc-0", "acc-1", "acc-2"})
	if none, err := s.AccountsOf(ctx, "nobody"); err != nil || len(none) != 0 {
		t.Fatalf("AccountsOf(nobody) = %v, %v; want none", none, err)
	}

	// Apply with no entries adds an unknown account and answers its state.
	st, err = s.Apply(ctx, "acc-9", nil, channelT0)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "empty Apply on an unknown account", st, channel.AccountState{ID: "acc-9"})
	diff(t, "account added by an empty Apply", mustAccountState(t, s, "acc-9"), channel.AccountState{ID: "acc-9"})
	st, err = s.Apply(ctx, "acc-0", nil, channelT0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "empty Apply on a known account", st, want)
}

func testChannelMarkStale(t *testing.T, h ChannelHarness) {
	ctx := context.Background()
	s, _ := openChannel(t, h)
	t1, t2, t3 := channelT0, channelT0.Add(time.Minute), channelT0.Add(time.Hour)

	if err := s.MarkStale(ctx, "acc-1", t1); err != nil {
		t.Fatal(err)
	}
	want := channel.AccountState{ID: "acc-1", Stale: true, StaleSince: t1, StaleGen: 1}
	diff(t, "account marked stale before it was known", mustAccountState(t, s, "acc-1"), want)
	if err := s.MarkStale(ctx, "acc-1", t2); err != nil {
		t.Fatal(err)
	}
	want.StaleGen = 2
	diff(t, "account marked stale twice (stale_since kept, marks counted)", mustAccountState(t, s, "acc-1"), want)

	// Applying some entries does not prove the missing ones arrived.
	st := mustApply(t, s, "acc-1", ledgerEntries("acc-1", 1, 4), t2)
	want = channel.AccountState{ID: "acc-1", SyncedSeq: 4, Balance: 10, SyncedAt: t2, Stale: true, StaleSince: t1, StaleGen: 2}
	diff(t, "Apply keeps stale", st, want)
	diff(t, "account after Apply", mustAccountState(t, s, "acc-1"), want)

	// A sync read generation 2; a failure marks the account again before the
	// sync reaches core's head: its clear must not hide that failure.
	if err := s.MarkStale(ctx, "acc-1", t3); err != nil {
		t.Fatal(err)
	}
	if err := s.ClearStale(ctx, "acc-1", 2); err != nil {
		t.Fatal(err)
	}
	want.StaleGen = 3
	diff(t, "clear with an old generation", mustAccountState(t, s, "acc-1"), want)
	if err := s.ClearStale(ctx, "acc-1", 3); err != nil {
		t.Fatal(err)
	}
	want.Stale, want.StaleSince = false, time.Time{}
	diff(t, "clear with the current generation", mustAccountState(t, s, "acc-1"), want)

	if err := s.MarkStale(ctx, "acc-1", t3); err != nil {
		t.Fatal(err)
	}
	want.Stale, want.StaleSince, want.StaleGen = true, t3, 4
	diff(t, "account stale again (sync state kept)", mustAccountState(t, s, "acc-1"), want)
	if err := s.AddAccount(ctx, "acc-1", "alice"); err != nil {
		t.Fatal(err)
	}
	want.Owner = "alice"
	diff(t, "stale account with owner filled in", mustAccountState(t, s, "acc-1"), want)
}

// testChannelStaleAccounts lists stale accounts stale longest first, up to
// a limit, and no longer once cleared.
func testChannelStaleAccounts(t *testing.T, h ChannelHarness) {
	ctx := context.Background()
	s, _ := openChannel(t, h)
	list := func(limit int) []string {
		t.Helper()
		ids, err := s.StaleAccounts(ctx, limit)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if got := list(10); len(got) != 0 {
		t.Fatalf("stale accounts of an empty store = %v", got)
	}
	mustApply(t, s, "fresh", ledgerEntries("fresh", 1, 2), channelT0)
	for i, id := range []string{"acc-c", "acc-a", "acc-b"} {
		if err := s.MarkStale(ctx, id, channelT0.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.MarkStale(ctx, "acc-c", channelT0.Add(time.Hour)); err != nil { // stale_since kept
		t.Fatal(err)
	}
	diff(t, "stale accounts", list(10), []string{"acc-c", "acc-a", "acc-b"})
	diff(t, "stale accounts, limit 2", list(2), []string{"acc-c", "acc-a"})
	if err := s.ClearStale(ctx, "acc-c", mustAccountState(t, s, "acc-c").StaleGen); err != nil {
		t.Fatal(err)
	}
	diff(t, "stale accounts after a clear", list(10), []string{"acc-a", "acc-b"})
}

func testChannelIdempotent(t *testing.T, h ChannelHarness) {
	ctx := context.Background()
	s, _ := openChannel(t, h)
	first := mustCreate(t, s, newTransfer("t-1", "alice", "key-1", "acc-a"))
	diff(t, "stored transfer", mustTransfer(t, s, "t-1"), first)

	// A retry with the same key while the first is pending, even with
	// another body: the first comes back and nothing is stored.
	retry := newTransfer("t-2", "alice", "key-1", "acc-a")
	retry.Amount, retry.BodyHash = 999, "other-body"
	got, created, err := s.CreateTransfer(ctx, retry)
	if err != nil || created {
		t.Fatalf("CreateTransfer with a used key = %v, %v; want the existing transfer", created, err)
	}
	diff(t, "transfer returned for a used key", got, first)
	wantNoTransfer(t, s, "t-2")

	// Keys are per customer.
	mustCreate(t, s, newTransfer("t-3", "bob", "key-1", "acc-b"))

	settled, _, err := s.Settle(ctx, "t-1", channel.StateFailed, "insufficient_funds", channelT0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got, created, err = s.CreateTransfer(ctx, newTransfer("t-4", "alice", "key-1", "acc-a"))
	if err != nil || created {
		t.Fatalf("CreateTransfer with a used key after settling = %v, %v; want the existing transfer", created, err)
	}
	diff(t, "settled transfer returned for a used key", got, settled)
	wantNoTransfer(t, s, "t-4")
	pending, err := s.PendingOf(ctx, "acc-a")
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "pending of acc-a", transferIDs(pending), []string{})

	// Times come back in UTC at microsecond precision, whatever was given.
	loc := time.FixedZone("KST", 9*60*60)
	odd := newTransfer("t-5", "alice", "key-5", "acc-a")
	odd.Deadline, odd.CreatedAt = channelT0.In(loc).Add(789*time.Nanosecond), channelT0.In(loc)
	odd.State, odd.Reason = "", "ignored"
	got, created, err = s.CreateTransfer(ctx, odd)
	if err != nil || !created {
		t.Fatalf("CreateTransfer(t-5) = %v, %v", created, err)
	}
	want := newTransfer("t-5", "alice", "key-5", "acc-a")
	want.Deadline = channelT0
	diff(t, "created transfer as stored", got, want)
	stored := mustTransfer(t, s, "t-5")
	diff(t, "stored transfer", stored, want)
	if stored.Deadline.Location() != time.UTC || stored.CreatedAt.Location() != time.UTC {
		t.Errorf("times read back in %v and %v, want UTC", stored.Deadline.Location(), stored.CreatedAt.Location())
	}
}

func testChannelOnePending(t *testing.T, h ChannelHarness) {
	ctx := context.Background()
	s, _ := openChannel(t, h)
	first := mustCreate(t, s, newTransfer("t-1", "alice", "key-1", "acc-a"))
	_, created, err := s.CreateTransfer(ctx, newTransfer("t-2", "alice", "key-2", "acc-a"))
	if !errors.Is(err, channel.ErrInProgress) || created {
		t.Fatalf("second pending transfer from acc-a: created=%v, err=%v; want ErrInProgress", created, err)
	}
	wantNoTransfer(t, s, "t-2")
	// Another customer, same source account: still one at a time.
	if _, _, err := s.CreateTransfer(ctx, newTransfer("t-3", "bob", "key-3", "acc-a")); !errors.Is(err, channel.ErrInProgress) {
		t.Fatalf("pending transfer from acc-a by another customer: err=%v; want ErrInProgress", err)
	}
	// Another source account is free.
	mustCreate(t, s, newTransfer("t-4", "alice", "key-4", "acc-b"))

	pending, err := s.PendingOf(ctx, "acc-a")
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "pending of acc-a", pending, []channel.Transfer{first})

	if _, _, err := s.Settle(ctx, "t-1", channel.StateCompleted, "", channelT0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	next := mustCreate(t, s, newTransfer("t-2", "alice", "key-2", "acc-a"))
	pending, err = s.PendingOf(ctx, "acc-a")
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "pending of acc-a after settling", pending, []channel.Transfer{next})
	if none, err := s.PendingOf(ctx, "acc-z"); err != nil || len(none) != 0 {
		t.Fatalf("PendingOf(acc-z) = %v, %v; want none", none, err)
	}
}

func testChannelSettle(t *testing.T, h ChannelHarness) {
	ctx := context.Background()
	s, _ := openChannel(t, h)
	tr := mustCreate(t, s, newTransfer("t-1", "alice", "key-1", "acc-a"))
	at := channelT0.Add(1500 * time.Millisecond)

	if _, _, err := s.Settle(ctx, "t-1", channel.StatePending, "", at); err == nil {
		t.Fatal("Settle to pending succeeded; want an error")
	}
	if _, _, err := s.Settle(ctx, "t-1", "lost", "", at); err == nil {
		t.Fatal("Settle to an unknown state succeeded; want an error")
	}
	diff(t, "transfer after refused settles", mustTransfer(t, s, "t-1"), tr)

	got, changed, err := s.Settle(ctx, "t-1", channel.StateCompleted, "", at)
	if err != nil || !changed {
		t.Fatalf("Settle of a pending transfer: changed %v, %v; want changed", changed, err)
	}
	want := tr
	want.State, want.SettledAt = channel.StateCompleted, at
	diff(t, "settled transfer", got, want)
	diff(t, "stored settled transfer", mustTransfer(t, s, "t-1"), want)

	// Only pending moves: a late "failed" changes nothing.
	got, changed, err = s.Settle(ctx, "t-1", channel.StateFailed, "expired", at.Add(time.Minute))
	if err != nil || changed {
		t.Fatalf("Settle of a settled transfer: changed %v, %v; want unchanged", changed, err)
	}
	diff(t, "settling a settled transfer", got, want)
	diff(t, "stored transfer after a second settle", mustTransfer(t, s, "t-1"), want)

	tr2 := mustCreate(t, s, newTransfer("t-2", "alice", "key-2", "acc-b"))
	got, changed, err = s.Settle(ctx, "t-2", channel.StateFailed, "insufficient_funds", at)
	if err != nil || !changed {
		t.Fatalf("Settle of a pending transfer: changed %v, %v; want changed", changed, err)
	}
	tr2.State, tr2.Reason, tr2.SettledAt = channel.StateFailed, "insufficient_funds", at
	diff(t, "failed transfer", got, tr2)

	if _, _, err := s.Settle(ctx, "t-nope", channel.StateCompleted, "", at); err == nil {
		t.Fatal("Settle of an unknown transfer succeeded; want an error")
	}
	wantNoTransfer(t, s, "t-nope")
}

func testChannelPendingBefore(t *testing.T, h ChannelHarness) {
	ctx := context.Background()
	s, _ := openChannel(t, h)
	// Deadlines out of id order, one shared, one settled.
	for i, d := range []int{30, 10, 20, 10, 40, 5} {
		tr := newTransfer(fmt.Sprintf("t-%d", i), "alice", fmt.Sprintf("key-%d", i), fmt.Sprintf("acc-%d", i))
		tr.Deadline = channelT0.Add(time.Duration(d) * time.Second)
		mustCreate(t, s, tr)
	}
	if _, _, err := s.Settle(ctx, "t-5", channel.StateCompleted, "", channelT0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		before time.Duration
		limit  int
		want   []string
	}{
		{30 * time.Second, 100, []string{"t-1", "t-3", "t-2"}}, // deadline 30 s is not before 30 s
		{time.Hour, 100, []string{"t-1", "t-3", "t-2", "t-0", "t-4"}},
		{time.Hour, 2, []string{"t-1", "t-3"}},
		{10 * time.Second, 100, []string{}},
		{time.Hour, 0, []string{}},
	} {
		got, err := s.PendingBefore(ctx, channelT0.Add(tc.before), tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		diff(t, fmt.Sprintf("PendingBefore(+%s, %d)", tc.before, tc.limit), transferIDs(got), tc.want)
	}
}

func testChannelApplyHistory(t *testing.T, h ChannelHarness) {
	s, _ := openChannel(t, h)
	all := ledgerEntries("acc-1", 1, 10)
	if got := mustHistory(t, s, "acc-1", math.MaxInt64, 10); len(got) != 0 {
		t.Fatalf("history of an unknown account = %v, want none", got)
	}
	mustApply(t, s, "acc-1", all[:1], channelT0)
	mustApply(t, s, "acc-1", all[1:4], channelT0.Add(time.Second))
	st := mustApply(t, s, "acc-1", all[4:], channelT0.Add(2*time.Second))
	diff(t, "state after Apply", st, channel.AccountState{ID: "acc-1", SyncedSeq: 10, Balance: 55, SyncedAt: channelT0.Add(2 * time.Second)})
	diff(t, "stored state", mustAccountState(t, s, "acc-1"), st)

	// Another account's history interleaved in the table stays apart.
	mustApply(t, s, "acc-0", ledgerEntries("acc-0", 1, 3), channelT0)
	mustApply(t, s, "acc-2", ledgerEntries("acc-2", 1, 3), channelT0)

	diff(t, "whole history", mustHistory(t, s, "acc-1", math.MaxInt64, 100), reversed(all))
	diff(t, "first page", mustHistory(t, s, "acc-1", math.MaxInt64, 3), reversed(all[7:]))
	diff(t, "page before seq 5", mustHistory(t, s, "acc-1", 5, 2), reversed(all[2:4]))
	diff(t, "last page", mustHistory(t, s, "acc-1", 3, 10), reversed(all[:2]))
	if got := mustHistory(t, s, "acc-1", 1, 10); len(got) != 0 {
		t.Fatalf("history before seq 1 = %v, want none", got)
	}
	if got := mustHistory(t, s, "acc-1", math.MaxInt64, 0); len(got) != 0 {
		t.Fatalf("history with limit 0 = %v, want none", got)
	}
}

func testChannelStatement(t *testing.T, h ChannelHarness) {
	ctx := context.Background()
	s, _ := openChannel(t, h)
	all := ledgerEntries("acc-1", 1, 10) // entry seq is booked at channelT0 + seq seconds
	mustApply(t, s, "acc-1", all, channelT0)
	mustApply(t, s, "acc-0", ledgerEntries("acc-0", 1, 3), channelT0)
	mustApply(t, s, "acc-2", ledgerEntries("acc-2", 1, 3), channelT0)
	at := func(seq int64) time.Time { return channelT0.Add(time.Duration(seq) * time.Second) }
	for _, tc := range []struct {
		name           string
		account        string
		after, through int64
		from, to       time.Time
		limit          int
		want           []banksync.Entry
	}{
		{"the range: from included, to not", "acc-1", 0, 10, at(3), at(8), 100, all[2:7]},
		{"a page", "acc-1", 0, 10, at(3), at(8), 2, all[2:4]},
		{"the next page", "acc-1", 4, 10, at(3), at(8), 2, all[4:6]},
		{"through a seq", "acc-1", 0, 5, at(3), at(8), 100, all[2:5]},
		{"everything", "acc-1", 0, 10, channelT0, at(11), 100, all},
		{"a range after the last entry", "acc-1", 0, 10, at(11), at(20), 100, nil},
		{"an empty range", "acc-1", 0, 10, at(5), at(5), 100, nil},
		{"an unknown account", "acc-9", 0, 10, channelT0, at(11), 100, nil},
		{"limit 0", "acc-1", 0, 10, channelT0, at(11), 0, nil},
	} {
		got, err := s.Statement(ctx, tc.account, tc.after, tc.through, tc.from, tc.to, tc.limit)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(got) == 0 && len(tc.want) == 0 {
			continue
		}
		diff(t, tc.name, got, tc.want)
	}
}

func testChannelChanged(t *testing.T, h ChannelHarness) {
	ctx := context.Background()
	s, where := openChannel(t, h)
	other := openChannelAt(t, h, where)
	// Whatever was signalled while opening is taken first.
	drain := func(s channel.Store) {
		for {
			select {
			case <-s.Changed():
			case <-time.After(200 * time.Millisecond):
				return
			}
		}
	}
	heard := func(s channel.Store, what string) {
		t.Helper()
		select {
		case <-s.Changed():
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: Changed not signalled within 5 s", what)
		}
	}
	drain(s)
	drain(other)
	mustApply(t, s, "acc-1", ledgerEntries("acc-1", 1, 2), channelT0)
	heard(s, "Apply")
	if h.ChangesCrossStores {
		heard(other, "Apply through another store")
	}
	drain(s)
	drain(other)
	if _, err := other.ApplyRuns(ctx, []channel.Run{{Account: "acc-2", Entries: ledgerEntries("acc-2", 1, 3)}}, channelT0); err != nil {
		t.Fatal(err)
	}
	heard(other, "ApplyRuns")
	if h.ChangesCrossStores {
		heard(s, "ApplyRuns through another store")
	}
	seqs, err := s.SyncedSeqs(ctx, []string{"acc-1", "acc-2", "acc-9"})
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "SyncedSeqs", seqs, map[string]int64{"acc-1": 2, "acc-2": 3})
}

func testChannelApplyRejects(t *testing.T, h ChannelHarness) {
	ctx := context.Background()
	s, _ := openChannel(t, h)
	all := ledgerEntries("acc-1", 1, 10)
	mustApply(t, s, "acc-1", all[:3], channelT0)
	if err := s.MarkStale(ctx, "acc-1", channelT0); err != nil {
		t.Fatal(err)
	}
	before := mustAccountState(t, s, "acc-1")
	foreign := ledgerEntries("acc-2", 4, 4)[0]
	bad := func(es ...banksync.Entry) []banksync.Entry { return es }
	// A run that does not follow synced is a conflict (another applier got
	// there first: re-read and plan again); entries that are not a run are
	// the caller's bug, refused as such and never as a conflict.
	for _, tc := range []struct {
		name    string
		entries []banksync.Entry
		want    error
	}{
		{"hole before", all[4:6], channel.ErrSeqConflict},
		{"hole inside", bad(all[3], all[5]), channel.ErrMalformedRun},
		{"repeat of the last", all[2:5], channel.ErrSeqConflict},
		{"repeat of all", all[:3], channel.ErrSeqConflict},
		{"out of order", bad(all[4], all[3]), channel.ErrMalformedRun},
		{"foreign entry", bad(all[3], all[4], foreign), channel.ErrMalformedRun},
		{"foreign first", bad(foreign, all[4]), channel.ErrMalformedRun},
		{"seq 0", bad(banksync.Entry{AccountID: "acc-1", Seq: 0}), channel.ErrMalformedRun},
	} {
		_, err := s.Apply(ctx, "acc-1", tc.entries, channelT0.Add(time.Hour))
		if !errors.Is(err, tc.want) || errors.Is(err, channel.ErrSeqConflict) && errors.Is(err, channel.ErrMalformedRun) {
			t.Errorf("Apply %s: err = %v, want %v (only)", tc.name, err, tc.want)
		}
		diff(t, "state after Apply "+tc.name, mustAccountState(t, s, "acc-1"), before)
		diff(t, "history after Apply "+tc.name, mustHistory(t, s, "acc-1", math.MaxInt64, 100), reversed(all[:3]))
	}
	if got := mustHistory(t, s, "acc-2", math.MaxInt64, 100); len(got) != 0 {
		t.Fatalf("a refused foreign entry was stored: %v", got)
	}

	// An account not yet known starts at 0: a first batch that does not
	// start at seq 1 adds nothing, not even the account.
	for _, tc := range []struct {
		entries []banksync.Entry
		want    error
	}{
		{ledgerEntries("acc-3", 2, 4), channel.ErrSeqConflict},
		{bad(ledgerEntries("acc-3", 1, 1)[0], foreign), channel.ErrMalformedRun},
	} {
		if _, err := s.Apply(ctx, "acc-3", tc.entries, channelT0); !errors.Is(err, tc.want) {
			t.Errorf("Apply to an unknown account from seq %d: err = %v, want %v", tc.entries[0].Seq, err, tc.want)
		}
		wantUnknown(t, s, "acc-3")
	}

	// And the account still takes the right next batch; it stays marked
	// stale (only a sync that reaches core's head clears that).
	st := mustApply(t, s, "acc-1", all[3:], channelT0.Add(time.Hour))
	diff(t, "state after the right batch", st, channel.AccountState{ID: "acc-1", SyncedSeq: 10, Balance: 55,
		SyncedAt: channelT0.Add(time.Hour), Stale: true, StaleSince: channelT0, StaleGen: 1})
}

// testChannelHistoryPages reads an account's history page by page, newest
// first, while entries keep arriving between the reads: keyset pages never
// repeat or skip a row, which OFFSET pages would.
func testChannelHistoryPages(t *testing.T, h ChannelHarness) {
	const pageSize = 7
	s, _ := openChannel(t, h)
	all := ledgerEntries("acc-1", 1, 200)
	mustApply(t, s, "acc-1", all[:50], channelT0)
	var got []banksync.Entry
	applied := int64(50)
	for before := int64(math.MaxInt64); ; {
		page := mustHistory(t, s, "acc-1", before, pageSize)
		got = append(got, page...)
		if len(page) < pageSize {
			break
		}
		before = page[len(page)-1].Seq
		next := min(applied+5, int64(len(all)))
		mustApply(t, s, "acc-1", all[applied:next], channelT0)
		applied = next
	}
	diff(t, "history read in pages while applying", got, reversed(all[:50]))
	diff(t, "newest page afterwards", mustHistory(t, s, "acc-1", math.MaxInt64, 2), reversed(all[applied-2:applied]))
}

func testChannelRestart(t *testing.T, h ChannelHarness) {
	ctx := context.Background()
	s, where := openChannel(t, h)
	all := ledgerEntries("acc-1", 1, 5)
	st := mustApply(t, s, "acc-1", all, channelT0)
	if err := s.AddAccount(ctx, "acc-1", "alice"); err != nil {
		t.Fatal(err)
	}
	st.Owner = "alice"
	tr := mustCreate(t, s, newTransfer("t-1", "alice", "key-1", "acc-1"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openChannelAt(t, h, where)
	diff(t, "state after reopening", mustAccountState(t, s, "acc-1"), st)
	diff(t, "history after reopening", mustHistory(t, s, "acc-1", math.MaxInt64, 10), reversed(all))
	diff(t, "transfer after reopening", mustTransfer(t, s, "t-1"), tr)
	if _, _, err := s.CreateTransfer(ctx, newTransfer("t-2", "alice", "key-2", "acc-1")); !errors.Is(err, channel.ErrInProgress) {
		t.Fatalf("second pending transfer after reopening: err = %v, want ErrInProgress", err)
	}
	mustApply(t, s, "acc-1", ledgerEntries("acc-1", 6, 6), channelT0)
}

func mustApplyRuns(tb testing.TB, s channel.Store, runs []channel.Run, at time.Time) []channel.RunResult {
	tb.Helper()
	res, err := s.ApplyRuns(context.Background(), runs, at)
	if err != nil {
		tb.Fatalf("ApplyRuns(%d runs): %v", len(runs), err)
	}
	if len(res) != len(runs) {
		tb.Fatalf("ApplyRuns(%d runs) = %d results", len(runs), len(res))
	}
	return res
}

// testChannelApplyRuns applies one batch holding every case a run can be:
// new account, repeats to skip, a hole in a known and in an unknown
// account, nothing new; then batches the store must refuse whole.
func testChannelApplyRuns(t *testing.T, h ChannelHarness) {
	ctx := context.Background()
	s, _ := openChannel(t, h)
	es := map[string][]banksync.Entry{}
	for _, a := range []string{"acc-1", "acc-2", "acc-3", "acc-4", "acc-5"} {
		es[a] = ledgerEntries(a, 1, 10)
	}
	mustApply(t, s, "acc-1", es["acc-1"][:3], channelT0)
	if err := s.MarkStale(ctx, "acc-1", channelT0); err != nil {
		t.Fatal(err)
	}
	mustApply(t, s, "acc-4", es["acc-4"][:3], channelT0)
	mustApply(t, s, "acc-5", es["acc-5"][:5], channelT0)
	stale1, known4, known5 := mustAccountState(t, s, "acc-1"), mustAccountState(t, s, "acc-4"), mustAccountState(t, s, "acc-5")

	at := channelT0.Add(time.Minute)
	res := mustApplyRuns(t, s, []channel.Run{
		{Account: "acc-1", Entries: es["acc-1"][1:6]}, // 2..6 on synced 3: applies 4..6
		{Account: "acc-2", Entries: es["acc-2"][:3]},  // new: 1..3
		{Account: "acc-3", Entries: es["acc-3"][1:4]}, // unknown, 2..4: a hole
		{Account: "acc-4", Entries: es["acc-4"][5:7]}, // 6..7 on synced 3: a hole
		{Account: "acc-5", Entries: es["acc-5"][:5]},  // 1..5 on synced 5: all repeats
	}, at)
	want1 := stale1
	want1.SyncedSeq, want1.Balance, want1.SyncedAt = 6, 21, at
	diff(t, "results", res, []channel.RunResult{
		{State: want1, Appended: 3},
		{State: channel.AccountState{ID: "acc-2", SyncedSeq: 3, Balance: 6, SyncedAt: at}, Appended: 3},
		{State: channel.AccountState{ID: "acc-3"}, Gap: true},
		{State: known4, Gap: true},
		{State: known5},
	})
	for i, want := range []channel.AccountState{want1, res[1].State, known4, known5} {
		id := []string{"acc-1", "acc-2", "acc-4", "acc-5"}[i]
		diff(t, "stored state of "+id, mustAccountState(t, s, id), want)
	}
	wantUnknown(t, s, "acc-3")
	diff(t, "history of acc-1", mustHistory(t, s, "acc-1", math.MaxInt64, 100), reversed(es["acc-1"][:6]))
	diff(t, "history of acc-2", mustHistory(t, s, "acc-2", math.MaxInt64, 100), reversed(es["acc-2"][:3]))
	diff(t, "history of acc-4", mustHistory(t, s, "acc-4", math.MaxInt64, 100), reversed(es["acc-4"][:3]))

	if res, err := s.ApplyRuns(ctx, nil, at); err != nil || len(res) != 0 {
		t.Errorf("ApplyRuns(no runs) = %v, %v; want nothing, no error", res, err)
	}
	foreign := ledgerEntries("acc-9", 7, 7)[0]
	for _, tc := range []struct {
		name string
		runs []channel.Run
	}{
		{"two runs of one account", []channel.Run{{Account: "acc-2", Entries: es["acc-2"][3:4]}, {Account: "acc-2", Entries: es["acc-2"][4:5]}}},
		{"a run with a hole inside", []channel.Run{{Account: "acc-2", Entries: []banksync.Entry{es["acc-2"][3], es["acc-2"][5]}}}},
		{"a foreign entry", []channel.Run{{Account: "acc-4", Entries: []banksync.Entry{es["acc-4"][3], foreign}}}},
	} {
		runs := append([]channel.Run{{Account: "acc-1", Entries: es["acc-1"][6:]}}, tc.runs...)
		if _, err := s.ApplyRuns(ctx, runs, at.Add(time.Minute)); !errors.Is(err, channel.ErrMalformedRun) || errors.Is(err, channel.ErrSeqConflict) {
			t.Errorf("ApplyRuns %s: err = %v, want ErrMalformedRun", tc.name, err)
		}
		diff(t, "acc-1 after ApplyRuns "+tc.name, mustAccountState(t, s, "acc-1"), want1)
		diff(t, "acc-2 after ApplyRuns "+tc.name, mustAccountState(t, s, "acc-2"), res[1].State)
	}
}

// testChannelApplyRunsPastHole: a run past a hole is a Gap, unless the
// run carries UnsafePastHole (the chaos checker's own tests, through
// channel.Unsafe.OutOfOrder): then the store appends it, so that the checker
// can be shown to catch a history that is not a prefix of core's.
func testChannelApplyRunsPastHole(t *testing.T, h ChannelHarness) {
	s, _ := openChannel(t, h)
	es := ledgerEntries("acc-1", 1, 6)
	known := mustApply(t, s, "acc-1", es[:2], channelT0)
	at := channelT0.Add(time.Minute)
	res := mustApplyRuns(t, s, []channel.Run{{Account: "acc-1", Entries: es[3:5]}}, at) // 4..5 on synced 2
	diff(t, "result of a run past a hole", res, []channel.RunResult{{State: known, Gap: true}})
	diff(t, "history after a run past a hole", mustHistory(t, s, "acc-1", math.MaxInt64, 100), reversed(es[:2]))

	res = mustApplyRuns(t, s, []channel.Run{{Account: "acc-1", Entries: es[3:5], UnsafePastHole: true}}, at)
	moved := known
	moved.SyncedSeq, moved.Balance, moved.SyncedAt = 5, es[4].BalanceAfter, at
	diff(t, "result of a run past a hole, unsafe", res, []channel.RunResult{{State: moved, Appended: 2}})
	diff(t, "stored state after a run past a hole, unsafe", mustAccountState(t, s, "acc-1"), moved)
	diff(t, "history after a run past a hole, unsafe", mustHistory(t, s, "acc-1", math.MaxInt64, 100),
		reversed(append(slices.Clone(es[:2]), es[3:5]...)))
}

// testChannelBacklog: the backlog counts pending transfers — not settled
// ones — with the oldest one's creation time, and stale accounts.
func testChannelBacklog(t *testing.T, h ChannelHarness) {
	ctx := context.Background()
	s, _ := openChannel(t, h)
	backlog := func() channel.Backlog {
		t.Helper()
		b, err := s.Backlog(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	diff(t, "empty store's backlog", backlog(), channel.Backlog{})
	for i := range 4 {
		tr := newTransfer(fmt.Sprintf("t-%d", i), "alice", fmt.Sprintf("key-%d", i), fmt.Sprintf("acc-%d", i))
		tr.CreatedAt = channelT0.Add(time.Duration(i) * time.Second)
		mustCreate(t, s, tr)
	}
	// The oldest is settled: the next one is the oldest pending.
	if _, _, err := s.Settle(ctx, "t-0", channel.StateCompleted, "", channelT0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"acc-1", "acc-2"} {
		if err := s.MarkStale(ctx, id, channelT0); err != nil {
			t.Fatal(err)
		}
	}
	diff(t, "backlog", backlog(), channel.Backlog{Pending: 3, OldestPending: channelT0.Add(time.Second), Stale: 2})
}
