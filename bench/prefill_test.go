package bench

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"banksync"
	"banksync/channel"
	"banksync/ledger"
	"banksync/postgres/pgtest"
	"banksync/sqlite"
)

// forEachDB runs test on SQLite and on PostgreSQL; the PostgreSQL run
// skips without BANKSYNC_TEST_POSTGRES (and fails under CI), as
// pgtest.Database does.
func forEachDB(t *testing.T, test func(t *testing.T, db string)) {
	t.Helper()
	t.Run("sqlite", func(t *testing.T) { test(t, "sqlite") })
	t.Run("postgres", func(t *testing.T) { test(t, pgtest.Database(t)) })
}

// logWriter writes a bench's report to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// prefillPayday is a small payday whose accounts hold an uneven prefill:
// 20,003 rows over 1000 accounts, 21 for the first three, 20 for the
// rest; twice prefillVerifiedAccounts, so verify reads half of them whole
// and the other half from their last prefilled entry.
func prefillPayday(t *testing.T, db string) PaydayConfig {
	cfg, drop := withPrefill(PaydayConfig{DB: db, Deposits: 3000, Accounts: 2 * prefillVerifiedAccounts, Prefill: 20_003,
		Partitions: 4, Lanes: 8, Clients: 2, BatchSize: 500, Out: logWriter{t}})
	t.Cleanup(drop)
	return cfg
}

// A prefilled payday: core and channel start with the same history, the
// relay publishes only the payday, the payday's deposits continue every
// account's seq, verify catches a channel that lacks them and passes once
// they are drained, and a customer's history pages run from the payday's
// rows into the prefilled ones with no gap.
func TestPrefilledPayday(t *testing.T) {
	forEachDB(t, func(t *testing.T, db string) {
		ctx := context.Background()
		cfg := prefillPayday(t, db)
		r, err := newPaydayRig(ctx, cfg, "test")
		if err != nil {
			t.Fatal(err)
		}
		defer r.close()
		if ok, err := r.verify(ctx); err != nil || !ok {
			t.Fatalf("verify of the prefill alone = %v, %v; want true", ok, err)
		}
		if _, err := r.postAll(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := r.waitPublished(ctx); err != nil {
			t.Fatal(err)
		}
		if n := recordsOn(t, r); n != int64(cfg.Deposits) {
			t.Errorf("%d records on the ledger topic, want the payday's %d alone (the prefill is published already)", n, cfg.Deposits)
		}
		if bad, err := r.differing(ctx); err != nil || bad != int64(cfg.Accounts) {
			t.Fatalf("verify before the drain finds %d accounts differ (%v); want all %d (the channel lacks the payday)", bad, err, cfg.Accounts)
		}
		stop, err := r.startConsumer()
		if err != nil {
			t.Fatal(err)
		}
		err = r.waitVisible(ctx, int64(cfg.Deposits), time.Minute)
		stop()
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := r.verify(ctx); err != nil || !ok {
			t.Fatalf("verify after the drain = %v, %v; want true", ok, err)
		}
		if n := r.vis.visible.Load(); n != int64(cfg.Deposits) {
			t.Errorf("%d entries counted visible, want the payday's %d (prefilled ones are not news)", n, cfg.Deposits)
		}
		for _, i := range []int{0, 1, 7} { // 21, 21 and 20 prefilled rows; read whole, from seq 20, whole
			checkHistoryPages(t, r, i, cfg.Deposits/cfg.Accounts)
		}
	})
}

// recordsOn counts the records on the rig's ledger topic.
func recordsOn(t *testing.T, r *paydayRig) int64 {
	cl, err := r.core.Conn().NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), r.topic)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// checkHistoryPages reads account i's whole history as its owner does,
