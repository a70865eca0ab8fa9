package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations
var migrationsFS embed.FS

// migrateLockKey serialises migrations of every store sharing a database, so
// two processes starting at once never apply the same migration twice. It is
// a transaction-level lock: it ends with each migration's transaction.
const migrateLockKey int64 = 0x62616e6b6d696772 // "bankmigr"

type migration struct {
	version int
	name    string // set/file, e.g. ledger/001_init.sql: its key in schema_migrations
	sql     string
}

// loadMigrations reads migrations/<set> of migrationsFS: files named
// NNN_what.sql, applied in version order. Versions must be unique and
// positive so a typo in a file name cannot silently skip or reorder a
// migration.
func loadMigrations(set string) ([]migration, error) {
	dir := path.Join("migrations", set)
	files, err := fs.ReadDir(migrationsFS, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations %s: %w", dir, err)
	}
	var ms []migration
	seen := make(map[int]string)
	for _, f := range files {
		if f.IsDir() || !strings.HasSuffix(f.Name(), ".sql") {
			continue
		}
		prefix, _, ok := strings.Cut(f.Name(), "_")
		v, err := strconv.Atoi(prefix)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s/%s: name must start with a positive version and an underscore", dir, f.Name())
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %s and %s in %s share version %d", other, f.Name(), dir, v)
		}
		seen[v] = f.Name()
		b, err := fs.ReadFile(migrationsFS, path.Join(dir, f.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %s/%s: %w", dir, f.Name(), err)
		}
		ms = append(ms, migration{version: v, name: path.Join(set, f.Name()), sql: string(b)})
	}
	if len(ms) == 0 {
		return nil, fmt.Errorf("no migrations in %s", dir)
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// migrate applies the migrations of set (a directory under migrations) not
// yet recorded in schema_migrations, each in its own transaction so a failed
// migration leaves the schema at the previous version rather than
// half-applied. Rows are keyed by set and file name, so the sets of several
// stores sharing a database never mistake each other's versions for theirs.
func migrate(ctx context.Context, pool *pgxpool.Pool, set string) error {
	ms, err := loadMigrations(set)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if err := applyMigration(ctx, pool, m); err != nil {
			return fmt.Errorf("migration %s: %w", m.name, err)
		}
	}
	return nil
}

func applyMigration(ctx context.Context, pool *pgxpool.Pool, m migration) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrateLockKey); err != nil {
			return fmt.Errorf("take migration lock: %w", err)
		}
		// Created under the lock: CREATE TABLE IF NOT EXISTS is not safe
		// against a concurrent twin.
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			name       text PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		var applied bool
		err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE name = $1)", m.name).Scan(&applied)
		if err != nil {
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		if applied {
			return nil
		}
		// Without arguments pgx uses the simple protocol, which accepts a
		// file of several statements.
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return fmt.Errorf("apply: %w", err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (name, applied_at) VALUES ($1, now())", m.name); err != nil {
			return fmt.Errorf("record in schema_migrations: %w", err)
		}
		return nil
	})
}

// migrations returns the names of set's migrations this binary embeds and
// those the database has recorded, for the readiness check.
func migrations(ctx context.Context, pool *pgxpool.Pool, set string) (known, applied []string, err error) {
	ms, err := loadMigrations(set)
	if err != nil {
		return nil, nil, err
	}
	for _, m := range ms {
		known = append(known, m.name)
	}
	rows, err := pool.Query(ctx, "SELECT name FROM schema_migrations WHERE name LIKE $1 ORDER BY name", set+"/%")
	if err != nil {
		return nil, nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	if applied, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return nil, nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	return known, applied, nil
}
