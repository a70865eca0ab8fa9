package chaos

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"banksync"
	"banksync/channel"
	"banksync/ledger"
)

// Promises the checker checks (DESIGN.md).
const (
	P1 = "P1_at_most_once"
	P2 = "P2_never_stuck"
	P3 = "P3_failed_never_executed"
	P4 = "P4_history_equals_ledger"
	P5 = "P5_history_is_a_prefix"
	P6 = "P6_money_conserved"
)

var promises = []string{P1, P2, P3, P4, P5, P6}

// counters are a run's tallies, safe for concurrent use.
type counters struct {
	mu         sync.Mutex
	ops        map[string]int64
	faults     map[string]int64
	violations map[string]int64
	examples   map[string]string
}

func newCounters() *counters {
	c := &counters{ops: map[string]int64{}, faults: map[string]int64{}, violations: map[string]int64{}, examples: map[string]string{}}
	for _, p := range promises {
		c.violations[p] = 0
	}
	return c
}

func (c *counters) op(kind string) {
	c.mu.Lock()
	c.ops[kind]++
	c.mu.Unlock()
}

func (c *counters) fault(kind string) { c.faultN(kind, 1) }

func (c *counters) faultN(kind string, n int64) {
	c.mu.Lock()
	c.faults[kind] += n
	c.mu.Unlock()
}

// sofar says how many operations and faults the run has made so far.
func (c *counters) sofar() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ops, faults int64
	for _, n := range c.ops {
		ops += n
	}
	for _, n := range c.faults {
		faults += n
	}
	return fmt.Sprintf("%d operations, %d faults injected", ops, faults)
}

// violation counts a broken promise and keeps its first example.
func (c *counters) violation(promise, format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.violations[promise]++
	if _, ok := c.examples[promise]; !ok {
		c.examples[promise] = fmt.Sprintf(format, args...)
	}
}

// workload is the customers, the other banks and the readers. It drives
// core and the channel replicas through bank and replica only, so the same
// workload runs against the in-process system or deployed processes.
type workload struct {
	core     bank
	replicas []replica
	stats    *counters
	seed     uint64

	customers []string
	accounts  map[string][]string // customer -> accounts
	all       []string

	mu      sync.Mutex
	keys    map[string]map[string]bool // customer/key -> transfer ids answered for it
	intents map[string]map[string]bool // customer/intent -> transfer ids: a key, and a new key sent for the same transfer
}

func newWorkload(core bank, replicas []replica, stats *counters, customers int, seed uint64) *workload {
	w := &workload{core: core, replicas: replicas, stats: stats, seed: seed,
		accounts: map[string][]string{}, keys: map[string]map[string]bool{}, intents: map[string]map[string]bool{}}
	for c := range customers {
		cust := fmt.Sprintf("cust-%02d", c)
		w.customers = append(w.customers, cust)
		for a := range accountsEach {
			id := fmt.Sprintf("%s-acc-%d", cust, a)
			w.accounts[cust] = append(w.accounts[cust], id)
			w.all = append(w.all, id)
		}
	}
	return w
}

// setup opens every account at core with an opening deposit.
func (w *workload) setup(ctx context.Context) error {
	for _, cust := range w.customers {
		for _, id := range w.accounts[cust] {
			if err := w.core.CreateAccount(ctx, id, cust); err != nil {
				return err
			}
			if err := w.core.Deposit(ctx, banksync.DepositRequest{ExternalRef: "opening-" + id, AccountID: id, Amount: openingBalance, Sender: "chaos-bank"}); err != nil {
				return err
			}
		}
	}
	return nil
}

// run drives the workload until ctx ends.
func (w *workload) run(ctx context.Context) {
	var wg sync.WaitGroup
	for i, cust := range w.customers {
		rng := rand.New(rand.NewPCG(w.seed, uint64(1000+i)))
		wg.Go(func() { w.customer(ctx, cust, rng) })
	}
	wg.Go(func() { w.otherBanks(ctx, rand.New(rand.NewPCG(w.seed, 2000))) })
	for i := range 2 {
		rng := rand.New(rand.NewPCG(w.seed, uint64(3000+i)))
		wg.Go(func() { w.reader(ctx, rng) })
	}
	wg.Wait()
}

func (w *workload) channel(rng *rand.Rand) replica { return w.replicas[rng.IntN(len(w.replicas))] }

