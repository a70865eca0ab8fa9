// Package bench measures banksync as a bank would size it: core's write
// path (Core) and the seed's payday, a million deposits at once (Payday).
// Each run builds its own core and channel with package node, on fresh
// databases, and checks the histories against core's ledger before it
// reports a figure. `banksync bench` runs them; the SQLite driver study
// beside it (sqlitedriver/) is a module of its own.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"banksync"
	"banksync/ledger"
	"banksync/postgres"
)

// DBKind names a benchmark's database: "postgres" for a postgres:// URL,
// else "sqlite".
func DBKind(db string) string {
	if strings.HasPrefix(db, "postgres") {
		return "postgres"
	}
	return "sqlite"
}

// scratchDB makes a fresh database for one run: a file named name in a
// temporary directory for "sqlite", else a scratch database beside the one
// the postgres:// URL db names. drop removes it.
func scratchDB(ctx context.Context, db, name string) (dsn string, drop func(), err error) {
	return copyScratchDB(ctx, db, "", name)
}

// copyScratchDB is scratchDB of a copy of the database template made by
// scratchDB ("" for an empty one), which nothing may have open meanwhile:
// a copy of its files for "sqlite", CREATE DATABASE … TEMPLATE for
// PostgreSQL.
func copyScratchDB(ctx context.Context, db, template, name string) (dsn string, drop func(), err error) {
	if DBKind(db) == "sqlite" {
		dir, err := os.MkdirTemp("", "banksync-bench-")
		if err != nil {
			return "", nil, err
		}
		drop := func() { os.RemoveAll(dir) }
		path := filepath.Join(dir, name)
		if template != "" {
			if err := copySQLite(strings.TrimPrefix(template, "sqlite:"), path); err != nil {
				drop()
				return "", nil, err
			}
		}
		return "sqlite:" + path, drop, nil
	}
	var fresh string
	var dropDB func(context.Context) error
	if template == "" {
		fresh, dropDB, err = postgres.CreateScratchDatabase(ctx, db, "banksync_bench")
	} else {
		fresh, dropDB, err = postgres.CopyScratchDatabase(ctx, db, template, "banksync_bench")
	}
	if err != nil {
		return "", nil, err
	}
	return fresh, func() { dropDB(context.Background()) }, nil
}

// copySQLite copies the closed SQLite database at from, and its write-ahead
// log if one was left, to to.
func copySQLite(from, to string) error {
	for _, suffix := range []string{"", "-wal"} {
		src, err := os.Open(from + suffix)
		if errors.Is(err, os.ErrNotExist) && suffix != "" {
			continue
		}
		if err != nil {
			return err
		}
		defer src.Close()
		dst, err := os.Create(to + suffix)
		if err != nil {
			return err
		}
		if _, err := io.Copy(dst, src); err != nil {
			dst.Close()
			return fmt.Errorf("copy %s: %w", from+suffix, err)
		}
		if err := dst.Close(); err != nil {
			return err
		}
	}
	return nil
}

// createAccounts opens n accounts named prefix-000000… at core, owned by
// prefix, each with a deposit of fund when fund is positive, counting
// them in opened (if set) as they are ready.
func createAccounts(ctx context.Context, l *ledger.Ledger, prefix string, n int, fund int64, opened *atomic.Int64) ([]string, error) {
	const workers = 64
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%06d", prefix, i)
	}
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n && errs[w] == nil; i += workers {
				if _, _, errs[w] = l.CreateAccount(ctx, ids[i], prefix); errs[w] == nil && fund > 0 {
					_, errs[w] = l.Deposit(ctx, banksync.DepositRequest{ExternalRef: "seed-" + ids[i], AccountID: ids[i], Amount: fund, Sender: prefix})
				}
				if errs[w] == nil && opened != nil {
					opened.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return ids, errors.Join(errs...)
}

// percentileMs is the p-th percentile of sorted, in milliseconds.
func percentileMs(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return float64(sorted[min(len(sorted)-1, int(p*float64(len(sorted))))].Microseconds()) / 1000
}

// profileCPU writes a CPU profile to w, if set, until stop, which may be
// called more than once.
func profileCPU(w io.Writer) (stop func(), err error) {
	if w == nil {
		return func() {}, nil
	}
	if err := pprof.StartCPUProfile(w); err != nil {
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(pprof.StopCPUProfile) }, nil
}
