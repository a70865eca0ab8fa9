package channel_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"banksync"
	"banksync/channel"
)

// batchStore is a channel store that counts the batch path's transactions
// and can fail them, or Apply too, writing nothing.
type batchStore struct {
	channel.Store
	runsErr  error         // ApplyRuns returns it
	applyErr error         // Apply returns it
	gate     chan struct{} // if set, the first ApplyRuns waits for it to close
	gateOnce sync.Once

	calls   atomic.Int64 // ApplyRuns calls
	runsMax atomic.Int64 // most runs one ApplyRuns call carried
	refused atomic.Int64 // ApplyRuns calls the store itself refused
}

func (b *batchStore) ApplyRuns(ctx context.Context, runs []channel.Run, at time.Time) ([]channel.RunResult, error) {
	b.calls.Add(1)
	for n := int64(len(runs)); ; {
		m := b.runsMax.Load()
		if n <= m || b.runsMax.CompareAndSwap(m, n) {
			break
		}
	}
	if b.gate != nil {
		b.gateOnce.Do(func() {
			select {
			case <-b.gate:
			case <-time.After(5 * time.Second): // a test that forgot to open it still ends
			}
		})
	}
	if b.runsErr != nil {
		return nil, b.runsErr
	}
	results, err := b.Store.ApplyRuns(ctx, runs, at)
	if err != nil {
		b.refused.Add(1) // runs ApplyBatch should never have sent
	}
	return results, err
}

func (b *batchStore) Apply(ctx context.Context, account string, entries []banksync.Entry, at time.Time) (channel.AccountState, error) {
	if b.applyErr != nil {
		return channel.AccountState{}, b.applyErr
	}
	return b.Store.Apply(ctx, account, entries, at)
}

// eachBatchStore is eachStore with the channel over a batchStore, closed
// when the test ends.
func eachBatchStore(t *testing.T, fn func(t *testing.T, s *stack, bs *batchStore)) {
	for _, cs := range channelStores {
		t.Run(cs.name, func(t *testing.T) {
			bs := &batchStore{Store: cs.open(t)}
			s := newStack(t, bs, channel.Config{})
			t.Cleanup(s.ch.Close)
			fn(t, s, bs)
		})
	}
}

// seed opens accounts on core, books n deposits on each, and returns core's
// entries of each account.
func seed(t *testing.T, s *stack, n int, accounts ...string) map[string][]banksync.Entry {
	t.Helper()
	ctx := context.Background()
	var ds []banksync.DepositRequest
	for _, a := range accounts {
		if _, _, err := s.ledger.CreateAccount(ctx, a, "carol"); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			ds = append(ds, banksync.DepositRequest{ExternalRef: fmt.Sprintf("%s-%d", a, i), AccountID: a, Amount: int64(100 + i), Sender: "acme"})
		}
	}
	for len(ds) > 0 {
		chunk := ds[:min(len(ds), 1000)]
		ds = ds[len(chunk):]
		results, err := s.ledger.Deposits(ctx, chunk)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range results {
			if r.Err != nil {
				t.Fatalf("deposit %s: %v", chunk[i].ExternalRef, r.Err)
			}
		}
	}
	core := make(map[string][]banksync.Entry, len(accounts))
	for _, a := range accounts {
		es, err := s.core.Entries(ctx, a, 0, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != n {
			t.Fatalf("core has %d entries of %s, want %d", len(es), a, n)
		}
		core[a] = es
	}
	return core
}

// pick returns core's entries of the given seqs, in the order given: a
// delivery as the consumer may see it.
func pick(core []banksync.Entry, seqs ...int64) []banksync.Entry {
	es := make([]banksync.Entry, len(seqs))
	for i, seq := range seqs {
		es[i] = core[seq-1]
	}
	return es
}

// checkSyncedThrough asserts the channel's history of account is core's
// ledger through seq, entry for entry, and its state says so.
func checkSyncedThrough(t *testing.T, s *stack, account string, seq int64) {
	t.Helper()
	checkPrefix(t, s, account)
	ctx := context.Background()
	mine, err := s.store.History(ctx, account, 1<<62, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := s.store.Account(ctx, account)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(mine)) != seq || st.SyncedSeq != seq {
		t.Fatalf("%s: %d history entries, synced seq %d; want %d of core's", account, len(mine), st.SyncedSeq, seq)
	}
	if seq > 0 && st.Balance != mine[0].BalanceAfter {
		t.Fatalf("%s: balance %d, want %d (the last entry's)", account, st.Balance, mine[0].BalanceAfter)
	}
}