// submit sends one transfer request for the customer's intent and records
// what came back for its key and its intent.
func (w *workload) submit(ctx context.Context, r replica, intent string, req channel.SubmitRequest) (channel.Transfer, error) {
	t, err := r.Submit(ctx, req)
	if t.ID != "" && (err == nil || banksync.ErrorCode(err) == banksync.EFAILED) {
		w.mu.Lock()
		add(w.keys, req.Customer+"/"+req.IdempotencyKey, t.ID)
		add(w.intents, req.Customer+"/"+intent, t.ID)
		w.mu.Unlock()
	}
	return t, err
}

func add(m map[string]map[string]bool, k, id string) {
	if m[k] == nil {
		m[k] = map[string]bool{}
	}
	m[k][id] = true
}

// customer makes transfers: single ones, double clicks on two channel
// instances, retries with the same key, and a second transfer while the
// first is pending.
func (w *workload) customer(ctx context.Context, cust string, rng *rand.Rand) {
	stats := w.stats
	for n := 0; ctx.Err() == nil; n++ {
		from := w.accounts[cust][rng.IntN(accountsEach)]
		to := w.all[rng.IntN(len(w.all))]
		if to == from {
			continue
		}
		req := channel.SubmitRequest{Customer: cust, IdempotencyKey: fmt.Sprintf("k-%d", n), FromAccount: from, ToAccount: to,
			Amount: 1 + rng.Int64N(5000), Memo: fmt.Sprintf("%s k-%d", cust, n)}
		switch kind := rng.IntN(10); {
		case kind < 5:
			stats.op("transfer")
			t, err := w.submit(ctx, w.channel(rng), req.IdempotencyKey, req)
			if err == nil && t.State == channel.StatePending && rng.IntN(2) == 0 {
				// The customer, seeing nothing happen, sends the same
				// transfer again as a new one while the first is pending.
				second := req
				second.IdempotencyKey += "-again"
				stats.op("transfer_while_pending")
				if _, err := w.submit(ctx, w.channel(rng), req.IdempotencyKey, second); banksync.ErrorCode(err) == banksync.EINPROGRESS {
					stats.op("refused_in_progress")
				}
			}
		case kind < 7:
			stats.op("double_click")
			var wg sync.WaitGroup
			for _, r := range []replica{w.replicas[0], w.replicas[len(w.replicas)-1]} {
				wg.Go(func() { w.submit(ctx, r, req.IdempotencyKey, req) })
			}
			wg.Wait()
		default:
			stats.op("retry_same_key")
			for attempt := 0; attempt < 3 && ctx.Err() == nil; attempt++ {
				t, err := w.submit(ctx, w.channel(rng), req.IdempotencyKey, req)
				if err == nil && t.State != channel.StatePending {
					break
				}
				sleep(ctx, time.Duration(20+rng.IntN(100))*time.Millisecond)
			}
		}
		sleep(ctx, time.Duration(5+rng.IntN(30))*time.Millisecond)
	}
}

// otherBanks sends deposits in bursts, straight to core's ledger. A
// deposit that fails (core restarting) is sent again with the same ref.
func (w *workload) otherBanks(ctx context.Context, rng *rand.Rand) {
	for burst := 0; ctx.Err() == nil; burst++ {
		for i := range 1 + rng.IntN(40) {
			w.deposit(ctx, banksync.DepositRequest{ExternalRef: fmt.Sprintf("kb-%d-%d", burst, i), AccountID: w.all[rng.IntN(len(w.all))],
				Amount: 1 + rng.Int64N(100_000), Sender: "kb-bank"})
		}
		sleep(ctx, time.Duration(100+rng.IntN(700))*time.Millisecond)
	}
}

// depositToAll sends one deposit to every account, retrying each until core
// takes it.
func (w *workload) depositToAll(ctx context.Context, tag string) { w.depositTo(ctx, tag, w.all) }

// depositTo makes one deposit, referenced tag-account, to each of ids.
func (w *workload) depositTo(ctx context.Context, tag string, ids []string) {
	for _, id := range ids {
		w.deposit(ctx, banksync.DepositRequest{ExternalRef: tag + "-" + id, AccountID: id, Amount: 1000, Sender: "kb-bank"})
	}
}

// deposit sends d to core until core takes it (the same ref each time).
func (w *workload) deposit(ctx context.Context, d banksync.DepositRequest) {
	for attempt := 0; attempt < 100 && ctx.Err() == nil; attempt++ {
		if err := w.core.Deposit(ctx, d); err == nil {
			w.stats.op("deposit")
			return
		}
		sleep(ctx, 50*time.Millisecond)
	}
}

