// Package sqlite holds the embedded stores of banksync on SQLite, through
// the pure-Go modernc.org/sqlite driver. Each database is opened with two
// pools: one connection for the single writer and several for readers, which
// WAL mode lets run beside the writer.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

//go:embed migrations
var migrations embed.FS

const readersMax = 8

// busyTimeout is how long a connection waits for SQLite's write lock.
const busyTimeout = 10 * time.Second

// The WAL is copied back into the database mostly by a background
// checkpointer, not by the committing writer: SQLite's automatic checkpoint
// runs inside the commit that crosses its threshold and stalls every
// request queued behind it for as long as it takes to write and sync the
// pages. Under a steady load the background's passive checkpoints copy
// everything between commits, the writer starts the WAL over, and commits
// never wait. Under a burst of back-to-back commits a passive checkpoint
// never catches the writer, so the WAL cannot start over; there the
// writer's own automatic checkpoint, at a threshold the steady state never
// reaches, finishes the copy (most of it done in the background already)
// so the next commit starts the WAL over.
const (
	checkpointInterval = 200 * time.Millisecond
	// walAutocheckpoint is the writer's own checkpoint threshold, in
	// pages (of 4 KiB).
	walAutocheckpoint = 40_000
	// checkpointBusyTimeout bounds how long a checkpoint waits for a lock.
	checkpointBusyTimeout = time.Second
	// journalSizeLimit is what a WAL file is cut back to, in bytes, after
	// the WAL started over: above what the writer's checkpoint lets the
	// WAL reach, so only a file a burst grew past that bound is cut. A
	// smaller limit cuts the file at every start-over and the writer pays
	// to grow it again: at 64 MiB, 13% fewer transfers per second and twice
	// the p99.9 in bench core (docs/BENCHMARKS.md).
	journalSizeLimit = walAutocheckpoint * 4096 * 5 / 4
	// checkpointWarnEvery spaces out the warnings of a failing checkpointer.
	checkpointWarnEvery = time.Minute
)

// db is a SQLite database opened for one writer and many readers, with a
// connection of its own for checkpoints.
type db struct {
	path  string
	write *sql.DB
	read  *sql.DB
	ckpt  *sql.DB

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

func openDB(ctx context.Context, path string) (*db, error) {
	// FULL sync: a committed batch survives power loss, which a ledger owes.
	pragmas := func(busyTimeout time.Duration) string {
		v := url.Values{}
		for _, p := range []string{"journal_mode(WAL)", "synchronous(FULL)", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()),
			"foreign_keys(on)", "cache_size(-131072)", fmt.Sprintf("wal_autocheckpoint(%d)", walAutocheckpoint),
			fmt.Sprintf("journal_size_limit(%d)", journalSizeLimit), "temp_store(MEMORY)"} {
			v.Add("_pragma", p)
		}
		return v.Encode()
	}
	w, err := sql.Open("sqlite", "file:"+path+"?"+pragmas(busyTimeout)+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", "file:"+path+"?"+pragmas(busyTimeout)+"&mode=ro")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open sqlite %s for reading: %w", path, err)
	}
	r.SetMaxOpenConns(readersMax)
	r.SetMaxIdleConns(readersMax)
	c, err := sql.Open("sqlite", "file:"+path+"?"+pragmas(checkpointBusyTimeout))
	if err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("open sqlite %s for checkpoints: %w", path, err)
	}
	c.SetMaxOpenConns(1)
	c.SetMaxIdleConns(1)
	c.SetConnMaxLifetime(0)
	d := &db{path: path, write: w, read: r, ckpt: c, stop: make(chan struct{}), done: make(chan struct{})}
	go d.checkpoints()
	return d, nil
}

// close stops the checkpointer and closes the pools; it is safe to call
// more than once.
func (d *db) close() error {
	d.closeOnce.Do(func() {
		close(d.stop)
		<-d.done
		d.closeErr = errors.Join(d.read.Close(), d.write.Close(), d.ckpt.Close())
	})
	return d.closeErr
}

// checkpoints copies committed pages from the WAL into the database in the
// background. A passive checkpoint never blocks the writer. Failures are
// retried at the next tick and reported at most once a minute; meanwhile
// the writer's automatic checkpoint bounds the WAL.
func (d *db) checkpoints() {
	defer close(d.done)
	tick := time.NewTicker(checkpointInterval)
	defer tick.Stop()
	var lastWarn time.Time
	for {
		select {
		case <-d.stop:
			return
		case <-tick.C:
		}
		var busy, frames, copied int
		err := d.ckpt.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &frames, &copied)
		if err != nil && time.Since(lastWarn) >= checkpointWarnEvery {
			lastWarn = time.Now()
			slog.Warn("sqlite checkpoint failed; retrying", "db", d.path, "err", err)
		}
	}
}

