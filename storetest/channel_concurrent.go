package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"banksync"
	"banksync/channel"
)

// The concurrency tests open one database twice, as two channel processes
// sharing it would, and spread their goroutines over both stores: the
// promises must hold across processes, not only inside one.
const channelProcesses = 2

func openChannelProcesses(tb testing.TB, h ChannelHarness) []channel.Store {
	tb.Helper()
	s, where := openChannel(tb, h)
	stores := []channel.Store{s}
	for len(stores) < channelProcesses {
		stores = append(stores, openChannelAt(tb, h, where))
	}
	return stores
}

// race runs fn(g) on n goroutines released together and waits for them.
func race(n int, fn func(g int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			fn(g)
		}()
	}
	close(start)
	wg.Wait()
}

// testChannelConcurrentApply has appliers bring the same entries of one
// account in overlapping windows, each in its own shuffled order; on
// ErrSeqConflict an applier re-reads the synced seq and applies from there
// to the end of its window, as the sync engine does. Whatever interleaves,
// the history must end as 1..n, each entry once.
func testChannelConcurrentApply(t *testing.T, h ChannelHarness) {
	const (
		entriesCount   = 500
		appliersCount  = 8
		windowSizeMax  = 20
		attemptsMax    = 10000 // per window: a bound for a store that never lets an applier through
		accountID      = "acc-1"
		appliedAtDelta = time.Millisecond
	)
	ctx := context.Background()
	stores := openChannelProcesses(t, h)
	all := ledgerEntries(accountID, 1, entriesCount)
	var applies, conflicts atomic.Int64

	race(appliersCount, func(g int) {
		s := stores[g%len(stores)]
		rng := rand.New(rand.NewPCG(uint64(g), 7))
		var windows [][2]int64 // [lo, hi] seqs
		for lo := int64(1); lo <= entriesCount; {
			hi := min(lo+rng.Int64N(windowSizeMax), entriesCount)
			windows = append(windows, [2]int64{lo, hi})
			lo = hi + 1
		}
		rng.Shuffle(len(windows), func(i, j int) { windows[i], windows[j] = windows[j], windows[i] })
		at := channelT0.Add(time.Duration(g) * appliedAtDelta)

		for _, w := range windows {
			batch := all[w[0]-1 : w[1]]
			for attempt := 0; ; attempt++ {
				if attempt == attemptsMax {
					t.Errorf("applier %d: window %v not applied after %d attempts", g, w, attempt)
					return
				}
				last := batch[len(batch)-1]
				st, err := s.Apply(ctx, accountID, batch, at)
				switch {
				case err == nil:
					applies.Add(1)
					if st.SyncedSeq != last.Seq || st.Balance != last.BalanceAfter {
						t.Errorf("applier %d: Apply up to %d answered synced seq %d, balance %d", g, last.Seq, st.SyncedSeq, st.Balance)
						return
					}
				case errors.Is(err, channel.ErrSeqConflict):
					conflicts.Add(1)
					if st, _, err = s.Account(ctx, accountID); err != nil {
						t.Errorf("applier %d: Account: %v", g, err)
						return
					}
				default:
					t.Errorf("applier %d: Apply(%d..%d): %v", g, batch[0].Seq, last.Seq, err)
					return
				}
				if st.SyncedSeq >= w[1] {
					break
				}
				// Go on from the synced seq, filling any hole before the
				// window a chunk of random size at a time.
				batch = all[st.SyncedSeq:min(w[1], st.SyncedSeq+1+rng.Int64N(windowSizeMax))]
			}
		}
	})
	if t.Failed() {
		return
	}
	t.Logf("%d applies, %d conflicts", applies.Load(), conflicts.Load())
	if conflicts.Load() == 0 {
		t.Errorf("no Apply conflicted: the appliers did not overlap, so the test proved nothing")
	}
	for i, s := range stores {
		st := mustAccountState(t, s, accountID)
		if st.SyncedSeq != entriesCount || st.Balance != all[entriesCount-1].BalanceAfter || st.Stale {
			t.Errorf("process %d: state = %+v, want synced through %d, balance %d, not stale", i, st, entriesCount, all[entriesCount-1].BalanceAfter)
		}
		diff(t, fmt.Sprintf("history in process %d", i), mustHistory(t, s, accountID, math.MaxInt64, 2*entriesCount), reversed(all))
	}
}