// noErrs fails the test on any non-nil error of an ApplyBatch answer.
// releaseAndCheck opens the gate once every caller has called, waits for
// them, reports their errors and checks every account synced through seq.
func releaseAndCheck(t *testing.T, s *stack, bs *batchStore, calling, callers *sync.WaitGroup, errc chan error, accounts []string, seq int64) {
	t.Helper()
	calling.Wait()
	time.Sleep(20 * time.Millisecond) // from the call to the queue is a few instructions
	close(bs.gate)
	callers.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	for _, a := range accounts {
		checkSyncedThrough(t, s, a, seq)
	}
}

func noErrs(t *testing.T, errs []error, groups int) {
	t.Helper()
	if len(errs) != groups {
		t.Fatalf("ApplyBatch returned %d errs for %d groups", len(errs), groups)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("errs[%d] = %v, want nil", i, err)
		}
	}
}

// Deliveries of one account as the relay and the consumer produce them:
// each is applied once and in order. Where the deliveries hold every entry
// through the last, the history ends there, although core has more (so the
// entries came from the deliveries, not a sync to core's head); where there
// is a hole, it is filled from core.
func TestApplyBatchDeliveries(t *testing.T) {
	cases := []struct {
		name   string
		core   int       // entries core has
		before []int64   // seqs applied before the call
		groups [][]int64 // the call's groups, all of one account
		want   int64     // synced seq after
	}{
		{name: "in order", core: 5, groups: [][]int64{{1, 2, 3}}, want: 3},
		{name: "repeats and out of order", core: 5, groups: [][]int64{{2, 1, 2, 3}}, want: 3},
		{name: "repeats of applied entries", core: 5, before: []int64{1, 2}, groups: [][]int64{{3, 1, 2, 4, 3}}, want: 4},
		{name: "only repeats", core: 5, before: []int64{1, 2, 3}, groups: [][]int64{{2, 3, 1}}, want: 3},
		{name: "hole before the first", core: 4, groups: [][]int64{{3, 4}}, want: 4},
		{name: "hole after synced", core: 6, before: []int64{1, 2}, groups: [][]int64{{5, 6, 5}}, want: 6},
		{name: "hole inside", core: 4, groups: [][]int64{{1, 2, 4}}, want: 4},
		{name: "holes inside and repeats", core: 7, groups: [][]int64{{4, 1, 7, 2, 4}}, want: 7},
		{name: "two groups", core: 6, groups: [][]int64{{1, 2}, {3, 4}}, want: 4},
		{name: "two groups overlapping", core: 6, groups: [][]int64{{1, 2, 3}, {2, 3, 4}}, want: 4},
		{name: "three groups", core: 6, groups: [][]int64{{1}, {2, 3}, {4, 5}}, want: 5},
		{name: "two groups, later first", core: 4, groups: [][]int64{{3, 4}, {1, 2}}, want: 4},
		{name: "two groups, hole before the first", core: 5, groups: [][]int64{{2, 3}, {4, 5}}, want: 5},
	}
	eachBatchStore(t, func(t *testing.T, s *stack, bs *batchStore) {
		ctx := context.Background()
		// Each case in a call of its own, then all of them in one call:
		// each account's groups must come out the same among others'.
		for _, v := range []struct {
			name, prefix string
			together     bool
		}{{"one call each", "one", false}, {"one call", "all", true}} {
			prefix, together := v.prefix, v.together
			t.Run(v.name, func(t *testing.T) {
				var all [][]banksync.Entry
				for i, tc := range cases {
					account := fmt.Sprintf("%s-%02d", prefix, i)
					core := seed(t, s, tc.core, account)[account]
					if len(tc.before) > 0 {
						if _, err := s.ch.Apply(ctx, account, pick(core, tc.before...)); err != nil {
							t.Fatal(err)
						}
					}
					var groups [][]banksync.Entry
					for _, g := range tc.groups {
						groups = append(groups, pick(core, g...))
					}
					if together {
						all = append(all, groups...)
						continue
					}
					t.Run(tc.name, func(t *testing.T) {
						noErrs(t, s.ch.ApplyBatch(ctx, groups), len(groups))
						checkSyncedThrough(t, s, account, tc.want)
					})
				}
				if !together {
					return
				}
				noErrs(t, s.ch.ApplyBatch(ctx, all), len(all))
				for i, tc := range cases {
					t.Run(tc.name, func(t *testing.T) {
						checkSyncedThrough(t, s, fmt.Sprintf("%s-%02d", prefix, i), tc.want)
					})
				}
			})
		}
		if n := bs.calls.Load(); n == 0 {
			t.Errorf("ApplyRuns called %d times: the batch path was never taken", n)
		}
		if n := bs.refused.Load(); n > 0 {
			t.Errorf("the store refused %d ApplyRuns calls", n)
		}
	})
}

