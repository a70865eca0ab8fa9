package channel_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"banksync"
	"banksync/channel"
	"banksync/chaos"
)

// hangingStore is a channel store that, while hanging, answers no call: each
// blocks until its context ends (or the hang does), as a PostgreSQL behind a
// dead network path does. It can also be slow: each call waits delay
// first. It never fails on its own.
type hangingStore struct {
	chaos.HookedStore
	mu     sync.Mutex
	over   chan struct{} // closed when the hang ends; nil while not hanging
	blocks atomic.Int64  // calls that found the store hanging
	delay  atomic.Int64  // nanoseconds each call waits before it runs
}

// setHang starts or ends the hang; ending it lets blocked calls through.
func (h *hangingStore) setHang(on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case on && h.over == nil:
		h.over = make(chan struct{})
	case !on && h.over != nil:
		close(h.over)
		h.over = nil
	}
}

// wait blocks while the store hangs, until ctx ends, and for the delay.
func (h *hangingStore) wait(ctx context.Context) error {
	if d := time.Duration(h.delay.Load()); d > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
	}
	h.mu.Lock()
	over := h.over
	h.mu.Unlock()
	if over == nil {
		return nil
	}
	h.blocks.Add(1)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-over:
		return nil
	}
}

// hookCore is core as the channel sees it, running a hook after core
// answered a transfer or a fence (after), or entries (entries): the moment
// the tests make the history database hang.
type hookCore struct {
	channel.Core
	after   atomic.Pointer[func()]
	entries atomic.Pointer[func()]
}

func (h *hookCore) hook() {
	if f := h.after.Load(); f != nil {
		(*f)()
	}
}

func (h *hookCore) Transfer(ctx context.Context, req banksync.TransferRequest) (banksync.TransferOutcome, error) {
	defer h.hook()
	return h.Core.Transfer(ctx, req)
}

func (h *hookCore) Entries(ctx context.Context, account string, afterSeq int64, limit int) ([]banksync.Entry, error) {
	defer func() {
		if f := h.entries.Load(); f != nil {
			(*f)()
		}
	}()
	return h.Core.Entries(ctx, account, afterSeq, limit)
}

func (h *hookCore) Fence(ctx context.Context, id string) (banksync.TransferOutcome, error) {
	defer h.hook()
	return h.Core.Fence(ctx, id)
}

// Timeouts of the hang tests: the store's is short so the test is quick;
// core's is longer than two of the store's, so a round that returns within
// hungRoundBound was cut by the store calls' bound, not the round's (which
// is the interval + CoreTimeout + StoreTimeout).
const (
	hangStoreTimeout = 300 * time.Millisecond
	hangCoreTimeout  = 2 * time.Second
	hangInterval     = 100 * time.Millisecond
	hangSlack        = 500 * time.Millisecond // scheduling on a loaded machine running -race
	// A reconcile round on a hanging store makes two calls before it gives
	// up: the due transfers (or a settlement's Settle) and the stale accounts.
	hungRoundBound = 2*hangStoreTimeout + hangSlack
	// A Submit whose settlement of a rejected transfer hangs waits for one
	// Settle.
	hungSubmitBound = hangStoreTimeout + hangSlack
)

// returnsWithin runs fn and fails the test if it has not returned within
// bound; it then ends the hang, so fn can return and nothing is left
// running.
func returnsWithin(t *testing.T, hs *hangingStore, bound time.Duration, what string, fn func()) {
	t.Helper()
	start := time.Now()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
		t.Logf("%s returned after %s (bound %s)", what, time.Since(start).Round(time.Millisecond), bound)
	case <-time.After(bound):
		hs.setHang(false)
		<-done
		t.Fatalf("%s still running after %s; want it to give up within that bound", what, bound)
	}
}