// testChannelConcurrentOnePending races transfers from one source account,
// each with its own key: exactly one becomes pending, the rest are refused
// with ErrInProgress and leave nothing behind. Settling the winner frees the
// account for the next round.
func testChannelConcurrentOnePending(t *testing.T, h ChannelHarness) {
	const (
		roundsCount     = 3
		submittersCount = 16
	)
	ctx := context.Background()
	stores := openChannelProcesses(t, h)
	for round := range roundsCount {
		var (
			mu      sync.Mutex
			winners []channel.Transfer
			refused []string
		)
		race(submittersCount, func(g int) {
			tr := newTransfer(fmt.Sprintf("t-%d-%02d", round, g), "alice", fmt.Sprintf("key-%d-%02d", round, g), "acc-a")
			got, created, err := stores[g%len(stores)].CreateTransfer(ctx, tr)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil && created:
				winners = append(winners, got)
			case errors.Is(err, channel.ErrInProgress):
				refused = append(refused, tr.ID)
			default:
				t.Errorf("CreateTransfer(%s) = created %v, %v; want created or ErrInProgress", tr.ID, created, err)
			}
		})
		if t.Failed() {
			return
		}
		if len(winners) != 1 || len(refused) != submittersCount-1 {
			t.Fatalf("round %d: %d created, %d refused; want 1 and %d", round, len(winners), len(refused), submittersCount-1)
		}
		for _, s := range stores {
			pending, err := s.PendingOf(ctx, "acc-a")
			if err != nil {
				t.Fatal(err)
			}
			diff(t, fmt.Sprintf("round %d: pending of acc-a", round), pending, winners)
			for _, id := range refused {
				wantNoTransfer(t, s, id)
			}
		}
		if _, _, err := stores[0].Settle(ctx, winners[0].ID, channel.StateCompleted, "", channelT0); err != nil {
			t.Fatal(err)
		}
	}
}