// A group holding entries of two accounts is refused as a whole; the
// call's other groups, of other accounts and of the same ones, are applied.
func TestApplyBatchMixedGroup(t *testing.T) {
	eachBatchStore(t, func(t *testing.T, s *stack, bs *batchStore) {
		ctx := context.Background()
		core := seed(t, s, 4, "m-a", "m-b", "m-c", "m-d", "m-e")
		groups := [][]banksync.Entry{
			pick(core["m-a"], 1, 2),
			append(pick(core["m-a"], 3), pick(core["m-b"], 1)...), // bad: m-a and m-b
			pick(core["m-c"], 1, 2, 3),
			append(pick(core["m-d"], 1, 2), pick(core["m-e"], 1)...), // bad: m-d and m-e
			pick(core["m-e"], 2, 1),
		}
		errs := s.ch.ApplyBatch(ctx, groups)
		if len(errs) != len(groups) {
			t.Fatalf("ApplyBatch returned %d errs for %d groups", len(errs), len(groups))
		}
		for i, err := range errs {
			if bad := i == 1 || i == 3; bad != (err != nil) {
				t.Errorf("errs[%d] = %v; want an error only for the mixed groups (1 and 3)", i, err)
			}
		}
		checkSyncedThrough(t, s, "m-a", 2) // not 3: that came in the bad group
		checkSyncedThrough(t, s, "m-b", 0)
		checkSyncedThrough(t, s, "m-c", 3)
		checkSyncedThrough(t, s, "m-d", 0)
		checkSyncedThrough(t, s, "m-e", 2)
		// The bad groups stayed out of the shared transaction: it would
		// have been refused, for every caller.
		if n := bs.refused.Load(); n > 0 {
			t.Errorf("the store refused %d ApplyRuns calls", n)
		}
	})
}

// Many consumers at once, each with its own accounts, re-delivering: their
// runs share transactions (fewer ApplyRuns calls than ApplyBatch calls, and
// one transaction carried several callers' runs), and every account ends
// equal to core.
func TestApplyBatchConcurrentCallersShareCommits(t *testing.T) {
	const callers, accountsEach, entriesEach = 16, 2, 8
	// The deliveries each caller makes in turn, of each of its accounts:
	// overlapping, with repeats, disorder and a hole.
	deliveries := [][]int64{{1, 2, 3}, {3, 2, 5, 4}, {7}, {1, 2, 3, 4, 5, 6, 7, 8}, {8, 7}}
	eachBatchStore(t, func(t *testing.T, s *stack, bs *batchStore) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a lost request fails, not hangs
		defer cancel()
		var accounts []string
		for i := range callers * accountsEach {
			accounts = append(accounts, fmt.Sprintf("c-%02d", i))
		}
		core := seed(t, s, entriesEach, accounts...)

		// Hold the first transaction until every caller has called, so the
		// others queue behind it whatever the scheduler does.
		bs.gate = make(chan struct{})
		var calling sync.WaitGroup
		calling.Add(callers)
		var wg sync.WaitGroup
		var batches atomic.Int64
		errc := make(chan error, callers*len(deliveries)*accountsEach)
		for c := range callers {
			mine := accounts[c*accountsEach : (c+1)*accountsEach]
			wg.Go(func() {
				for d, seqs := range deliveries {
					groups := make([][]banksync.Entry, len(mine))
					for i, a := range mine {
						groups[i] = pick(core[a], seqs...)
					}
					if d == 0 {
						calling.Done()
					}
					batches.Add(1)
					for i, err := range s.ch.ApplyBatch(ctx, groups) {
						if err != nil {
							errc <- fmt.Errorf("caller %d, delivery %v of %s: %w", c, seqs, mine[i], err)
							continue
						}
						// A nil err means the group is applied: now, not
						// by some later delivery.
						st, _, err := s.store.Account(ctx, mine[i])
						if err != nil || st.SyncedSeq < slices.Max(seqs) {
							errc <- fmt.Errorf("caller %d, delivery %v of %s: nil err, synced through %d (%v)", c, seqs, mine[i], st.SyncedSeq, err)
						}
					}
				}
			})
		}
		releaseAndCheck(t, s, bs, &calling, &wg, errc, accounts, entriesEach)
		calls, runsMax := bs.calls.Load(), bs.runsMax.Load()
		t.Logf("%d ApplyBatch calls, %d ApplyRuns calls, at most %d runs in one", batches.Load(), calls, runsMax)
		if calls >= batches.Load() {
			t.Errorf("%d ApplyRuns calls for %d ApplyBatch calls: the group commit merged none", calls, batches.Load())
		}
		if runsMax <= accountsEach {
			t.Errorf("at most %d runs in one ApplyRuns call, want more than one caller's %d", runsMax, accountsEach)
		}
		if n := bs.refused.Load(); n > 0 {
			t.Errorf("the store refused %d ApplyRuns calls", n)
		}
	})
}

