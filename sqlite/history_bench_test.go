package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"banksync"
	"banksync/channel"
	"banksync/sqlite"
	"banksync/storetest"
)

// BenchmarkHistory reads one newest-first page of 20 at a uniformly random
// depth of an account with 1,000,000 history rows: Keyset through the
// store's History (seq < before), Offset the same page found the way we
// refuse to (ORDER BY seq DESC OFFSET n), on the same file in the same run.
// The fixture is built once, by the parent, for both.
func BenchmarkHistory(b *testing.B) {
	path := filepath.Join(b.TempDir(), "channel.db")
	start := time.Now()
	s := storetest.OpenHistoryFixture(b, func(ctx context.Context) (channel.Store, error) {
		return sqlite.OpenChannel(ctx, path)
	})
	b.Logf("fixture: %s built in %v", storetest.HistoryFixture(), time.Since(start).Round(time.Millisecond))

	offset := mustOpenOffsetReader(b, path)
	storetest.BenchmarkHistoryKeysetOffset(b, s, offset.page)
}

// offsetReader reads history pages with OFFSET, on its own connections
// opened as the store opens its readers (read-only, the same cache).
type offsetReader struct{ db *sql.DB }

func mustOpenOffsetReader(tb testing.TB, path string) *offsetReader {
	tb.Helper()
	pragmas := url.Values{}
	for _, p := range []string{"journal_mode(WAL)", "busy_timeout(10000)", "cache_size(-131072)", "temp_store(MEMORY)"} {
		pragmas.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+pragmas.Encode()+"&mode=ro")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return &offsetReader{db: db}
}

func (r *offsetReader) page(ctx context.Context, account string, offset int64, limit int) ([]banksync.Entry, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT account_id, seq, entry_id, kind, amount, balance_after,
			counterparty, transfer_id, external_ref, memo, booked_at
		FROM channel_history WHERE account_id = ? ORDER BY seq DESC LIMIT ? OFFSET ?`, account, limit, offset)
	if err != nil {
		return nil, fmt.Errorf("offset page of %s at %d: %w", account, offset, err)
	}
	defer rows.Close()
	var es []banksync.Entry
	for rows.Next() {
		var e banksync.Entry
		var kind string
		var booked int64
		if err := rows.Scan(&e.AccountID, &e.Seq, &e.Position, &kind, &e.Amount, &e.BalanceAfter,
			&e.Counterparty, &e.TransferID, &e.ExternalRef, &e.Memo, &booked); err != nil {
			return nil, fmt.Errorf("offset page of %s at %d: %w", account, offset, err)
		}
		e.Kind, e.BookedAt = banksync.EntryKind(kind), time.UnixMicro(booked).UTC()
		es = append(es, e)
	}
	return es, rows.Err()
}