// testChannelConcurrentSameKey races retries of one request (one key, one
// body, a transfer id each): one is stored and every other caller gets that
// same transfer back, never ErrInProgress.
func testChannelConcurrentSameKey(t *testing.T, h ChannelHarness) {
	const (
		roundsCount     = 3
		submittersCount = 16
	)
	ctx := context.Background()
	stores := openChannelProcesses(t, h)
	for round := range roundsCount {
		key := fmt.Sprintf("key-%d", round)
		got := make([]channel.Transfer, submittersCount)
		created := make([]bool, submittersCount)
		race(submittersCount, func(g int) {
			var err error
			tr := newTransfer(fmt.Sprintf("t-%d-%02d", round, g), "alice", key, "acc-a")
			got[g], created[g], err = stores[g%len(stores)].CreateTransfer(ctx, tr)
			if err != nil {
				t.Errorf("CreateTransfer(%s) with key %s: %v", tr.ID, key, err)
			}
		})
		if t.Failed() {
			return
		}
		winner := -1
		for g, c := range created {
			if c {
				if winner >= 0 {
					t.Fatalf("round %d: both %s and %s created with key %s", round, got[winner].ID, got[g].ID, key)
				}
				winner = g
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no transfer created with key %s", round, key)
		}
		for g := range got {
			diff(t, fmt.Sprintf("round %d: transfer returned to submitter %d", round, g), got[g], got[winner])
			if g != winner {
				wantNoTransfer(t, stores[0], fmt.Sprintf("t-%d-%02d", round, g))
			}
		}
		if _, _, err := stores[1%len(stores)].Settle(ctx, got[winner].ID, channel.StateFailed, "insufficient_funds", channelT0); err != nil {
			t.Fatal(err)
		}
	}
}

// testChannelConcurrentApplyRuns has appliers in two processes apply
// batches of runs over a shared set of accounts, each batch in its own
// shuffled order, each run a random window near where the applier last saw
// the account: some repeat, some leave a hole, and batches share accounts,
// so a store that locks accounts in batch order would deadlock. Every
// account's history must end as 1..n, each entry once.
func testChannelConcurrentApplyRuns(t *testing.T, h ChannelHarness) {
	const (
		accountsCount  = 40
		entriesCount   = 60
		appliersCount  = 6
		runsPerBatch   = 12
		windowSizeMax  = 8
		batchesMax     = 5000 // per applier: a bound for a store that never lets one through
		appliedAtDelta = time.Millisecond
	)
	ctx := context.Background()
	stores := openChannelProcesses(t, h)
	all := make([][]banksync.Entry, accountsCount)
	for a := range all {
		all[a] = ledgerEntries(fmt.Sprintf("acc-%02d", a), 1, entriesCount)
	}
	var gaps, repeats atomic.Int64

	race(appliersCount, func(g int) {
		s := stores[g%len(stores)]
		rng := rand.New(rand.NewPCG(uint64(g), 11))
		at := channelT0.Add(time.Duration(g) * appliedAtDelta)
		next := make([]int64, accountsCount) // the seq this applier thinks comes next
		for a := range next {
			next[a] = 1
		}
		for batch := 0; ; batch++ {
			if batch == batchesMax {
				t.Errorf("applier %d: not done after %d batches", g, batch)
				return
			}
			var open []int
			for a := range next {
				if next[a] <= entriesCount {
					open = append(open, a)
				}
			}
			if len(open) == 0 {
				return
			}
			rng.Shuffle(len(open), func(i, j int) { open[i], open[j] = open[j], open[i] })
			open = open[:min(len(open), runsPerBatch)]
			runs := make([]channel.Run, len(open))
			for i, a := range open {
				lo := max(1, next[a]+rng.Int64N(4)-2) // up to two back (repeats) or one ahead (a hole)
				hi := min(lo+rng.Int64N(windowSizeMax), entriesCount)
				if lo > hi {
					lo = hi
				}
				runs[i] = channel.Run{Account: all[a][0].AccountID, Entries: all[a][lo-1 : hi]}
			}
			res, err := s.ApplyRuns(ctx, runs, at)
			if err != nil {
				t.Errorf("applier %d: ApplyRuns: %v", g, err)
				return
			}
			for i, a := range open {
				r := res[i]
				switch {
				case r.Gap:
					gaps.Add(1)
				case runs[i].Entries[0].Seq <= r.State.SyncedSeq-int64(len(runs[i].Entries)):
					repeats.Add(1)
				}
				if !r.Gap && r.State.SyncedSeq < runs[i].Entries[len(runs[i].Entries)-1].Seq {
					t.Errorf("applier %d: run %s/%d..%d applied, but synced seq is %d", g, runs[i].Account,
						runs[i].Entries[0].Seq, runs[i].Entries[len(runs[i].Entries)-1].Seq, r.State.SyncedSeq)
					return
				}
				next[a] = r.State.SyncedSeq + 1
			}
		}
	})
	if t.Failed() {
		return
	}
	t.Logf("%d gaps, %d repeats", gaps.Load(), repeats.Load())
	if gaps.Load() == 0 || repeats.Load() == 0 {
		t.Errorf("no run left a hole or no run repeated: the test proved less than it should")
	}
	for i, s := range stores {
		for _, es := range all {
			id := es[0].AccountID
			st := mustAccountState(t, s, id)
			if st.SyncedSeq != entriesCount || st.Balance != es[entriesCount-1].BalanceAfter {
				t.Errorf("process %d: %s = %+v, want synced through %d", i, id, st, entriesCount)
			}
			diff(t, fmt.Sprintf("history of %s in process %d", id, i), mustHistory(t, s, id, math.MaxInt64, 2*entriesCount), reversed(es))
		}
	}
}

// testChannelConcurrentSettle has many settlers — replicas' reconcilers, a
// slow Submit — settle each pending transfer at once, some as completed and
// some as failed: exactly one of them changes it, and the stored state is
// the one that did.
func testChannelConcurrentSettle(t *testing.T, h ChannelHarness) {
	const transfers, settlers = 20, 8
	ctx := context.Background()
	stores := openChannelProcesses(t, h)
	for i := range transfers {
		id := fmt.Sprintf("t-%d", i)
		mustCreate(t, stores[0], newTransfer(id, "alice", "key-"+id, fmt.Sprintf("acc-%d", i)))
		var changed atomic.Int32
		var winner atomic.Value
		race(settlers, func(g int) {
			state := channel.StateCompleted
			if g%2 == 1 {
				state = channel.StateFailed
			}
			got, ok, err := stores[g%len(stores)].Settle(ctx, id, state, "", channelT0)
			if err != nil {
				t.Errorf("settle %s: %v", id, err)
				return
			}
			if ok {
				changed.Add(1)
				winner.Store(got.State)
			}
		})
		if n := changed.Load(); n != 1 {
			t.Fatalf("%s: %d settlers changed it, want exactly one", id, n)
		}
		if got := mustTransfer(t, stores[0], id); got.State != winner.Load() {
			t.Errorf("%s stored as %s, but the settler that changed it set %v", id, got.State, winner.Load())
		}
	}
}

// testChannelApplyRunsAfterOtherWrites: the group commit plans from the
// state the database holds, whatever wrote it since the last commit —
// another process sharing the database, or this store's own Apply,
// MarkStale, ClearStale and AddAccount. A store that keeps states between
// commits must notice each of them.
func testChannelApplyRunsAfterOtherWrites(t *testing.T, h ChannelHarness) {
	ctx := context.Background()
	stores := openChannelProcesses(t, h)
	s, other := stores[0], stores[1]
	es := ledgerEntries("acc-1", 1, 12)
	at := channelT0
	commit := func(step string, account string, entries []banksync.Entry, appended int) channel.AccountState {
		t.Helper()
		at = at.Add(time.Second)
		res := mustApplyRuns(t, s, []channel.Run{{Account: account, Entries: entries}}, at)
		if res[0].Gap || res[0].Appended != appended {
			t.Fatalf("%s: ApplyRuns = %+v, want %d appended", step, res[0], appended)
		}
		diff(t, step+": result against the stored state", res[0].State, mustAccountState(t, s, account))
		return res[0].State
	}
	commit("first commit", "acc-1", es[0:2], 2)
	mustApplyRuns(t, other, []channel.Run{{Account: "acc-1", Entries: es[2:3]}}, at)
	commit("after another process's commit", "acc-1", es[3:5], 2)
	mustApply(t, s, "acc-1", es[5:6], at)
	commit("after this store's Apply", "acc-1", es[6:7], 1)
	if err := s.MarkStale(ctx, "acc-1", at); err != nil {
		t.Fatal(err)
	}
	st := commit("after MarkStale", "acc-1", es[7:8], 1)
	if !st.Stale {
		t.Fatalf("after MarkStale: state %+v is not stale", st)
	}
	if err := s.ClearStale(ctx, "acc-1", st.StaleGen); err != nil {
		t.Fatal(err)
	}
	if st := commit("after ClearStale", "acc-1", es[8:9], 1); st.Stale {
		t.Fatalf("after ClearStale: state %+v is still stale", st)
	}
	if err := s.AddAccount(ctx, "acc-1", "alice"); err != nil {
		t.Fatal(err)
	}
	if st := commit("after AddAccount", "acc-1", es[9:10], 1); st.Owner != "alice" {
		t.Fatalf("after AddAccount: owner %q, want alice", st.Owner)
	}
	if err := other.MarkStale(ctx, "acc-1", at); err != nil {
		t.Fatal(err)
	}
	if st := commit("after another process's MarkStale", "acc-1", es[10:11], 1); !st.Stale {
		t.Fatalf("after another process's MarkStale: state %+v is not stale", st)
	}

	fresh := ledgerEntries("acc-2", 1, 3)
	if res := mustApplyRuns(t, s, []channel.Run{{Account: "acc-2", Entries: fresh[1:2]}}, at); !res[0].Gap {
		t.Fatalf("a hole in an unknown account: %+v, want a gap", res[0])
	}
	mustApply(t, other, "acc-2", fresh[:2], at)
	commit("an account another process started", "acc-2", fresh[2:3], 1)
}