// Consumers re-delivering the same accounts at once (a rebalance): runs
// of one account from two callers never share a transaction (the store
// would refuse it, for everyone in it), and each call's groups are applied
// when it returns.
func TestApplyBatchCallersSharingAccounts(t *testing.T) {
	const callers, entriesEach = 8, 6
	accounts := []string{"s-a", "s-b", "s-c"}
	eachBatchStore(t, func(t *testing.T, s *stack, bs *batchStore) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a lost request fails, not hangs
		defer cancel()
		core := seed(t, s, entriesEach, accounts...)
		// Every caller's first call queues behind the first transaction.
		bs.gate = make(chan struct{})
		var calling, wg sync.WaitGroup
		calling.Add(callers)
		errc := make(chan error, callers*entriesEach*len(accounts))
		for c := range callers {
			wg.Go(func() {
				for seq := int64(1); seq <= entriesEach; seq++ {
					var groups [][]banksync.Entry
					for _, a := range accounts {
						groups = append(groups, pick(core[a], 1, seq, max(1, seq-1)))
					}
					if seq == 1 {
						calling.Done()
					}
					for i, err := range s.ch.ApplyBatch(ctx, groups) {
						if err != nil {
							errc <- fmt.Errorf("caller %d, %s through %d: %w", c, accounts[i], seq, err)
							continue
						}
						if st, _, err := s.store.Account(ctx, accounts[i]); err != nil || st.SyncedSeq < seq {
							errc <- fmt.Errorf("caller %d, %s through %d: nil err, synced through %d (%v)", c, accounts[i], seq, st.SyncedSeq, err)
						}
					}
				}
			})
		}
		releaseAndCheck(t, s, bs, &calling, &wg, errc, accounts, entriesEach)
		if n := bs.refused.Load(); n > 0 {
			t.Errorf("the store refused %d ApplyRuns calls", n)
		}
	})
}