// page by page, and wants every seq from the newest down to 1 once: first
// the payday's deposits, then the prefilled ones, each equal to core's.
func checkHistoryPages(t *testing.T, r *paydayRig, i, payday int) {
	t.Helper()
	ctx := context.Background()
	id, prefilled := r.ids[i], r.prefill.counts[i]
	want, err := r.core.Store().Entries(ctx, id, 0, 10_000)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(want)) != prefilled+int64(payday) {
		t.Fatalf("%s: core has %d entries, want %d prefilled and %d of the payday", id, len(want), prefilled, payday)
	}
	cs := channel.NewCursors([]byte("test"))
	var cursor string
	seq := int64(len(want))
	for pages := 0; ; pages++ {
		// 10 a page: one page holds the payday's rows and the newest
		// prefilled ones.
		page, err := r.ch.History(ctx, cs, prefillOwner, id, cursor, 10)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range page.Entries {
			fromPayday := strings.HasPrefix(e.ExternalRef, "salary-")
			switch {
			case e.Seq != seq:
				t.Fatalf("%s page %d: seq %d where %d was due (a gap or a repeat)", id, pages, e.Seq, seq)
			case fromPayday != (seq > prefilled):
				t.Fatalf("%s: seq %d is %q; want the payday's deposits above seq %d, the prefill's at and below", id, seq, e.ExternalRef, prefilled)
			case !e.Equal(want[seq-1]):
				t.Fatalf("%s: history has %+v, core %+v", id, e, want[seq-1])
			}
			seq--
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if seq != 0 {
		t.Fatalf("%s: history pages end at seq %d, want them to reach seq 1", id, seq+1)
	}
}

// The whole benchmark with a prefill, the naive baseline's channel
// prefilled too: verified, and the prefill reported.
func TestPaydayWithPrefill(t *testing.T) {
	cfg := prefillPayday(t, "sqlite")
	cfg.Baseline = 200
	res, err := Payday(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Verified || res.Events != int64(cfg.Deposits) {
		t.Fatalf("result = %+v, want %d events verified", res, cfg.Deposits)
	}
	if res.PrefillRows != cfg.Prefill || res.PrefillSeconds <= 0 {
		t.Errorf("prefill_rows %d, prefill_seconds %v; want %d and a positive time", res.PrefillRows, res.PrefillSeconds, cfg.Prefill)
	}
}

// A prefilled deposit record carries the body hash core itself records
// for that deposit, so that core answers a repeat of it as core would.
func TestPrefillDepositHash(t *testing.T) {
	ctx := context.Background()
	store, err := sqlite.OpenLedger(ctx, filepath.Join(t.TempDir(), "core.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	l, err := ledger.Open(ctx, store, ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, _, err := l.CreateAccount(ctx, "acct-1", "owner"); err != nil {
		t.Fatal(err)
	}
	d := banksync.DepositRequest{ExternalRef: "ref-1", AccountID: "acct-1", Amount: 1_234_567, Sender: "acme-payroll"}
	if _, err := l.Deposit(ctx, d); err != nil {
		t.Fatal(err)
	}
	recs, err := store.Deposits(ctx, []string{d.ExternalRef})
	if err != nil || len(recs) != 1 {
		t.Fatalf("deposit records = %v, %v", recs, err)
	}
	if got := depositBodyHash(d.AccountID, d.Amount, d.Sender); got != recs[0].BodyHash {
		t.Errorf("prefill's body hash %s, core's %s", got, recs[0].BodyHash)
	}
}

// The prefill's chunks hold every entry once, in position order, and
// every account once as new, with its final balance and last seq in the
// chunk that holds its last entry, also when an account spans chunks.
func TestPrefillChunks(t *testing.T) {
	p := newPrefill("payday", 3, 2*prefillBatchRows+10, time.Now())
	chunks := make(chan prefillChunk)
	go p.chunks(context.Background(), chunks)
	var pos int64
	final := map[string]banksync.Account{}
	fresh := map[string]int{}
	for c := range chunks {
		if len(c.entries) > prefillBatchRows {
			t.Errorf("a chunk of %d entries, over %d", len(c.entries), prefillBatchRows)
		}
		for _, e := range c.entries {
			if pos++; e.Position != pos {
				t.Fatalf("entry %s/%d at position %d, want %d", e.AccountID, e.Seq, e.Position, pos)
			}
		}
		for i, a := range c.accounts {
			final[a.ID] = a
			if c.fresh[i] {
				fresh[a.ID]++
			}
		}
	}
	if pos != p.rows {
		t.Fatalf("%d entries, want %d", pos, p.rows)
	}
	for i, id := range p.ids {
		var balance int64
		for seq := int64(1); seq <= p.counts[i]; seq++ {
			balance += p.amount(i, seq)
		}
		if a := final[id]; fresh[id] != 1 || a.LastSeq != p.counts[i] || a.Balance != balance {
			t.Errorf("%s: new %d times, last seq %d, balance %d; want once, %d, %d", id, fresh[id], a.LastSeq, a.Balance, p.counts[i], balance)
		}
	}
}
