package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"banksync"
	"banksync/channel"
)

// The history benchmark fixture: one account deep enough that OFFSET paging
// hurts, and neighbours on both sides of it in the primary key.
const (
	HistoryBigAccount     = "big"
	HistoryBigEntries     = 1_000_000
	HistoryApplyChunk     = 5_000 // entries per Apply, as a long gap fill would come
	HistoryNeighbourCount = 2_000
	HistoryPageSize       = 20
)

// HistoryNeighbours are the accounts either side of HistoryBigAccount.
var HistoryNeighbours = []string{"alpha", "zulu"}

// HistoryFixture describes what OpenHistoryFixture writes, for the
// benchmark's log line.
func HistoryFixture() string {
	return fmt.Sprintf("%d history rows of %q (+%d in %d other accounts)",
		HistoryBigEntries, HistoryBigAccount, HistoryNeighbourCount*len(HistoryNeighbours), len(HistoryNeighbours))
}

// OpenHistoryFixture opens an empty channel store with open, closes it when
// tb ends, and fills it with the history fixture through Apply:
// HistoryNeighbourCount entries for each of HistoryNeighbours, then
// HistoryBigEntries for HistoryBigAccount.
func OpenHistoryFixture(tb testing.TB, open func(context.Context) (channel.Store, error)) channel.Store {
	tb.Helper()
	s, err := open(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	w := newHistoryWriter(s)
	for _, a := range HistoryNeighbours {
		w.mustApply(tb, a, HistoryNeighbourCount)
	}
	w.mustApply(tb, HistoryBigAccount, HistoryBigEntries)
	return s
}

// OffsetPage reads limit entries of account, newest first, after skipping
// offset of them: the ORDER BY seq DESC OFFSET n baseline a store's
// benchmark compares its keyset History against.
type OffsetPage func(ctx context.Context, account string, offset int64, limit int) ([]banksync.Entry, error)

// BenchmarkHistoryKeysetOffset runs the Keyset and Offset sub-benchmarks
// over a store holding the history fixture: Keyset reads through the
// store's History (seq < before), Offset the same page through offset.
// First it checks, at four depths, that offset reads the very page the
// keyset read does.
func BenchmarkHistoryKeysetOffset(b *testing.B, s channel.Store, offset OffsetPage) {
	ctx := context.Background()
	for _, before := range []int64{21, 22, 500_000, HistoryBigEntries} {
		want, err := s.History(ctx, HistoryBigAccount, before, HistoryPageSize)
		if err != nil {
			b.Fatal(err)
		}
		got, err := offset(ctx, HistoryBigAccount, HistoryBigEntries-before+1, HistoryPageSize)
		if err != nil {
			b.Fatal(err)
		}
		if len(want) != HistoryPageSize {
			b.Fatalf("History(before %d) = %d entries, want %d", before, len(want), HistoryPageSize)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			b.Fatalf("OFFSET page before %d differs from the keyset page (-keyset +offset):\n%s", before, diff)
		}
	}

	b.Run("Keyset", func(b *testing.B) {
		benchmarkHistoryPages(b, HistoryPageSize, func(before int64) ([]banksync.Entry, error) {
			return s.History(ctx, HistoryBigAccount, before, HistoryPageSize)
		})
	})
	b.Run("Offset", func(b *testing.B) {
		benchmarkHistoryPages(b, HistoryPageSize, func(before int64) ([]banksync.Entry, error) {
			return offset(ctx, HistoryBigAccount, HistoryBigEntries-before+1, HistoryPageSize)
		})
	})
	// What a filtered page that matches nothing reads: the most it may
	// examine, channel.HistoryScanMaxDefault entries below its cursor.
	b.Run("FilteredScan", func(b *testing.B) {
		benchmarkHistoryPages(b, channel.HistoryScanMaxDefault, func(before int64) ([]banksync.Entry, error) {
			return s.History(ctx, HistoryBigAccount, before, channel.HistoryScanMaxDefault)
		})
	})
}

// benchmarkHistoryPages reads b.N pages of size entries before seqs drawn
// uniformly from size+1..1,000,000 (every one a full page), the same draws
// for every reader.
func benchmarkHistoryPages(b *testing.B, size int, read func(before int64) ([]banksync.Entry, error)) {
	rng := rand.New(rand.NewPCG(1, 2))
	befores := make([]int64, b.N)
	for i := range befores {
		befores[i] = int64(size) + 1 + rng.Int64N(HistoryBigEntries-int64(size))
	}
	took := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		es, err := read(befores[i])
		took[i] = time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		if len(es) != size || es[0].Seq != befores[i]-1 {
			b.Fatalf("page before %d: %d entries from seq %d, want %d from %d",
				befores[i], len(es), firstSeq(es), size, befores[i]-1)
		}
	}
	b.StopTimer()
	ReportPageLatency(b, took)
}

func firstSeq(es []banksync.Entry) int64 {
	if len(es) == 0 {
		return 0
	}
	return es[0].Seq
}

// ReportPageLatency adds pages/s and the median and 99th percentile of one
// page's read time to the benchmark line. It sorts took.
func ReportPageLatency(b *testing.B, took []time.Duration) {
	slices.Sort(took)
	at := func(q float64) float64 {
		return float64(took[int(q*float64(len(took)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(len(took))/b.Elapsed().Seconds(), "pages/s")
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}

// historyWriter fills a channel store with history through Apply, as
// syncs would: contiguous seqs per account, one global position, and
// balances that follow from the amounts (deposits outweigh transfers out,
// so no balance goes below zero).
type historyWriter struct {
	store    channel.Store
	position int64
	booked   time.Time
}

func newHistoryWriter(s channel.Store) *historyWriter {
	return &historyWriter{store: s, booked: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// mustApply gives account n entries, HistoryApplyChunk per Apply.
func (w *historyWriter) mustApply(tb testing.TB, account string, n int) {
	tb.Helper()
	ctx := context.Background()
	var balance int64
	chunk := make([]banksync.Entry, 0, HistoryApplyChunk)
	for seq := int64(1); seq <= int64(n); seq++ {
		w.position++
		w.booked = w.booked.Add(time.Second)
		e := banksync.Entry{AccountID: account, Seq: seq, Position: w.position, BookedAt: w.booked}
		if seq%2 == 1 {
			e.Kind, e.Amount, e.Counterparty = banksync.KindDeposit, 50_000, "kb-bank"
			e.ExternalRef, e.Memo = fmt.Sprintf("kb-%012d", w.position), "salary"
		} else {
			e.Kind, e.Amount, e.Counterparty = banksync.KindTransferOut, -30_000, "acct-"+account+"-payee"
			e.TransferID, e.Memo = fmt.Sprintf("019a%028d", w.position), "rent and utilities"
		}
		balance += e.Amount
		e.BalanceAfter = balance
		chunk = append(chunk, e)
		if len(chunk) == HistoryApplyChunk || seq == int64(n) {
			if _, err := w.store.Apply(ctx, account, chunk, w.booked); err != nil {
				tb.Fatalf("Apply %s seqs %d..%d: %v", account, chunk[0].Seq, seq, err)
			}
			chunk = chunk[:0]
		}
	}
}
