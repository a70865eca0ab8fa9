package ledger_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"banksync"
	"banksync/internal/testkit"
	"banksync/ledger"
	"banksync/sqlite"
)

// heldStore holds every commit while held is set, until release.
type heldStore struct {
	ledger.Store
	mu      sync.Mutex
	held    bool
	release chan struct{}
}

func (s *heldStore) Commit(ctx context.Context, b *ledger.Batch) error {
	s.mu.Lock()
	held := s.held
	s.mu.Unlock()
	if held {
		<-s.release
	}
	return s.Store.Commit(ctx, b)
}

// countLogged returns how many lines of logs have msg and the transfer id.
func countLogged(t *testing.T, logs *testkit.SyncBuffer, msg, id string) int {
	t.Helper()
	n := 0
	for _, m := range logs.JSONLines(t) {
		if m["msg"] == msg && m["transfer_id"] == id {
			n++
		}
	}
	return n
}

// TestDecisionsLoggedOnce: a transfer decided is logged once; a retry of
// it, which answers the recorded decision, is not logged again; and one
// whose caller gave up before the commit is still logged, once, when the
// writer decides it.
func TestDecisionsLoggedOnce(t *testing.T) {
	ctx := context.Background()
	inner, err := sqlite.OpenLedger(ctx, filepath.Join(t.TempDir(), "core.db"))
	if err != nil {
		t.Fatal(err)
	}
	store := &heldStore{Store: inner, release: make(chan struct{})}
	logs := &testkit.SyncBuffer{}
	l, err := ledger.Open(ctx, store, ledger.Config{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(); inner.Close() })
	mustAccounts(t, l, "a", "b")
	if _, err := l.Deposit(ctx, banksync.DepositRequest{ExternalRef: "d-1", AccountID: "a", Amount: 1000, Sender: "woori"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	transfer := func(ctx context.Context, id string) (banksync.TransferOutcome, error) {
		return l.Transfer(ctx, banksync.TransferRequest{TransferID: id, FromAccount: "a", ToAccount: "b", Amount: 10, Deadline: deadline})
	}

	if _, err := transfer(ctx, "t-1"); err != nil {
		t.Fatal(err)
	}
	if out, err := transfer(ctx, "t-1"); err != nil || out.Status != banksync.StatusCompleted {
		t.Fatalf("retry = %+v, %v", out, err)
	}
	if n := countLogged(t, logs, "transfer decided", "t-1"); n != 1 {
		t.Errorf("t-1 decided and retried: %d lines, want 1", n)
	}

	// The caller gives up while its commit is held.
	store.mu.Lock()
	store.held = true
	store.mu.Unlock()
	gaveUp, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := transfer(gaveUp, "t-late"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("held transfer = %v, want the caller's deadline", err)
	}
	if n := countLogged(t, logs, "transfer decided", "t-late"); n != 0 {
		t.Fatalf("%d lines before the writer decided", n)
	}
	store.mu.Lock()
	store.held = false
	store.mu.Unlock()
	close(store.release)
	testkit.Eventually(t, 10*time.Second, "the decision of a transfer whose caller gave up logged", func() error {
		if countLogged(t, logs, "transfer decided", "t-late") == 0 {
			return errors.New("no line for t-late")
		}
		return nil
	})
	if out, err := transfer(ctx, "t-late"); err != nil || out.Status != banksync.StatusCompleted {
		t.Fatalf("t-late afterwards = %+v, %v; want completed", out, err)
	}
	if n := countLogged(t, logs, "transfer decided", "t-late"); n != 1 {
		t.Errorf("t-late: %d lines, want 1", n)
	}
}
