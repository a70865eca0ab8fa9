package sqlite_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"banksync"
	"banksync/internal/testkit"
	"banksync/sqlite"
)

// Commits land in the WAL; the background checkpointer copies them into the
// database file while the store stays open. A copy of the database file
// alone, without its WAL, therefore holds them soon after the commit.
func TestCheckpointerCopiesWALIntoDatabase(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "channel.db")
	s, err := sqlite.OpenChannel(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const accounts = 50
	t0 := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	for a := range accounts {
		id := fmt.Sprintf("acc-%02d", a)
		e := banksync.Entry{AccountID: id, Seq: 1, Position: int64(a + 1), Kind: banksync.KindDeposit, Amount: 100,
			BalanceAfter: 100, Counterparty: "kb", ExternalRef: "kb-" + id, BookedAt: t0}
		if _, err := s.Apply(ctx, id, []banksync.Entry{e}, t0); err != nil {
			t.Fatal(err)
		}
	}
	copyPath := filepath.Join(dir, "copy.db")
	testkit.Eventually(t, 10*time.Second, "every committed history in the database file (a checkpoint of the WAL)", func() error {
		if n := countInDatabaseFile(t, path, copyPath); n != accounts {
			return fmt.Errorf("the file alone holds %d of %d", n, accounts)
		}
		return nil
	})
}

// countInDatabaseFile copies the database file (not its WAL) to copyPath
// and counts the accounts with history there.
func countInDatabaseFile(t *testing.T, path, copyPath string) int {
	t.Helper()
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(copyPath + "-wal")
	os.Remove(copyPath + "-shm")
	if err := os.WriteFile(copyPath, body, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := sqlite.OpenChannel(context.Background(), copyPath)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := 0
	for a := range 50 {
		es, err := c.History(context.Background(), fmt.Sprintf("acc-%02d", a), math.MaxInt64, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(es) > 0 {
			n++
		}
	}
	return n
}

// Closing a store twice is harmless, as closing a database/sql pool is.
func TestCloseTwice(t *testing.T) {
	s, err := sqlite.OpenChannel(context.Background(), filepath.Join(t.TempDir(), "channel.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