// Two callers' runs in one transaction, one of them a gap: each caller
// gets its own runs' results, so the one with the hole fills it from core
// before it returns.
func TestApplyBatchMergedCallersGetTheirOwnResults(t *testing.T) {
	eachBatchStore(t, func(t *testing.T, s *stack, bs *batchStore) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		core := seed(t, s, 4, "r-x", "r-a", "r-b", "r-g")
		calls := []struct {
			groups [][]banksync.Entry
			want   map[string]int64
		}{
			{[][]banksync.Entry{pick(core["r-x"], 1)}, map[string]int64{"r-x": 1}}, // holds the first transaction
			{[][]banksync.Entry{pick(core["r-a"], 1, 2), pick(core["r-b"], 1)}, map[string]int64{"r-a": 2, "r-b": 1}},
			{[][]banksync.Entry{pick(core["r-g"], 3, 4)}, map[string]int64{"r-g": 4}}, // a hole: 1-2 from core
		}
		bs.gate = make(chan struct{})
		var wg sync.WaitGroup
		errc := make(chan error, 8)
		for i, c := range calls {
			wg.Go(func() {
				errs := s.ch.ApplyBatch(ctx, c.groups)
				for j, err := range errs {
					if err != nil {
						errc <- fmt.Errorf("call %d, group %d: %w", i, j, err)
					}
				}
				for a, want := range c.want {
					if st, _, err := s.store.Account(ctx, a); err != nil || st.SyncedSeq != want {
						errc <- fmt.Errorf("call %d returned with %s synced through %d (%v), want %d", i, a, st.SyncedSeq, err, want)
					}
				}
			})
			// Queue the calls in this order behind the held transaction.
			if i == 0 {
				for bs.calls.Load() == 0 && ctx.Err() == nil {
					time.Sleep(time.Millisecond)
				}
			} else {
				time.Sleep(50 * time.Millisecond) // from the call to the queue is a few instructions
			}
		}
		close(bs.gate)
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Error(err)
		}
		for a, want := range map[string]int64{"r-x": 1, "r-a": 2, "r-b": 1, "r-g": 4} {
			checkSyncedThrough(t, s, a, want)
		}
		if n, runsMax := bs.calls.Load(), bs.runsMax.Load(); n != 2 || runsMax != 3 {
			t.Errorf("%d ApplyRuns calls, at most %d runs in one; want the second and third calls in one transaction (2, 3)", n, runsMax)
		}
	})
}

var errDiskFull = errors.New("disk full")

// The history store refuses the batch transaction. If Apply works, every
// group is applied through it instead; if Apply fails too, every group's
// err says so, nothing is written, and each account is marked stale for
// repair.
func TestApplyBatchWhenTheStoreFails(t *testing.T) {
	eachBatchStore(t, func(t *testing.T, s *stack, bs *batchStore) {
		ctx := context.Background()
		bs.runsErr = errDiskFull
		t.Run("apply works", func(t *testing.T) {
			core := seed(t, s, 5, "f-a", "f-b", "f-c")
			groups := [][]banksync.Entry{
				pick(core["f-a"], 2, 1, 2, 3),
				pick(core["f-b"], 4, 5), // a hole: 1-3 from core
				pick(core["f-c"], 1, 2),
				pick(core["f-c"], 3, 4),
			}
			calls := bs.calls.Load()
			noErrs(t, s.ch.ApplyBatch(ctx, groups), len(groups))
			if bs.calls.Load() == calls {
				t.Fatal("ApplyRuns was never called: nothing fell back")
			}
			checkSyncedThrough(t, s, "f-a", 3)
			checkSyncedThrough(t, s, "f-b", 5)
			checkSyncedThrough(t, s, "f-c", 4)
			for _, a := range []string{"f-a", "f-b", "f-c"} {
				if st, _, _ := s.store.Account(ctx, a); st.Stale {
					t.Errorf("%s is stale after a successful fallback: %+v", a, st)
				}
			}
		})
		t.Run("apply fails too", func(t *testing.T) {
			core := seed(t, s, 4, "g-a", "g-b", "g-c")
			if _, err := s.ch.Apply(ctx, "g-c", pick(core["g-c"], 1)); err != nil {
				t.Fatal(err)
			}
			bs.applyErr = errDiskFull
			defer func() { bs.applyErr = nil }()
			groups := [][]banksync.Entry{
				pick(core["g-a"], 1, 2),
				pick(core["g-b"], 3, 2), // a hole: core answers, the store does not
				pick(core["g-c"], 1, 2, 3),
			}
			errs := s.ch.ApplyBatch(ctx, groups)
			if len(errs) != len(groups) {
				t.Fatalf("ApplyBatch returned %d errs for %d groups", len(errs), len(groups))
			}
			for i, err := range errs {
				if !errors.Is(err, errDiskFull) {
					t.Errorf("errs[%d] = %v, want the store's %v", i, err, errDiskFull)
				}
			}
			for a, want := range map[string]int64{"g-a": 0, "g-b": 0, "g-c": 1} {
				checkSyncedThrough(t, s, a, want)
				st, ok, err := s.store.Account(ctx, a)
				if err != nil || !ok || !st.Stale {
					t.Errorf("%s = %+v, %v, %v; want it marked stale", a, st, ok, err)
				}
			}
		})
	})
}