// migrate applies the embedded migrations under migrations/<set> that the
// database has not seen, each in its own transaction, in version order.
func (d *db) migrate(ctx context.Context, set string) error {
	if _, err := d.write.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	files, names, err := embeddedMigrations(set)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for i, f := range files {
		if err := d.applyMigration(ctx, f, names[i]); err != nil {
			return err
		}
	}
	return nil
}

// embeddedMigrations returns set's migration files in version order, and
// the name each is recorded under in schema_migrations.
func embeddedMigrations(set string) (files, names []string, err error) {
	dir := "migrations/" + set
	if files, err = fs.Glob(migrations, dir+"/*.sql"); err != nil {
		return nil, nil, err
	}
	sort.Strings(files)
	for _, f := range files {
		names = append(names, set+"/"+strings.TrimPrefix(f, dir+"/"))
	}
	return files, names, nil
}

// migrations returns the names of set's migrations this binary embeds and
// those the database has recorded, for the readiness check.
func (d *db) migrations(ctx context.Context, set string) (known, applied []string, err error) {
	if _, known, err = embeddedMigrations(set); err != nil {
		return nil, nil, err
	}
	rows, err := d.read.QueryContext(ctx, `SELECT name FROM schema_migrations WHERE name LIKE ? ORDER BY name`, set+"/%")
	if err != nil {
		return nil, nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, nil, fmt.Errorf("read schema_migrations: %w", err)
		}
		applied = append(applied, name)
	}
	return known, applied, rows.Err()
}

func (d *db) applyMigration(ctx context.Context, file, name string) error {
	body, err := migrations.ReadFile(file)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", name, err)
	}
	tx, err := d.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate %s: %w", name, err)
	}
	defer tx.Rollback()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE name = ?`, name).Scan(&n); err != nil {
		return fmt.Errorf("migrate %s: %w", name, err)
	}
	if n > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, string(body)); err != nil {
		return fmt.Errorf("migrate %s: %w", name, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)`,
		name, time.Now().UnixMicro()); err != nil {
		return fmt.Errorf("migrate %s: %w", name, err)
	}
	return tx.Commit()
}

// placeholders returns "(?,?,?)" for n columns.
func placeholders(n int) string {
	return "(" + strings.TrimSuffix(strings.Repeat("?,", n), ",") + ")"
}

// inList returns "?,?,…" for n values and the values as []any.
func inList(ids []string) (string, []any) {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return strings.TrimSuffix(strings.Repeat("?,", len(ids)), ","), args
}

func micros(t time.Time) int64 { return t.UnixMicro() }

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// rowsPerInsertMax keeps a multi-row INSERT well under SQLite's limit of
// 32766 bound variables.
const rowsPerInsertMax = 256

// inserter runs multi-row INSERTs into one table, which cost one statement
// per chunk instead of one per row. Chunks have power-of-two sizes, so a few
// statements prepared once at open serve every batch without parsing SQL.
type inserter struct {
	ncols int
	stmts map[int]*sql.Stmt // rows per statement -> statement
}

// newInserter prepares "prefix VALUES (…), … suffix" statements; suffix may
// be an ON CONFLICT clause.
func newInserter(ctx context.Context, db *sql.DB, prefix, suffix string, ncols int) (*inserter, error) {
	in := &inserter{ncols: ncols, stmts: map[int]*sql.Stmt{}}
	one := placeholders(ncols)
	for size := rowsPerInsertMax; size >= 1; size /= 2 {
		q := prefix + " VALUES " + strings.TrimSuffix(strings.Repeat(one+",", size), ",") + " " + suffix
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			in.close()
			return nil, fmt.Errorf("prepare %s: %w", prefix, err)
		}
		in.stmts[size] = st
	}
	return in, nil
}

func (in *inserter) close() {
	for _, st := range in.stmts {
		st.Close()
	}
}

// insert adds n rows, row(i) giving the values of row i.
func (in *inserter) insert(ctx context.Context, tx *sql.Tx, n int, row func(i int) []any) error {
	args := make([]any, 0, min(n, rowsPerInsertMax)*in.ncols)
	for start := 0; start < n; {
		size := rowsPerInsertMax
		for size > n-start {
			size /= 2
		}
		args = args[:0]
		for i := start; i < start+size; i++ {
			args = append(args, row(i)...)
		}
		if _, err := tx.StmtContext(ctx, in.stmts[size]).ExecContext(ctx, args...); err != nil {
			return err
		}
		start += size
	}
	return nil
}
