package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"banksync"
	"banksync/channel"
	"banksync/ledger"
	"banksync/node"
	"banksync/postgres"
)

// A prefill is the years of history a bank's tables hold before a payday:
// rows of past salary deposits, booked at core and already applied in the
// channel, loaded before the timed part so that the payday drains into a
// history table with deep b-trees and a working set beyond the cache.
//
// Both sides are written through the stores' own write paths, as the real
// code writes them: core's rows by ledger.Store.Commit, in batches shaped
// like a group commit's (new accounts with their balance and last seq,
// entries ascending by position, deposit records); the channel's by
// channel.Store.ApplyRuns, one long run per account. The entries go in
// key order (account by account, seq by seq, positions in that order), so
// every b-tree is filled at its end and the load runs at the stores'
// insert speed. Core's relay position is then set past the last prefilled
// entry: the prefill is history that was published long ago, and the relay
// must not publish it again.

// prefillSpan is how far back the prefilled history reaches: each
// account's entries are booked evenly over it, the newest just before the
// load.
const prefillSpan = 3 * 365 * 24 * time.Hour

// prefillBatchRows is how many entries one store transaction of the load
// writes: big enough that a commit's fsync and round trips are nothing
// beside the rows, small enough to hold a few in memory at once.
const prefillBatchRows = 50_000

// prefillOwner owns the prefilled accounts, as createAccounts makes them.
const prefillOwner = "payday"

// prefillSenders are the banks the prefilled salaries came from.
var prefillSenders = []string{"acme-payroll", "globex-salaries", "initech-hr", "umbrella-payroll", "hooli-people-ops"}

// prefill describes the history loaded before a payday: which entries
// each account has, derived from the account's index alone, so core's
// load and the channel's (and the naive baseline's channel) write the
// same entries.
type prefill struct {
	ids    []string  // the accounts, as createAccounts names them
	counts []int64   // per account: its prefilled entries, seqs 1..counts[i]
	after  []int64   // per account: the position before its seq 1
	at     time.Time // when the load ran; every prefilled entry is booked before it
	rows   int64
}

// newPrefill spreads rows entries evenly over accounts accounts named
// prefix-000000…
func newPrefill(prefix string, accounts int, rows int64, at time.Time) *prefill {
	p := &prefill{ids: make([]string, accounts), counts: make([]int64, accounts), after: make([]int64, accounts),
		at: banksync.Timestamp(at), rows: rows}
	var pos int64
	for i := range accounts {
		p.ids[i] = fmt.Sprintf("%s-%06d", prefix, i)
		p.counts[i] = rows / int64(accounts)
		if int64(i) < rows%int64(accounts) {
			p.counts[i]++
		}
		p.after[i] = pos
		pos += p.counts[i]
	}
	return p
}

// lastPosition is the position of the last prefilled entry.
func (p *prefill) lastPosition() int64 { return p.rows }

// amount is the salary of account i's entry seq: varied, always positive.
func (p *prefill) amount(i int, seq int64) int64 {
	return 1_500_000 + (int64(i)*7_919+seq*104_729)%3_000_000
}

// createdAt is when every prefilled account was opened: before its first
// entry.
func (p *prefill) createdAt() time.Time { return p.at.Add(-prefillSpan - time.Hour) }

// entry is account i's entry seq, given the balance after its seq-1.
func (p *prefill) entry(i int, seq, balanceBefore int64) banksync.Entry {
	amount := p.amount(i, seq)
	// Evenly over the span, the newest a few microseconds before the load;
	// the account's index staggers accounts so that they do not share
	// instants.
	step := prefillSpan / time.Duration(p.counts[i])
	booked := p.at.Add(-time.Duration(p.counts[i]-seq+1)*step - time.Duration(i%1000)*time.Microsecond)
	return banksync.Entry{AccountID: p.ids[i], Seq: seq, Position: p.after[i] + seq, Kind: banksync.KindDeposit,
		Amount: amount, BalanceAfter: balanceBefore + amount, Counterparty: prefillSenders[(i+int(seq))%len(prefillSenders)],
		ExternalRef: fmt.Sprintf("%s.history.%08d", p.ids[i], seq), BookedAt: banksync.Timestamp(booked)}
}

// prefillChunk is one transaction's worth of the prefill: whole accounts
// or a part of one, in account order.
type prefillChunk struct {
	accounts []banksync.Account // state after the chunk of every account it reaches; fresh is which are new
	fresh    []bool
	entries  []banksync.Entry // ascending by account, then seq (and so by position)
}

