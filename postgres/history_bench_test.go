package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"banksync"
	"banksync/channel"
	"banksync/postgres"
	"banksync/postgres/pgtest"
	"banksync/storetest"
)

// BenchmarkHistory reads one newest-first page of 20 at a uniformly random
// depth of an account with 1,000,000 history rows: Keyset through the
// store's History (seq < before), Offset the same page found the way we
// refuse to (ORDER BY seq DESC OFFSET n), on the same database in the same
// run. The fixture is built once, by the parent, for both; its scratch
// database is dropped when the parent ends.
func BenchmarkHistory(b *testing.B) {
	ctx := context.Background()
	dsn := pgtest.Database(b)
	start := time.Now()
	s := storetest.OpenHistoryFixture(b, func(ctx context.Context) (channel.Store, error) {
		return postgres.OpenChannel(ctx, dsn)
	})
	applied := time.Since(start)

	offset := mustOpenOffsetReader(b, dsn)
	// Fresh statistics and visibility map, as autovacuum would leave a
	// table that has been growing for a while.
	if _, err := offset.pool.Exec(ctx, `VACUUM ANALYZE channel_history`); err != nil {
		b.Fatal(err)
	}
	b.Logf("fixture: %s applied in %v, vacuumed by %v", storetest.HistoryFixture(),
		applied.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	storetest.BenchmarkHistoryKeysetOffset(b, s, offset.page)
}

// offsetReader reads history pages with OFFSET, on a pool of its own
// opened as the store opens its pool.
type offsetReader struct{ pool *pgxpool.Pool }

func mustOpenOffsetReader(tb testing.TB, dsn string) *offsetReader {
	tb.Helper()
	pool, err := pgxpool.New(context.Background(), dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return &offsetReader{pool: pool}
}

func (r *offsetReader) page(ctx context.Context, account string, offset int64, limit int) ([]banksync.Entry, error) {
	rows, _ := r.pool.Query(ctx, `SELECT account_id, seq, entry_id, kind, amount, balance_after,
			counterparty, transfer_id, external_ref, memo, booked_at
		FROM channel_history WHERE account_id = $1 ORDER BY seq DESC LIMIT $2 OFFSET $3`, account, limit, offset)
	es, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (banksync.Entry, error) {
		var e banksync.Entry
		err := row.Scan(&e.AccountID, &e.Seq, &e.Position, &e.Kind, &e.Amount, &e.BalanceAfter,
			&e.Counterparty, &e.TransferID, &e.ExternalRef, &e.Memo, &e.BookedAt)
		e.BookedAt = e.BookedAt.UTC()
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("offset page of %s at %d: %w", account, offset, err)
	}
	return es, nil
}
