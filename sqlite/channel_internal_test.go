package sqlite

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"testing"
	"time"

	"banksync"
	"banksync/channel"
)

// TestApplyRunsRollsBackWholeOnConflict: the group commit's inserts are
// INSERT OR ROLLBACK, so a row that breaks a constraint ends the whole
// transaction in SQLite itself. Nothing of the commit may stay — not the
// rows its statements wrote before the conflicting one, not the states —
// and the store must go on working on the same connection.
func TestApplyRunsRollsBackWholeOnConflict(t *testing.T) {
	ctx := context.Background()
	s, err := OpenChannel(ctx, filepath.Join(t.TempDir(), "channel.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	entry := func(account string, seq int64) banksync.Entry {
		return banksync.Entry{AccountID: account, Seq: seq, Position: seq, Kind: banksync.KindDeposit, Amount: 10,
			BalanceAfter: 10 * seq, Counterparty: "acme-payroll", Memo: "salary", BookedAt: time.Unix(1_700_000_000, 0).UTC()}
	}
	// A history row the sync state does not know of: the commit below
	// plans acc-b from seq 1 and its insert hits the primary key.
	if _, err := s.db.write.ExecContext(ctx, `INSERT INTO channel_history (account_id, seq, entry_id, kind, amount,
		balance_after, counterparty, memo, booked_at) VALUES ('acc-b', 2, 2, 'deposit', 10, 20, 'x', '', 0)`); err != nil {
		t.Fatal(err)
	}
	runs := []channel.Run{
		{Account: "acc-a", Entries: []banksync.Entry{entry("acc-a", 1), entry("acc-a", 2)}},
		{Account: "acc-b", Entries: []banksync.Entry{entry("acc-b", 1), entry("acc-b", 2)}},
	}
	if _, err := s.ApplyRuns(ctx, runs, time.Now()); !errors.Is(err, channel.ErrSeqConflict) {
		t.Fatalf("ApplyRuns over a row already there: err = %v, want ErrSeqConflict", err)
	}
	for _, id := range []string{"acc-a", "acc-b"} {
		if _, ok, err := s.Account(ctx, id); err != nil || ok {
			t.Errorf("state of %s after the rolled-back commit: known %v, err %v; want unknown", id, ok, err)
		}
	}
	if h, err := s.History(ctx, "acc-a", math.MaxInt64, 10); err != nil || len(h) != 0 {
		t.Errorf("history of acc-a after the rolled-back commit: %v, %v; want none", h, err)
	}
	if h, err := s.History(ctx, "acc-b", math.MaxInt64, 10); err != nil || len(h) != 1 {
		t.Errorf("history of acc-b after the rolled-back commit: %v, %v; want only the row put there first", h, err)
	}

	res, err := s.ApplyRuns(ctx, runs[:1], time.Now())
	if err != nil || res[0].Appended != 2 {
		t.Fatalf("ApplyRuns after the rollback: %+v, %v; want 2 appended", res, err)
	}
	if h, err := s.History(ctx, "acc-a", math.MaxInt64, 10); err != nil || len(h) != 2 {
		t.Errorf("history of acc-a: %v, %v; want 2 rows", h, err)
	}
}