// chunks sends the prefill in chunks of at most prefillBatchRows entries
// (an account without entries rides in the next chunk) until done or ctx
// ends; it closes out either way.
func (p *prefill) chunks(ctx context.Context, out chan<- prefillChunk) {
	defer close(out)
	c := prefillChunk{}
	send := func() bool {
		select {
		case out <- c:
			c = prefillChunk{entries: make([]banksync.Entry, 0, prefillBatchRows)}
			return true
		case <-ctx.Done():
			return false
		}
	}
	for i := range p.ids {
		var balance int64
		acct := banksync.Account{ID: p.ids[i], Owner: prefillOwner, CreatedAt: p.createdAt()}
		fresh := true
		for seq := int64(1); seq <= p.counts[i]; seq++ {
			e := p.entry(i, seq, balance)
			balance = e.BalanceAfter
			c.entries = append(c.entries, e)
			if len(c.entries) == prefillBatchRows {
				acct.Balance, acct.LastSeq = balance, seq
				c.accounts, c.fresh = append(c.accounts, acct), append(c.fresh, fresh)
				fresh = false
				if !send() {
					return
				}
			}
		}
		if fresh || acct.LastSeq < p.counts[i] {
			acct.Balance, acct.LastSeq = balance, p.counts[i]
			c.accounts, c.fresh = append(c.accounts, acct), append(c.fresh, fresh)
		}
	}
	if len(c.accounts) > 0 {
		send()
	}
}

// load writes the prefill through core's store and the channel's store at
// once (either may be nil, for a load of one side), and returns how long
// each took. Neither store may be in use by a ledger or a channel yet: the
// ledger caches accounts and its last position as it opens.
func (p *prefill) load(ctx context.Context, core ledger.Store, ch channel.Store) (coreTook, chTook time.Duration, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var sinks []chan prefillChunk
	var wg sync.WaitGroup
	var coreErr, chErr error
	start := time.Now()
	if core != nil {
		in := make(chan prefillChunk, 2)
		sinks = append(sinks, in)
		wg.Go(func() {
			if coreErr = p.loadCore(ctx, core, in); coreErr != nil {
				cancel()
			}
			coreTook = time.Since(start)
		})
	}
	if ch != nil {
		in := make(chan prefillChunk, 2)
		sinks = append(sinks, in)
		wg.Go(func() {
			if chErr = p.loadChannel(ctx, ch, in); chErr != nil {
				cancel()
			}
			chTook = time.Since(start)
		})
	}
	chunks := make(chan prefillChunk)
	go p.chunks(ctx, chunks)
	for c := range chunks {
		for _, in := range sinks {
			select {
			case in <- c:
			case <-ctx.Done():
			}
		}
	}
	for _, in := range sinks {
		close(in)
	}
	wg.Wait()
	if err := errors.Join(coreErr, chErr); err != nil {
		return coreTook, chTook, err
	}
	return coreTook, chTook, ctx.Err()
}

