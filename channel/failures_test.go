package channel_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"banksync"
	"banksync/channel"
	"banksync/chaos"
	bhttp "banksync/http"
	"banksync/ledger"
	"banksync/postgres"
	"banksync/postgres/pgtest"
	"banksync/sqlite"
)

const serviceToken = "svc"

// stack is core (ledger on SQLite behind its HTTP API) and a channel that
// reaches it through a fault-injecting transport.
type stack struct {
	coreAPI channel.Core // the channel's client for core, through net
	ledger  *ledger.Ledger
	core    ledger.Store
	store   channel.Store
	net     *chaos.Transport
	ch      *channel.Channel
	clock   *clock
}

// clock is the channel's clock; core keeps its own, which lags five minutes
// behind so no test can pass on clocks alone: only the fence protects.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// channelStores are the channel stores every test here runs against.
var channelStores = []struct {
	name string
	open func(t *testing.T) channel.Store
}{
	{"sqlite", func(t *testing.T) channel.Store {
		s, err := sqlite.OpenChannel(context.Background(), filepath.Join(t.TempDir(), "channel.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
	{"postgres", func(t *testing.T) channel.Store {
		s, err := postgres.OpenChannel(context.Background(), pgtest.Database(t))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
}

// eachStore runs fn once per channel store, as a subtest.
func eachStore(t *testing.T, fn func(t *testing.T, s *stack)) {
	for _, cs := range channelStores {
		t.Run(cs.name, func(t *testing.T) {
			fn(t, newStack(t, cs.open(t), channel.Config{}))
		})
	}
}

func newStack(t *testing.T, store channel.Store, cfg channel.Config) *stack {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	core, err := sqlite.OpenLedger(ctx, filepath.Join(dir, "core.db"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(ctx, core, ledger.Config{Now: func() time.Time { return time.Now().Add(-5 * time.Minute) }})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(bhttp.NewCoreServer(l, serviceToken, nil))
	net := chaos.NewTransport(nil)
	clk := &clock{now: time.Now()}
	if cfg.Deadline == 0 {
		// CoreTimeout leaves room for a loaded machine running -race.
		cfg = channel.Config{Deadline: 10 * time.Second, CoreTimeout: time.Second, ReconcileGrace: time.Second, Now: clk.Now}
	}
	coreAPI := bhttp.NewCoreClient(srv.URL, serviceToken, net)
	ch := channel.New(store, coreAPI, cfg)
	t.Cleanup(func() { srv.Close(); l.Close(); core.Close(); store.Close() })
	s := &stack{coreAPI: coreAPI, ledger: l, core: core, store: store, net: net, ch: ch, clock: clk}
	for _, a := range []struct{ id, owner string }{{"alice-1", "alice"}, {"bob-1", "bob"}} {
		if _, _, err := l.CreateAccount(ctx, a.id, a.owner); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Deposit(ctx, banksync.DepositRequest{ExternalRef: "salary", AccountID: "alice-1", Amount: 10_000, Sender: "acme"}); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *stack) submit(t *testing.T, key string, amount int64) (channel.Transfer, error) {
	t.Helper()
	return s.ch.Submit(context.Background(), channel.SubmitRequest{Customer: "alice", IdempotencyKey: key,
		FromAccount: "alice-1", ToAccount: "bob-1", Amount: amount, Memo: "rent"})
}

func (s *stack) coreBalance(t *testing.T, id string) int64 {
	t.Helper()
	a, err := s.ledger.Account(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a.Balance
}

// executions counts the entries core booked for a transfer id: 0 or 2.
func (s *stack) executions(t *testing.T, transferID string) int {
	t.Helper()
	n := 0
	for _, acct := range []string{"alice-1", "bob-1"} {
		es, err := s.core.Entries(context.Background(), acct, 0, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if e.TransferID == transferID {
				n++
			}
		}
	}
	return n / 2
}

// settleAll passes the deadline and the grace and runs the reconciler.
func (s *stack) settleAll(t *testing.T) {
	t.Helper()
	s.clock.Advance(10*time.Second + time.Second + time.Millisecond)
	if _, err := s.ch.Reconcile(context.Background()); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	pending, err := s.store.PendingBefore(context.Background(), s.clock.Now().Add(time.Hour), 100)
	if err != nil || len(pending) != 0 {
		t.Fatalf("still pending after reconcile (P2): %v, %v", pending, err)
	}
}

func (s *stack) mustState(t *testing.T, id, state, reason string) channel.Transfer {
	t.Helper()
	got, err := s.ch.Transfer(context.Background(), "alice", id)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != state || got.Reason != reason {
		t.Fatalf("transfer %s is %s/%q, want %s/%q", id, got.State, got.Reason, state, reason)
	}
	return got
}

func TestCompleted(t *testing.T) {
	eachStore(t, func(t *testing.T, s *stack) {
		tr, err := s.submit(t, "k1", 300)
		if err != nil || tr.State != channel.StateCompleted {
			t.Fatalf("Submit = %+v, %v; want completed", tr, err)
		}
		page, err := s.ch.History(context.Background(), channel.NewCursors([]byte("x")), "alice", "alice-1", "", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Entries) != 2 || page.Entries[0].Amount != -300 || page.Account.Balance != 9_700 {
			t.Fatalf("history after transfer = %+v", page)
		}
	})
}

// The request is lost before it reaches core: the transfer ends failed by
// reconciliation and never executes.
func TestRequestLost(t *testing.T) {
	eachStore(t, func(t *testing.T, s *stack) {
		s.net.Plan("POST", "/core/v1/transfers", chaos.DropRequest)
		tr, err := s.submit(t, "k1", 300)
		if err != nil || tr.State != channel.StatePending {
			t.Fatalf("Submit = %+v, %v; want pending", tr, err)
		}
		// Before the deadline the reconciler leaves it alone.
		if n, err := s.ch.Reconcile(context.Background()); err != nil || n != 0 {
			t.Fatalf("Reconcile before the deadline settled %d (%v)", n, err)
		}
		s.settleAll(t)
		s.mustState(t, tr.ID, channel.StateFailed, banksync.ReasonFenced)
		if n := s.executions(t, tr.ID); n != 0 || s.coreBalance(t, "alice-1") != 10_000 {
			t.Fatalf("lost transfer executed %d times", n)
		}
		// The customer is not blocked: the next transfer goes through.
		if next, err := s.submit(t, "k2", 100); err != nil || next.State != channel.StateCompleted {
			t.Fatalf("next transfer = %+v, %v", next, err)
		}
	})
}

// Core executes, its answer is lost: the transfer ends completed, executed
// once, and its history rows arrive.
func TestResponseLost(t *testing.T) {
	eachStore(t, func(t *testing.T, s *stack) {
		s.net.Plan("POST", "/core/v1/transfers", chaos.DropResponse)
		tr, err := s.submit(t, "k1", 300)
		if err != nil || tr.State != channel.StatePending {
			t.Fatalf("Submit = %+v, %v; want pending", tr, err)
		}
		// The customer retries with the same key: the same transfer, no second one.
		again, err := s.submit(t, "k1", 300)
		if err != nil || again.ID != tr.ID {
			t.Fatalf("retry = %+v, %v; want the same transfer", again, err)
		}
		// A different transfer meanwhile is refused.
		if _, err := s.submit(t, "k2", 50); banksync.ErrorCode(err) != banksync.EINPROGRESS {
			t.Fatalf("second transfer while pending: %v, want %s", err, banksync.EINPROGRESS)
		}
		s.settleAll(t)
		s.mustState(t, tr.ID, channel.StateCompleted, "")
		if n := s.executions(t, tr.ID); n != 1 || s.coreBalance(t, "alice-1") != 9_700 {
			t.Fatalf("executed %d times, balance %d", n, s.coreBalance(t, "alice-1"))
		}
		st, _, _ := s.store.Account(context.Background(), "alice-1")
		if st.SyncedSeq != 2 || st.Balance != 9_700 {
			t.Fatalf("channel's alice-1 = %+v, want synced through 2 at 9,700", st)
		}
	})
}

// The request is held in the network past the deadline, the reconciler
// fences it, then it reaches core — whose clock says it is still within the
// deadline. The fence refuses it (P3).
func TestRequestDeliveredAfterFence(t *testing.T) {
	eachStore(t, func(t *testing.T, s *stack) {
		s.net.Plan("POST", "/core/v1/transfers", chaos.DelayRequest)
		tr, err := s.submit(t, "k1", 300)
		if err != nil || tr.State != channel.StatePending {
			t.Fatalf("Submit = %+v, %v; want pending", tr, err)
		}
		s.settleAll(t)
		s.mustState(t, tr.ID, channel.StateFailed, banksync.ReasonFenced)
		answers := s.net.Release()
		if len(answers) != 1 {
			t.Fatalf("released %d requests, want 1", len(answers))
		}
		if n := s.executions(t, tr.ID); n != 0 || s.coreBalance(t, "alice-1") != 10_000 {
			t.Fatalf("a transfer reported failed executed on core (%d times); core said %s", n, answers[0])
		}
	})
}

// Double clicks and retry storms: one execution per idempotency key, one
// pending transfer per account.
func TestRetryStorm(t *testing.T) {
	eachStore(t, func(t *testing.T, s *stack) {
		var wg sync.WaitGroup
		ids := make(chan string, 64)
		codes := make(chan string, 64)
		for i := 0; i < 32; i++ {
			wg.Add(2)
			go func() { // the same click, 32 times
				defer wg.Done()
				tr, err := s.submit(t, "same-key", 100)
				if err == nil {
					ids <- tr.ID
				}
				codes <- banksync.ErrorCode(err)
			}()
			go func(i int) { // other transfers from the same account at once
				defer wg.Done()
				_, err := s.submit(t, fmt.Sprintf("other-%d", i), 1)
				codes <- banksync.ErrorCode(err)
			}(i)
		}
		wg.Wait()
		close(ids)
		close(codes)
		distinct := map[string]bool{}
		for id := range ids {
			distinct[id] = true
		}
		for code := range codes {
			if code != "" && code != banksync.EINPROGRESS {
				t.Errorf("unexpected error code %q", code)
			}
		}
		s.settleAll(t)
		if len(distinct) > 1 {
			t.Fatalf("the same key made %d transfers", len(distinct))
		}
		// Whatever interleaving the load produced, every transfer core
		// executed ran once (one debit on alice-1) and the channel reports it completed;
		// money is conserved.
		legs := map[string]int{}
		es, _ := s.core.Entries(context.Background(), "alice-1", 0, 1000)
		for _, e := range es {
			if e.TransferID != "" {
				legs[e.TransferID]++
			}
		}
		for id, n := range legs {
			if n != 1 { // alice's side: one debit per execution
				t.Fatalf("transfer %s booked %d debits on alice-1, want 1", id, n)
			}
			if tr, err := s.ch.Transfer(context.Background(), "alice", id); err != nil || tr.State != channel.StateCompleted {
				t.Fatalf("transfer %s executed at core, channel says %+v, %v", id, tr, err)
			}
		}
		tot, _ := s.core.Totals(context.Background())
		if tot.Balances != tot.Deposits {
			t.Fatalf("totals %+v: money not conserved", tot)
		}
	})
}

// The seed's "−100": the +500 deposit's row is missing when the −100
// transfer completes. The channel fills the hole from core before showing
// anything, and no read ever shows a balance core never had (P5).
func TestMissingHistoryIsFilledInOrder(t *testing.T) {
	eachStore(t, func(t *testing.T, s *stack) {
		ctx := context.Background()
		cs := channel.NewCursors([]byte("x"))
		// The salary (seq 1) was never applied: its event is "lost". While the
		// transfer completes, core's entries endpoint is down too.
		s.net.Plan("GET", "/entries", chaos.DropRequest)
		tr, err := s.submit(t, "k1", 100)
		if err != nil || tr.State != channel.StateCompleted {
			t.Fatalf("Submit = %+v, %v", tr, err)
		}
		// The debit (seq 2) could not be applied over the hole: history is still
		// empty, balance 0 — a balance alice-1 really had before the salary.
		st, _, _ := s.store.Account(ctx, "alice-1")
		if st.SyncedSeq != 0 || !st.Stale {
			t.Fatalf("after the failed fill: %+v, want nothing applied and stale", st)
		}
		checkPrefix(t, s, "alice-1")
		// The next read syncs first (stale), in order: +10,000 then −100.
		page, err := s.ch.History(ctx, cs, "alice", "alice-1", "", 10)
		if err != nil {
			t.Fatal(err)
		}
		if page.Account.Stale || page.Account.Balance != 9_900 || len(page.Entries) != 2 || page.Entries[1].Amount != 10_000 {
			t.Fatalf("page after repair = %+v", page)
		}
		checkPrefix(t, s, "alice-1")
	})
}

// A history left behind and stale is repaired by the reconciler even when
// nobody reads it: an account whose last event was dead-lettered catches
// up in bounded time (P4).
func TestReconcilerRepairsStaleAccounts(t *testing.T) {
	eachStore(t, func(t *testing.T, s *stack) {
		ctx := context.Background()
		// The transfer completes but core's entries cannot be read, so the
		// debit cannot be applied over the missing salary: stale.
		s.net.Plan("GET", "/entries", chaos.DropRequest)
		if tr, err := s.submit(t, "k1", 100); err != nil || tr.State != channel.StateCompleted {
			t.Fatalf("Submit = %+v, %v", tr, err)
		}
		if st, _, _ := s.store.Account(ctx, "alice-1"); st.SyncedSeq != 0 || !st.Stale {
			t.Fatalf("after the failed fill: %+v, want nothing applied and stale", st)
		}
		if _, err := s.ch.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
		st, _, _ := s.store.Account(ctx, "alice-1")
		if st.Stale || st.SyncedSeq != 2 || st.Balance != 9_900 {
			t.Fatalf("after a reconcile round: %+v, want synced through 2, balance 9,900, not stale", st)
		}
		checkPrefix(t, s, "alice-1")
	})
}

// checkPrefix asserts the channel's history of account is a prefix of
// core's ledger, entry for entry.
func checkPrefix(t *testing.T, s *stack, account string) {
	t.Helper()
	ctx := context.Background()
	core, err := s.core.Entries(ctx, account, 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	mine, err := s.store.History(ctx, account, 1<<62, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(mine) > len(core) {
		t.Fatalf("channel has %d entries, core %d", len(mine), len(core))
	}
	for i, e := range mine { // newest first
		want := core[len(mine)-1-i]
		if e != want {
			t.Fatalf("history entry %d = %+v, core's = %+v", i, e, want)
		}
	}
}

// A read never fails because core is down: it answers what it has, stale.
func TestReadWhileCoreDown(t *testing.T) {
	eachStore(t, func(t *testing.T, s *stack) {
		ctx := context.Background()
		if _, err := s.submit(t, "k1", 100); err != nil {
			t.Fatal(err)
		}
		if err := s.store.MarkStale(ctx, "alice-1", s.clock.Now()); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			s.net.Plan("GET", "/entries", chaos.DropRequest)
		}
		page, err := s.ch.History(ctx, channel.NewCursors([]byte("x")), "alice", "alice-1", "", 10)
		if err != nil || !page.Account.Stale {
			t.Fatalf("read with core down = %+v, %v; want an answer flagged stale", page, err)
		}
	})
}

// The reconciler's own loop settles a lost transfer within deadline +
// interval + grace (P2), on the real clock.
func TestReconcilerLoopSettlesInTime(t *testing.T) {
	for _, cs := range channelStores {
		t.Run(cs.name, func(t *testing.T) {
			const deadline, interval, grace = 300 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond
			s := newStack(t, cs.open(t), channel.Config{Deadline: deadline, CoreTimeout: 100 * time.Millisecond,
				ReconcileInterval: interval, ReconcileGrace: grace})
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			go s.ch.RunReconciler(ctx)
			s.net.Plan("POST", "/core/v1/transfers", chaos.DropRequest)
			start := time.Now()
			tr, err := s.submit(t, "k1", 300)
			if err != nil || tr.State != channel.StatePending {
				t.Fatalf("Submit = %+v, %v; want pending", tr, err)
			}
			bound := deadline + interval + grace + 500*time.Millisecond // small grace for the test machine
			for {
				got, err := s.ch.Transfer(context.Background(), "alice", tr.ID)
				if err != nil {
					t.Fatal(err)
				}
				if got.State != channel.StatePending {
					if got.State != channel.StateFailed || got.Reason != banksync.ReasonFenced {
						t.Fatalf("settled as %s/%s, want failed/fenced", got.State, got.Reason)
					}
					t.Logf("settled after %s (bound %s)", time.Since(start).Round(time.Millisecond), bound)
					return
				}
				if time.Since(start) > bound {
					t.Fatalf("still pending after %s (P2)", time.Since(start))
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// Core refuses the request outright (here: the channel allows larger
// amounts than core): the channel fences it at once and reports failed,
// instead of blocking the account until the deadline.
func TestCoreRefusalFencesAtOnce(t *testing.T) {
	for _, cs := range channelStores {
		t.Run(cs.name, func(t *testing.T) {
			clk := &clock{now: time.Now()}
			s := newStack(t, cs.open(t), channel.Config{AmountMax: 2 * banksync.AmountMaxDefault,
				Deadline: 10 * time.Second, CoreTimeout: time.Second, Now: clk.Now})
			tr, err := s.submit(t, "k1", banksync.AmountMaxDefault+1)
			if banksync.ErrorCode(err) != banksync.EFAILED || tr.State != channel.StateFailed || tr.Reason != banksync.ReasonFenced {
				t.Fatalf("Submit = %+v, %v; want failed/fenced at once", tr, err)
			}
			if next, err := s.submit(t, "k2", 100); err != nil || next.State != channel.StateCompleted {
				t.Fatalf("next transfer = %+v, %v; the account stayed blocked", next, err)
			}
		})
	}
}

// Ids that are not ids are simply not found, on every store (PostgreSQL
// refuses a NUL byte in text: that must not become a 500).
func TestTransferLookupOfOddIDs(t *testing.T) {
	eachStore(t, func(t *testing.T, s *stack) {
		for _, id := range []string{"\x00", "\xff", "a/b", ""} {
			if _, err := s.ch.Transfer(context.Background(), "alice", id); banksync.ErrorCode(err) != banksync.ENOTFOUND {
				t.Fatalf("Transfer(%q) = %v, want not_found", id, err)
			}
		}
	})
}

// A read whose sync hangs on core answers within the read's bound, stale.
func TestReadWhileCoreHangs(t *testing.T) {
	eachStore(t, func(t *testing.T, s *stack) {
		ctx := context.Background()
		if err := s.store.MarkStale(ctx, "alice-1", s.clock.Now()); err != nil {
			t.Fatal(err)
		}
		s.net.Plan("GET", "/entries", chaos.DelayRequest)
		start := time.Now()
		page, err := s.ch.History(ctx, channel.NewCursors([]byte("x")), "alice", "alice-1", "", 10)
		if took := time.Since(start); err != nil || !page.Account.Stale || took > 2*time.Second {
			t.Fatalf("read with core hanging = stale %v, %v after %s; want a stale answer within the read bound", page.Account.Stale, err, took)
		}
	})
}

// The accounts list brings accounts core is ahead on up to date first.
func TestAccountsListSyncsAccountsBehind(t *testing.T) {
	eachStore(t, func(t *testing.T, s *stack) {
		accts, err := s.ch.Accounts(context.Background(), "alice")
		if err != nil || len(accts) != 1 {
			t.Fatalf("Accounts = %+v, %v", accts, err)
		}
		if a := accts[0]; a.ID != "alice-1" || a.SyncedSeq != 1 || a.Balance != 10_000 || a.Stale {
			t.Fatalf("alice-1 = %+v; want synced through the salary (seq 1, 10,000)", a)
		}
		checkPrefix(t, s, "alice-1")
	})
}

// duringEntries is core as the channel sees it, running a hook when the
// channel reads entries.
type duringEntries struct {
	channel.Core
	hook func()
}

func (d duringEntries) Entries(ctx context.Context, account string, afterSeq int64, limit int) ([]banksync.Entry, error) {
	d.hook()
	return d.Core.Entries(ctx, account, afterSeq, limit)
}

// A failure elsewhere marks the account stale while a sync runs; the sync
// reaches core's head but must not clear the newer mark (P4: the account
// stays flagged until a sync that began after the failure succeeds).
func TestSyncKeepsAMarkMadeWhileItRan(t *testing.T) {
	eachStore(t, func(t *testing.T, s *stack) {
		ctx := context.Background()
		if err := s.store.MarkStale(ctx, "alice-1", s.clock.Now()); err != nil {
			t.Fatal(err)
		}
		once := sync.Once{}
		racing := channel.New(s.store, duringEntries{Core: s.coreAPI, hook: func() {
			once.Do(func() { s.store.MarkStale(ctx, "alice-1", s.clock.Now()) })
		}}, channel.Config{Now: s.clock.Now})
		st, err := racing.Sync(ctx, "alice-1")
		if err != nil || st.SyncedSeq != 1 || !st.Stale {
			t.Fatalf("Sync = %+v, %v; want synced through 1 and still stale", st, err)
		}
		// A sync that begins after the failure clears it.
		if st, err := s.ch.Sync(ctx, "alice-1"); err != nil || st.Stale {
			t.Fatalf("second Sync = %+v, %v; want not stale", st, err)
		}
	})
}