// After Close, whether or not the batch path ever ran, ApplyBatch applies
// every group without it, and Close may be called again.
func TestApplyBatchAfterClose(t *testing.T) {
	eachBatchStore(t, func(t *testing.T, s *stack, bs *batchStore) {
		for _, v := range []struct {
			name string
			used bool // ApplyBatch ran before Close
		}{{"never used", false}, {"used", true}} {
			used := v.used
			t.Run(v.name, func(t *testing.T) {
				// Bounded, so a call stuck on the stopped group commit fails
				// the test instead of hanging it.
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				ch := channel.New(bs, s.coreAPI, channel.Config{Now: s.clock.Now})
				a, b := v.name[:1]+"-a", v.name[:1]+"-b"
				core := seed(t, s, 6, a)
				core[b] = seed(t, s, 5, b)[b]
				if used {
					calls := bs.calls.Load()
					noErrs(t, ch.ApplyBatch(ctx, [][]banksync.Entry{pick(core[a], 1, 2)}), 1)
					if bs.calls.Load() == calls {
						t.Fatal("ApplyRuns never called before Close")
					}
				} else if _, err := ch.Apply(ctx, a, pick(core[a], 1, 2)); err != nil {
					t.Fatal(err)
				}
				checkSyncedThrough(t, s, a, 2)
				closed := make(chan struct{})
				go func() {
					ch.Close()
					ch.Close()
					close(closed)
				}()
				select {
				case <-closed:
				case <-ctx.Done():
					t.Fatal("Close did not return")
				}
				calls := bs.calls.Load()
				groups := [][]banksync.Entry{
					pick(core[a], 4, 3, 4),
					pick(core[b], 3, 4), // a hole: 1-2 from core
					pick(core[b], 5),
				}
				noErrs(t, ch.ApplyBatch(ctx, groups), len(groups))
				checkSyncedThrough(t, s, a, 4)
				checkSyncedThrough(t, s, b, 5)
				if used {
					// More calls than the stopped group commit's queue holds
					// (1024): none may wait on it.
					for i := range 1100 {
						if err := ch.ApplyBatch(ctx, [][]banksync.Entry{pick(core[a], 4)})[0]; err != nil {
							t.Fatalf("call %d after Close: %v", i, err)
						}
					}
				}
				noErrs(t, ch.ApplyBatch(ctx, [][]banksync.Entry{pick(core[a], 5, 6)}), 1)
				checkSyncedThrough(t, s, a, 6)
				if n := bs.calls.Load() - calls; n != 0 {
					t.Errorf("ApplyRuns called %d times after Close", n)
				}
				ch.Close()
			})
		}
	})
}

// Close while callers are applying: each call's groups are applied all
// the same, by the group commit before it stops or one by one after.
func TestApplyBatchCloseWhileApplying(t *testing.T) {
	const callers, entriesEach = 8, 12
	eachBatchStore(t, func(t *testing.T, s *stack, bs *batchStore) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second) // a lost request fails, not hangs
		defer cancel()
		var accounts []string
		for i := range callers {
			accounts = append(accounts, fmt.Sprintf("w-%02d", i))
		}
		core := seed(t, s, entriesEach, accounts...)
		var wg sync.WaitGroup
		errc := make(chan error, callers*entriesEach)
		applying := make(chan struct{}, callers)
		for _, a := range accounts {
			wg.Go(func() {
				for seq := int64(1); seq <= entriesEach; seq++ {
					if seq == 2 {
						applying <- struct{}{}
					}
					// Each entry twice: this one and a re-delivery of the last.
					groups := [][]banksync.Entry{pick(core[a], seq, max(1, seq-1))}
					if err := s.ch.ApplyBatch(ctx, groups)[0]; err != nil {
						errc <- fmt.Errorf("%s/%d: %w", a, seq, err)
					}
				}
			})
		}
		for range callers {
			<-applying
		}
		var closers sync.WaitGroup
		for range 2 {
			closers.Go(s.ch.Close)
		}
		closers.Wait()
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Error(err)
		}
		for _, a := range accounts {
			checkSyncedThrough(t, s, a, entriesEach)
		}
		if bs.calls.Load() == 0 {
			t.Error("ApplyRuns never called: Close came before any batch")
		}
	})
}