// loadCore commits each chunk as one ledger batch, then sets the relay
// position past the prefill.
func (p *prefill) loadCore(ctx context.Context, s ledger.Store, in <-chan prefillChunk) error {
	for c := range in {
		b := &ledger.Batch{Entries: c.entries, Deposits: make([]ledger.DepositRecord, len(c.entries))}
		for i, a := range c.accounts {
			if c.fresh[i] {
				b.NewAccounts = append(b.NewAccounts, a)
			} else {
				b.Accounts = append(b.Accounts, a)
			}
		}
		for i, e := range c.entries {
			b.Deposits[i] = ledger.DepositRecord{ExternalRef: e.ExternalRef, BodyHash: depositBodyHash(e.AccountID, e.Amount, e.Counterparty),
				AccountID: e.AccountID, Amount: e.Amount, Seq: e.Seq, BookedAt: e.BookedAt}
		}
		if err := s.Commit(ctx, b); err != nil {
			return fmt.Errorf("prefill core: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Published long ago: the relay starts after the prefill.
	if err := s.SetRelayPosition(ctx, p.lastPosition()); err != nil {
		return fmt.Errorf("prefill core: %w", err)
	}
	return nil
}

// loadChannel applies each chunk as one group commit of the channel, a run
// per account.
func (p *prefill) loadChannel(ctx context.Context, s channel.Store, in <-chan prefillChunk) error {
	for c := range in {
		var runs []channel.Run
		for start := 0; start < len(c.entries); {
			end := start + 1
			for end < len(c.entries) && c.entries[end].AccountID == c.entries[start].AccountID {
				end++
			}
			runs = append(runs, channel.Run{Account: c.entries[start].AccountID, Entries: c.entries[start:end]})
			start = end
		}
		if len(runs) == 0 {
			continue
		}
		results, err := s.ApplyRuns(ctx, runs, p.at)
		if err != nil {
			return fmt.Errorf("prefill channel: %w", err)
		}
		for i, r := range results {
			if r.Gap || r.Appended != len(runs[i].Entries) {
				return fmt.Errorf("prefill channel: %s: appended %d of %d entries (gap %v)", runs[i].Account, r.Appended, len(runs[i].Entries), r.Gap)
			}
		}
	}
	return ctx.Err()
}

// depositBodyHash is the body hash core records for a deposit (ledger's
// hashOf of account, amount and sender), so that a prefilled deposit
// record is what core itself would have written. TestPrefillDepositHash
// holds it to core's.
func depositBodyHash(account string, amount int64, sender string) string {
	h := sha256.New()
	for _, s := range []string{account, strconv.FormatInt(amount, 10), sender} {
		fmt.Fprintf(h, "%d:%s;", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// prefillStores loads the prefill into the databases coreDSN and chDSN
// (either may be "") through stores opened for it alone and closed after,
// before any ledger or channel runs on them.
func (p *prefill) prefillStores(ctx context.Context, coreDSN, chDSN string) (coreTook, chTook time.Duration, err error) {
	var core ledger.Store
	var ch channel.Store
	if coreDSN != "" {
		if core, err = node.OpenLedgerStore(ctx, coreDSN); err != nil {
			return 0, 0, err
		}
		defer core.Close()
	}
	if chDSN != "" {
		if ch, err = node.OpenChannelStore(ctx, chDSN, nil); err != nil {
			return 0, 0, err
		}
		defer ch.Close()
	}
	return p.load(ctx, core, ch)
}

// prefillTemplates are a run's prefilled databases, one for core and one
// for the channel, loaded once at the first rig's setup; every rig's
// databases (the naive consumer's and the channel process's too) start as
// copies of them, which takes seconds where a load of 10,000,000 rows takes
// minutes.
type prefillTemplates struct {
	prefill       *prefill
	core, channel string        // the templates' DSNs; "" until loaded
	took          time.Duration // the load, both at once
	drops         []func()
}

// withPrefill returns cfg holding the run's prefill templates, not loaded
// yet, if it asks for a prefill, and what drops them at the run's end.
func withPrefill(cfg PaydayConfig) (PaydayConfig, func()) {
	if cfg.Prefill == 0 {
		return cfg, func() {}
	}
	cfg.templates = &prefillTemplates{prefill: newPrefill(prefillOwner, cfg.Accounts, cfg.Prefill, time.Now())}
	return cfg, cfg.templates.drop
}

// templates returns the DSNs of the run's prefilled core and channel
// databases, loading them first if no rig has yet; without a prefill, "".
// Templates are loaded through stores opened for the load alone and closed
// after, so nothing has them open when a rig copies them.
func (r *paydayRig) templates(ctx context.Context) (core, ch string, err error) {
	t := r.cfg.templates
	if t == nil {
		return "", "", nil
	}
	r.prefill = t.prefill
	if t.core != "" {
		return t.core, t.channel, nil
	}
	scratch := func(name string) (string, error) {
		dsn, drop, err := scratchDB(ctx, r.cfg.DB, name)
		if err == nil {
			t.drops = append(t.drops, drop)
		}
		return dsn, err
	}
	if core, err = scratch("template-core.db"); err != nil {
		return "", "", err
	}
	if ch, err = scratch("template-channel.db"); err != nil {
		return "", "", err
	}
	end := r.step(fmt.Sprintf("prefill: loading %d history rows into core and channel", t.prefill.rows), nil)
	defer end()
	coreTook, chTook, err := t.prefill.prefillStores(ctx, core, ch)
	if err != nil {
		return "", "", err
	}
	if DBKind(r.cfg.DB) == "postgres" {
		for _, dsn := range []string{core, ch} {
			if err := postgres.Vacuum(ctx, dsn); err != nil {
				return "", "", err
			}
		}
	}
	end()
	t.core, t.channel, t.took = core, ch, max(coreTook, chTook)
	fmt.Fprintf(r.cfg.Out, "prefill:             %9d history rows in %6.1f s = %7.0f rows/s into core and channel at once (core %.1f s, channel %.1f s), %d to %d an account, relay past them; every run starts from a copy\n",
		t.prefill.rows, t.took.Seconds(), float64(t.prefill.rows)/t.took.Seconds(),
		coreTook.Seconds(), chTook.Seconds(), t.prefill.counts[len(t.prefill.counts)-1], t.prefill.counts[0])
	return t.core, t.channel, nil
}

// seconds is how long the load took; 0 without a prefill.
func (t *prefillTemplates) seconds() float64 {
	if t == nil {
		return 0
	}
	return t.took.Seconds()
}

// drop removes the templates.
func (t *prefillTemplates) drop() {
	for _, drop := range t.drops {
		drop()
	}
}