// newHangStack is a stack whose channel reaches its real store through a
// hangingStore and core through a hookCore, with short timeouts.
func newHangStack(t *testing.T, open func(t *testing.T) channel.Store) (*stack, *hangingStore, *hookCore) {
	t.Helper()
	hs := &hangingStore{}
	hs.HookedStore = chaos.HookedStore{Store: open(t), Before: func(ctx context.Context, _ bool) error { return hs.wait(ctx) }}
	clk := &clock{now: time.Now()}
	cfg := channel.Config{Deadline: 10 * time.Second, CoreTimeout: hangCoreTimeout, StoreTimeout: hangStoreTimeout,
		ReconcileInterval: hangInterval, ReconcileGrace: time.Second, Now: clk.Now}
	s := newStack(t, hs, cfg)
	hc := &hookCore{Core: s.coreAPI}
	s.ch, s.clock = channel.New(hs, hc, cfg), clk
	t.Cleanup(func() { hs.setHang(false) })
	return s, hs, hc
}

// A history database that hangs (no error, no answer) holds neither a
// customer's transfer nor a reconcile round past its bound, and once it
// answers again the reconciler settles the transfer and repairs the stale
// account (P2, P4).
func TestHistoryDatabaseHangs(t *testing.T) {
	for _, cs := range channelStores {
		t.Run(cs.name, func(t *testing.T) {
			s, hs, hc := newHangStack(t, cs.open)
			ctx := context.Background()
			// alice-1's salary is not in the history: stale, for the reconciler to repair.
			if err := s.store.MarkStale(ctx, "alice-1", s.clock.Now()); err != nil {
				t.Fatal(err)
			}
			hangNow := func() { hs.setHang(true) }

			// Core decides (insufficient funds), then the history database
			// hangs before the decision is recorded: the customer is told
			// pending within the bound.
			hc.after.Store(&hangNow)
			var tr channel.Transfer
			var err error
			returnsWithin(t, hs, hungSubmitBound, "Submit", func() { tr, err = s.submit(t, "k1", 20_000) })
			hc.after.Store(nil)
			if err != nil || tr.State != channel.StatePending {
				t.Fatalf("Submit = %+v, %v; want pending (the settlement could not be recorded)", tr, err)
			}

			// Past the deadline, with the database still hanging: a round
			// gives up within its bound instead of blocking.
			s.clock.Advance(10*time.Second + time.Second + time.Millisecond)
			blocked := hs.blocks.Load()
			returnsWithin(t, hs, hungRoundBound, "Reconcile (hanging from the start)", func() { _, err = s.ch.Reconcile(ctx) })
			if err == nil {
				t.Fatal("Reconcile on a hanging database = nil error; want the round reported incomplete")
			}
			if hs.blocks.Load() == blocked {
				t.Fatal("Reconcile made no call that hung: the test proves nothing")
			}

			// The database starts hanging in the middle of a round, after
			// the due transfers were listed and core answered the fence:
			// the settlement and the round are bounded too.
			hs.setHang(false)
			hc.after.Store(&hangNow)
			blocked = hs.blocks.Load()
			returnsWithin(t, hs, hungRoundBound, "Reconcile (hanging from the fence)", func() { _, err = s.ch.Reconcile(ctx) })
			hc.after.Store(nil)
			if err == nil || hs.blocks.Load() == blocked {
				t.Fatalf("Reconcile hanging from the fence = %v after %d hung calls; want an incomplete round that hung", err, hs.blocks.Load()-blocked)
			}

			// The reconciler's loop keeps making rounds through the hang:
			// it is never frozen in one.
			loop, stop := context.WithCancel(ctx)
			stopped := make(chan struct{})
			go func() { defer close(stopped); s.ch.RunReconciler(loop) }()
			defer func() { stop(); hs.setHang(false); <-stopped }()
			const roundsMin = 3
			blocked = hs.blocks.Load()
			for start := time.Now(); hs.blocks.Load()-blocked < 2*roundsMin; time.Sleep(10 * time.Millisecond) {
				if took := time.Since(start); took > roundsMin*(hangInterval+hungRoundBound) {
					t.Fatalf("the reconciler made %d hung calls in %s; want %d rounds of two: it is stuck in a round", hs.blocks.Load()-blocked, took, roundsMin)
				}
			}

			// The database answers again: the next round settles the
			// transfer and repairs alice-1.
			hs.setHang(false)
			for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
				got, _, err := hs.Store.Transfer(ctx, tr.ID)
				st, _, err2 := hs.Store.Account(ctx, "alice-1")
				if err != nil || err2 != nil {
					t.Fatal(err, err2)
				}
				if got.State != channel.StatePending && !st.Stale {
					if got.State != channel.StateFailed || got.Reason != banksync.ReasonInsufficientFunds {
						t.Fatalf("transfer settled %s/%s; want failed/%s, core's decision", got.State, got.Reason, banksync.ReasonInsufficientFunds)
					}
					if st.SyncedSeq != 1 || st.Balance != 10_000 {
						t.Fatalf("alice-1 after repair = %+v; want synced through the salary (seq 1, 10,000)", st)
					}
					break
				}
				if took := time.Since(start); took > hangInterval+hungRoundBound+hangSlack {
					t.Fatalf("%s after the database came back: transfer %s, alice-1 %+v; want settled and repaired by the next round (P2, P4)", took, got.State, st)
				}
			}
			checkPrefix(t, s, "alice-1")
		})
	}
}

