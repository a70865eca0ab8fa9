package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"banksync"
	"banksync/internal/testkit"
	"banksync/ledger"
	"banksync/sqlite"
	"banksync/storetest"
)

// recorder is a Publisher that keeps what it was given. While failEvery > 0,
// every failEvery-th call delivers only the first half of its entries and
// then fails, as a relay killed between the broker's ack and storing its
// position would.
type recorder struct {
	mu        sync.Mutex
	got       []banksync.Entry
	calls     int
	failEvery int
}

func (r *recorder) Publish(ctx context.Context, entries []banksync.Entry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.failEvery > 0 && r.calls%r.failEvery == 0 {
		r.got = append(r.got, entries[:len(entries)/2]...)
		return errors.New("injected: connection reset mid-batch")
	}
	r.got = append(r.got, entries...)
	return nil
}

func (r *recorder) entries() []banksync.Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]banksync.Entry(nil), r.got...)
}

func openLedger(t *testing.T) (*ledger.Ledger, ledger.Store) {
	t.Helper()
	store, err := sqlite.OpenLedger(context.Background(), filepath.Join(t.TempDir(), "core.db"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(context.Background(), store, ledger.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); store.Close() })
	return l, store
}

func runRelayUntil(t *testing.T, r *ledger.Relay, store ledger.Store, want int64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	testkit.Eventually(t, 30*time.Second, fmt.Sprintf("relay at position %d", want), func() error {
		pos, err := store.RelayPosition(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if pos != want {
			return fmt.Errorf("stuck at position %d", pos)
		}
		return nil
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
}

func TestRelayPublishesEachEntryOnceInOrder(t *testing.T) {
	l, store := openLedger(t)
	all := storetest.Book(t, l, 50, 3000)
	pub := &recorder{}
	runRelayUntil(t, ledger.NewRelay(store, pub, ledger.RelayConfig{BatchMax: 700, Wake: l.Committed()}), store, all[len(all)-1].Position)
	if d := cmp.Diff(all, pub.entries()); d != "" {
		t.Fatalf("published != committed (-committed +published):\n%s", d)
	}
}

func TestRelayResumesAfterCrashLosingNothing(t *testing.T) {
	l, store := openLedger(t)
	all := storetest.Book(t, l, 50, 3000)
	last := all[len(all)-1].Position
	pub := &recorder{failEvery: 2}

	// First life: publish part of the outbox, then stop as if killed.
	ctx, cancel := context.WithCancel(context.Background())
	r := ledger.NewRelay(store, pub, ledger.RelayConfig{BatchMax: 400})
	for pub.calls < 3 {
		r.Once(ctx)
	}
	cancel()
	// Second life: a new relay over the same store resumes from the stored position.
	runRelayUntil(t, ledger.NewRelay(store, pub, ledger.RelayConfig{BatchMax: 400}), store, last)

	got := pub.entries()
	byPos := map[int64]banksync.Entry{}
	for _, e := range got {
		if prev, ok := byPos[e.Position]; ok && !cmp.Equal(prev, e) {
			t.Fatalf("entry %d re-published with a different body:\n%v\n%v", e.Position, prev, e)
		}
		byPos[e.Position] = e
	}
	for _, e := range all {
		if _, ok := byPos[e.Position]; !ok {
			t.Fatalf("entry %d (%s seq %d) was never published", e.Position, e.AccountID, e.Seq)
		}
	}
	if len(got) == len(all) {
		t.Fatalf("no entry was re-published; the injected crashes did not bite")
	}
	// Per account, a consumer that skips seqs it already has sees 1, 2, 3, …
	applied := map[string]int64{}
	for _, e := range got {
		switch {
		case e.Seq <= applied[e.AccountID]:
			// duplicate after the crash: skipped
		case e.Seq == applied[e.AccountID]+1:
			applied[e.AccountID] = e.Seq
		default:
			t.Fatalf("account %s: seq %d published after %d (out of order)", e.AccountID, e.Seq, applied[e.AccountID])
		}
	}
	t.Logf("%d entries committed, %d published (%d again after crashes)", len(all), len(got), len(got)-len(all))
}