// reader pages through histories and presses manual sync; every page is
// checked against core's ledger as read just after it (P5): core's can
// only have grown since.
func (w *workload) reader(ctx context.Context, rng *rand.Rand) {
	for ctx.Err() == nil {
		cust := w.customers[rng.IntN(len(w.customers))]
		account := w.accounts[cust][rng.IntN(accountsEach)]
		r := w.channel(rng)
		if rng.IntN(5) == 0 {
			w.stats.op("manual_sync")
			if st, err := r.Sync(ctx, cust, account); err == nil {
				w.checkState(ctx, account, st)
			}
			continue
		}
		w.stats.op("history_read")
		page, err := r.History(ctx, cust, account, "", 20)
		if err == nil {
			w.checkPage(ctx, account, page)
			if page.NextCursor != "" && rng.IntN(2) == 0 {
				w.stats.op("history_read")
				if older, err := r.History(ctx, cust, account, page.NextCursor, 20); err == nil {
					w.checkPage(ctx, account, older)
					// The older page goes on where the first one stopped.
					if len(older.Entries) > 0 && older.Entries[0].Seq != page.Entries[len(page.Entries)-1].Seq-1 {
						w.stats.violation(P5, "%s: the page after seq %d starts at seq %d: a hole", account,
							page.Entries[len(page.Entries)-1].Seq, older.Entries[0].Seq)
					}
				}
			}
		}
		sleep(ctx, time.Duration(5+rng.IntN(20))*time.Millisecond)
	}
}

// isPrefix tells whether history, ascending, is the start of ledger.
func isPrefix(history, ledger []banksync.Entry) bool {
	return len(history) <= len(ledger) && slices.EqualFunc(history, ledger[:len(history)], banksync.Entry.Equal)
}

// coreEntry reads one of core's entries; ok is false if core could not be
// read (restarting).
func (w *workload) coreEntry(ctx context.Context, account string, seq int64) (banksync.Entry, bool, bool) {
	e, found, err := w.core.Entry(ctx, account, seq)
	return e, found, err == nil
}

func (w *workload) checkPage(ctx context.Context, account string, page channel.Page) {
	for i := 1; i < len(page.Entries); i++ {
		if page.Entries[i].Seq != page.Entries[i-1].Seq-1 {
			w.stats.violation(P5, "%s: the history jumps from seq %d to %d: a hole", account, page.Entries[i-1].Seq, page.Entries[i].Seq)
			return
		}
	}
	if n := len(page.Entries); n > 0 && page.NextCursor == "" && page.Entries[n-1].Seq != 1 {
		w.stats.violation(P5, "%s: the history begins at seq %d, not 1", account, page.Entries[n-1].Seq)
		return
	}
	for _, e := range page.Entries {
		want, found, ok := w.coreEntry(ctx, account, e.Seq)
		if !ok {
			return
		}
		if !found || !e.Equal(want) {
			w.stats.violation(P5, "%s seq %d: the history showed %+v, core has %+v (found %v)", account, e.Seq, e, want, found)
			return
		}
	}
	w.checkState(ctx, account, page.Account)
}