// A slow history database (every call answers, just within StoreTimeout)
// cannot stretch a reconcile round past its bound either: the round is cut
// and the next one settles the rest (P2).
func TestReconcileRoundIsBounded(t *testing.T) {
	for _, cs := range channelStores {
		t.Run(cs.name, func(t *testing.T) {
			s, hs, _ := newHangStack(t, cs.open)
			ctx := context.Background()
			// Lost requests leave a pending transfer on each of alice's
			// accounts: more than one round can settle at this speed.
			const transfers, slowCall = 20, 200 * time.Millisecond
			ids := make(map[string]bool)
			for i := range transfers {
				from := fmt.Sprintf("alice-%d", i+2)
				if _, _, err := s.ledger.CreateAccount(ctx, from, "alice"); err != nil {
					t.Fatal(err)
				}
				s.net.Plan("POST", "/core/v1/transfers", chaos.DropRequest)
				tr, err := s.ch.Submit(ctx, channel.SubmitRequest{Customer: "alice", IdempotencyKey: from,
					FromAccount: from, ToAccount: "bob-1", Amount: 1, Memo: "lost"})
				if err != nil || tr.State != channel.StatePending {
					t.Fatalf("Submit from %s = %+v, %v; want pending", from, tr, err)
				}
				ids[tr.ID] = true
			}
			s.clock.Advance(10*time.Second + time.Second + time.Millisecond)

			hs.delay.Store(int64(slowCall))
			roundTimeout := hangInterval + hangCoreTimeout + hangStoreTimeout // as Reconcile derives it
			var settled int
			var err error
			returnsWithin(t, hs, roundTimeout+hangSlack, "Reconcile (slow database)", func() { settled, err = s.ch.Reconcile(ctx) })
			if err == nil || settled == 0 || settled >= transfers {
				t.Fatalf("slow round settled %d of %d, %v; want some settled and the round reported cut short", settled, transfers, err)
			}

			hs.delay.Store(0)
			// (Not n == transfers-settled exactly: the Settle the round cut
			// may have committed before it was told.)
			if n, err := s.ch.Reconcile(ctx); err != nil || n == 0 {
				t.Fatalf("next round settled %d (%v); want the rest", n, err)
			}
			for id := range ids {
				if got, _, err := s.store.Transfer(ctx, id); err != nil || got.State != channel.StateFailed || got.Reason != banksync.ReasonFenced {
					t.Fatalf("transfer %s = %+v, %v; want failed/fenced", id, got, err)
				}
			}
		})
	}
}

