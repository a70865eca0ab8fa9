package channel_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"banksync"
	"banksync/channel"
	"banksync/sqlite"
)

// pagedStatementStore answers a statement's first page in full and fails
// the second.
type pagedStatementStore struct {
	channel.Store
	calls int
}

var errStatementPage = errors.New("statement page failed")

func (s *pagedStatementStore) Statement(ctx context.Context, account string, afterSeq, throughSeq int64, from, to time.Time, limit int) ([]banksync.Entry, error) {
	s.calls++
	if s.calls > 1 {
		return nil, errStatementPage
	}
	es := make([]banksync.Entry, limit)
	for i := range es {
		es[i] = banksync.Entry{AccountID: account, Seq: afterSeq + int64(i) + 1}
	}
	return es, nil
}

// TestStatementReportsAFailedPage: a store failure after the first page
// ends the statement with the error, after the rows already read, so the
// API can end the download unfinished rather than short.
func TestStatementReportsAFailedPage(t *testing.T) {
	real, err := sqlite.OpenChannel(context.Background(), filepath.Join(t.TempDir(), "channel.db"))
	if err != nil {
		t.Fatal(err)
	}
	store := &pagedStatementStore{Store: real}
	s := newStack(t, store, channel.Config{})
	st, err := s.ch.Statement(context.Background(), "alice", "alice-1", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var rows int
	var last error
	for e, err := range st.Entries {
		if err != nil {
			last = err
			break
		}
		if e.Seq != int64(rows)+1 {
			t.Fatalf("row %d has seq %d", rows, e.Seq)
		}
		rows++
	}
	if rows == 0 || !errors.Is(last, errStatementPage) || store.calls != 2 {
		t.Fatalf("read %d rows in %d pages, then %v; want a full first page, then the second page's error", rows, store.calls, last)
	}
}

// TestStatementRefuses an empty range and another customer's account.
func TestStatementRefuses(t *testing.T) {
	eachStore(t, func(t *testing.T, s *stack) {
		now := time.Now()
		if _, err := s.ch.Statement(context.Background(), "alice", "alice-1", now, now); banksync.ErrorCode(err) != banksync.EINVALID {
			t.Errorf("an empty range = %v, want %s", err, banksync.EINVALID)
		}
		if _, err := s.ch.Statement(context.Background(), "bob", "alice-1", now.Add(-time.Hour), now); banksync.ErrorCode(err) != banksync.ENOTFOUND {
			t.Errorf("another customer's account = %v, want %s", err, banksync.ENOTFOUND)
		}
	})
}