// checkState: the balance shown is one core had, at the synced seq.
func (w *workload) checkState(ctx context.Context, account string, st channel.AccountState) {
	if st.SyncedSeq == 0 {
		return
	}
	want, found, ok := w.coreEntry(ctx, account, st.SyncedSeq)
	if ok && (!found || want.BalanceAfter != st.Balance) {
		w.stats.violation(P5, "%s: shown balance %d at seq %d, core's balance then was %d (found %v)", account, st.Balance, st.SyncedSeq, want.BalanceAfter, found)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// check waits for the system to settle with the faults off, then checks
// every promise and returns the report.
func (s *system) check(ctx context.Context, w *workload) *Report {
	_, coreStore := s.core.current()
	// P2: once faults stop, nothing stays pending past the deadline, the
	// reconciler's grace and a few rounds of it.
	pendingMax := transferDeadline + reconcileGrace + 4*reconcileInterval + 2*coreTimeout + s.cfg.Faults.ClockSkewMax
	checkAfter(ctx, w, coreStore, s.chans[0].store.Store, bounds{pendingMax: pendingMax, settleMax: s.cfg.SettleMax, clockSpread: 2 * s.cfg.Faults.ClockSkewMax})
	return s.stats.report(s.cfg)
}

// ledgerReader is what the final check reads of core's ledger database;
// every ledger.Store has it, so a run of separate processes can check
// core's PostgreSQL database directly.
type ledgerReader interface {
	Entries(ctx context.Context, account string, afterSeq int64, limit int) ([]banksync.Entry, error)
	Transfers(ctx context.Context, ids []string) ([]ledger.TransferRecord, error)
	Totals(ctx context.Context) (ledger.Totals, error)
}

// historyReader is what the final check reads of the channel's database;
// every channel.Store has it.
type historyReader interface {
	PendingBefore(ctx context.Context, t time.Time, limit int) ([]channel.Transfer, error)
	History(ctx context.Context, account string, beforeSeq int64, limit int) ([]banksync.Entry, error)
	Transfer(ctx context.Context, id string) (channel.Transfer, bool, error)
	Account(ctx context.Context, id string) (channel.AccountState, bool, error)
}

// storeWaitMax is how long the channel may wait on its database between
// taking a transfer's creation time and inserting it (its store timeout).
const storeWaitMax = 3 * time.Second

// bounds are the final check's: how long pending transfers may take to
// settle once the faults stop (P2), how long the histories may take to
// reach core's ledger (P4), and how far two channel replicas' clocks may
// be apart.
type bounds struct {
	pendingMax, settleMax, clockSpread time.Duration
}

// checkAfter checks, once the faults have stopped, what the databases
// hold against every promise, within b, and counts what it finds in w's
// tallies.
func checkAfter(ctx context.Context, w *workload, coreStore ledgerReader, hist historyReader, b bounds) {
	checkSettled(ctx, w, hist, b.pendingMax)
	legs, ok := checkHistories(ctx, w, coreStore, hist, b.settleMax)
	if !ok {
		return // called off
	}
	// Every transfer core executed, whoever asked: two legs, once; known to
	// the channel; not reported failed there.
	for id, n := range legs {
		if n != 2 {
			w.stats.violation(P1, "transfer %s has %d entries on core, not 2", id, n)
		}
		t, ok, err := hist.Transfer(ctx, id)
		switch {
		case err != nil:
		case !ok:
			w.stats.violation(P1, "core executed transfer %s that the channel has no record of", id)
		case t.State == channel.StateFailed:
			w.stats.violation(P3, "transfer %s (%s) reported failed (%s), core executed it", id, t.IdempotencyKey, t.Reason)
		}
	}

	checkIntents(ctx, w, coreStore, hist, b.clockSpread)

	// P6.
	if tot, err := coreStore.Totals(ctx); err != nil {
		w.stats.violation(P6, "cannot read core's totals: %v", err)
	} else if tot.Balances != tot.Deposits || tot.NegativeAccounts != 0 {
		w.stats.violation(P6, "balances sum to %d, deposits to %d, %d negative accounts", tot.Balances, tot.Deposits, tot.NegativeAccounts)
	}
}

// checkSettled is P2: within pendingMax of the faults stopping, no
// transfer is pending at the channel.
func checkSettled(ctx context.Context, w *workload, hist historyReader, pendingMax time.Duration) {
	far := time.Now().Add(24 * time.Hour)
	deadline := time.Now().Add(pendingMax)
	var pending []channel.Transfer
	for {
		var err error
		if pending, err = hist.PendingBefore(ctx, far, 1000); err == nil && len(pending) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		sleep(ctx, 50*time.Millisecond)
	}
	for _, t := range pending {
		w.stats.violation(P2, "transfer %s (%s) still pending %s after the faults stopped", t.ID, t.IdempotencyKey, pendingMax)
	}
}

// checkHistories is P4 (and P5 on what stays): within settleMax, every
// account's history reaches core's ledger. It returns how many entries
// each transfer has on core, and false if ctx ended first.
func checkHistories(ctx context.Context, w *workload, coreStore ledgerReader, hist historyReader, settleMax time.Duration) (map[string]int, bool) {
	drained := time.Now().Add(settleMax)
	legs := map[string]int{} // transfer id -> its entries on core
	for _, id := range w.all {
		if es, err := coreStore.Entries(ctx, id, 0, math.MaxInt32); err == nil {
			for _, e := range es {
				if e.TransferID != "" {
					legs[e.TransferID]++
				}
			}
		}
		for {
			want, err1 := coreStore.Entries(ctx, id, 0, math.MaxInt32)
			got, err2 := hist.History(ctx, id, math.MaxInt64, math.MaxInt32)
			slices.Reverse(got)
			equal := err1 == nil && err2 == nil && slices.EqualFunc(want, got, banksync.Entry.Equal)
			if equal {
				checkShownBalance(ctx, w, hist, id, want)
				break
			}
			if ctx.Err() != nil {
				return legs, false
			}
			if time.Now().After(drained) {
				w.stats.violation(P4, "%s: core has %d entries, the history %d, and they differ (errors %v, %v)", id, len(want), len(got), err1, err2)
				// What is left is also what a customer reads from now on:
				// a hole or a changed entry breaks P5 too, whether or not
				// a reader happened to page over it during the run.
				if err1 == nil && err2 == nil && !isPrefix(got, want) {
					w.stats.violation(P5, "%s: after the run the history of %d entries is not the start of core's %d (a hole or a changed entry)", id, len(got), len(want))
				}
				break
			}
			sleep(ctx, 50*time.Millisecond)
		}
	}
	return legs, true
}

// checkIntents checks P1 over every intent and every key the customers
// used: an intent executed at most once (pendingTogether says when a
// second execution is a customer's new transfer), a key never two
// transfers.
func checkIntents(ctx context.Context, w *workload, coreStore ledgerReader, hist historyReader, clockSpread time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for intent, ids := range w.intents {
		var executed []string
		for id := range ids {
			if recs, err := coreStore.Transfers(ctx, []string{id}); err == nil && len(recs) == 1 && recs[0].Status == banksync.StatusCompleted {
				executed = append(executed, id)
			}
		}
		switch {
		case len(executed) < 2:
		case pendingTogether(ctx, hist, executed, clockSpread+storeWaitMax):
			w.stats.violation(P1, "transfer %s executed %d times on core, sent again while it was pending", intent, len(executed))
		default:
			w.stats.op("sent_again_after_completion") // counted, to show how often the rule above was tested
		}
	}
	for key, ids := range w.keys {
		if len(ids) > 1 {
			w.stats.violation(P1, "idempotency key %s made %d transfers", key, len(ids))
		}
	}
}

// pendingTogether tells whether any two of the transfers ids, executed on
// core for one intent of a customer's, were pending at the channel at the
// same time: the second sent while the first had no answer, which the
// in-flight refusal must stop. A customer who presses again after the
// first completed — it answered pending, then its event came — sends a new
// transfer, rightly executed. A transfer the channel has no record of
// (sent to core around the refusal) counts. The channel's database lets
// one transfer per account be pending at a time, so with the refusal on
// only an overlap its times cannot explain counts: they come from the
// replicas' clocks (allow) and a transfer's creation time is taken before
// its insert, which may wait on the database. A record that cannot be read
// is not counted.
func pendingTogether(ctx context.Context, hist historyReader, ids []string, allow time.Duration) bool {
	var ts []channel.Transfer
	for _, id := range ids {
		t, ok, err := hist.Transfer(ctx, id)
		switch {
		case err != nil:
			return false
		case !ok:
			return true
		}
		ts = append(ts, t)
	}
	for i, a := range ts {
		for _, b := range ts[i+1:] {
			if a.SettledAt.IsZero() || b.SettledAt.IsZero() {
				return true // executed on core, never settled: P2 counts it too
			}
			// Both pending from the later creation to the earlier settling.
			later, earlier := a.CreatedAt, a.SettledAt
			if b.CreatedAt.After(later) {
				later = b.CreatedAt
			}
			if b.SettledAt.Before(earlier) {
				earlier = b.SettledAt
			}
			if earlier.Sub(later) > allow {
				return true
			}
		}
	}
	return false
}

// checkShownBalance: once an account's history equals core's entries, the
// balance the app shows, and the seq it says it is synced through, are
// core's last (P5: a balance that never existed, or one behind its own
// history, is what the customer would read).
func checkShownBalance(ctx context.Context, w *workload, hist historyReader, id string, core []banksync.Entry) {
	st, found, err := hist.Account(ctx, id)
	if err != nil || len(core) == 0 {
		return
	}
	last := core[len(core)-1]
	if !found || st.SyncedSeq != last.Seq || st.Balance != last.BalanceAfter {
		w.stats.violation(P5, "%s: the app shows balance %d synced through seq %d (found %v); core's last entry is seq %d, balance %d",
			id, st.Balance, st.SyncedSeq, found, last.Seq, last.BalanceAfter)
	}
}

// Report is what a run did and found.
type Report struct {
	Seed       uint64            `json:"seed"`
	Seconds    float64           `json:"seconds"`
	Operations map[string]int64  `json:"operations"`
	Faults     map[string]int64  `json:"faults"`
	Violations map[string]int64  `json:"violations"`
	Examples   map[string]string `json:"examples,omitempty"` // the first of each promise's violations
}

// OK reports whether no promise was broken.
func (r *Report) OK() bool {
	for _, n := range r.Violations {
		if n > 0 {
			return false
		}
	}
	return true
}

func (c *counters) report(cfg Config) *Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	return &Report{Seed: cfg.Seed, Seconds: cfg.Duration.Seconds(), Operations: clone(c.ops), Faults: clone(c.faults),
		Violations: clone(c.violations), Examples: clone(c.examples)}
}

func clone[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