// The history database hangs while the sync engine writes: a completed
// transfer's entries, and a stale account's repair. The customer is
// answered within one sync, the stale mark and a Settle; the round within
// one sync and the stale mark; and once the database answers, the
// reconciler records completed and repairs the account (P2, P4).
func TestHistoryDatabaseHangsWhileApplying(t *testing.T) {
	for _, cs := range channelStores {
		t.Run(cs.name, func(t *testing.T) {
			s, hs, hc := newHangStack(t, cs.open)
			ctx := context.Background()
			hangNow := func() { hs.setHang(true) }
			// One sync, cut at CoreTimeout + StoreTimeout, then a store call
			// or two, each cut at StoreTimeout.
			hungApplyBound := hangCoreTimeout + 3*hangStoreTimeout + hangSlack

			hc.after.Store(&hangNow)
			var tr channel.Transfer
			var err error
			returnsWithin(t, hs, hungApplyBound, "Submit", func() { tr, err = s.submit(t, "k1", 300) })
			hc.after.Store(nil)
			if err != nil || tr.State != channel.StatePending {
				t.Fatalf("Submit = %+v, %v; want pending (the settlement could not be recorded)", tr, err)
			}

			// Past the deadline, the database hangs once core answered the
			// fence: the round's settlement writes the entries and hangs.
			hs.setHang(false)
			s.clock.Advance(10*time.Second + time.Second + time.Millisecond)
			hc.after.Store(&hangNow)
			returnsWithin(t, hs, hungApplyBound, "Reconcile (hanging in a settlement)", func() { _, err = s.ch.Reconcile(ctx) })
			hc.after.Store(nil)
			if err == nil {
				t.Fatal("Reconcile hanging in a settlement = nil error; want the round reported incomplete")
			}

			// The database answers again: the next round records completed (P2).
			hs.setHang(false)
			if n, err := s.ch.Reconcile(ctx); err != nil || n != 1 {
				t.Fatalf("Reconcile after the hang = %d, %v; want the transfer settled", n, err)
			}
			s.mustState(t, tr.ID, channel.StateCompleted, "")

			// It hangs again in a repair: a deposit's event is lost and
			// alice-1 is stale; its sync reads the deposit from core, then
			// the write hangs.
			if _, err := s.ledger.Deposit(ctx, banksync.DepositRequest{ExternalRef: "bonus", AccountID: "alice-1", Amount: 500, Sender: "acme"}); err != nil {
				t.Fatal(err)
			}
			if err := s.store.MarkStale(ctx, "alice-1", s.clock.Now()); err != nil {
				t.Fatal(err)
			}
			hc.entries.Store(&hangNow)
			returnsWithin(t, hs, hungApplyBound, "Reconcile (hanging in a repair)", func() { _, err = s.ch.Reconcile(ctx) })
			hc.entries.Store(nil)
			if err == nil {
				t.Fatal("Reconcile hanging in a repair = nil error; want the round reported incomplete")
			}

			// The database answers again: the next round repairs alice-1 (P4).
			hs.setHang(false)
			if _, err := s.ch.Reconcile(ctx); err != nil {
				t.Fatalf("Reconcile after the hang: %v", err)
			}
			if st, _, _ := hs.Store.Account(ctx, "alice-1"); st.Stale || st.SyncedSeq != 3 || st.Balance != 10_200 {
				t.Fatalf("alice-1 after the hang = %+v; want synced through the deposit (seq 3, 10,200), not stale", st)
			}
			checkPrefix(t, s, "alice-1")
		})
	}
}

// A customer's transfer on a history database that hangs from the start
// gets an error within the store's bound instead of waiting on it, and
// nothing reaches core; once the database answers, the same request goes
// through.
func TestSubmitOnAHungDatabase(t *testing.T) {
	for _, cs := range channelStores {
		t.Run(cs.name, func(t *testing.T) {
			s, hs, _ := newHangStack(t, cs.open)
			before := s.coreBalance(t, "alice-1")
			hs.setHang(true)
			var err error
			returnsWithin(t, hs, hangStoreTimeout+hangSlack, "Submit", func() { _, err = s.submit(t, "k-hung", 1_000) })
			if err == nil {
				t.Fatal("Submit on a hung database = nil error; want it refused")
			}
			if got := s.coreBalance(t, "alice-1"); got != before {
				t.Fatalf("alice-1 at core = %d, want %d: a refused submit reached core", got, before)
			}
			hs.setHang(false)
			tr, err := s.submit(t, "k-hung", 1_000)
			if err != nil || tr.State != channel.StateCompleted {
				t.Fatalf("Submit after the database answered = %+v, %v; want completed", tr, err)
			}
		})
	}
}
