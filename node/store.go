package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"banksync"
	"banksync/channel"
	bhttp "banksync/http"
	"banksync/ledger"
	"banksync/postgres"
	"banksync/sqlite"
)

// migrated is a store that can list its schema migrations (all of ours),
// for the readiness check.
type migrated interface {
	Migrations(ctx context.Context) (known, applied []string, err error)
}

var _ = []migrated{(*sqlite.LedgerStore)(nil), (*sqlite.ChannelStore)(nil), (*postgres.LedgerStore)(nil), (*postgres.ChannelStore)(nil)}

// readiness is the checks /readyz runs for a service on store: database,
// which asks the store something cheap, and the store's migrations.
func readiness(store any, database bhttp.Check) map[string]bhttp.Check {
	checks := map[string]bhttp.Check{"database": database}
	if m, ok := store.(migrated); ok {
		checks["migrations"] = banksync.Migrations(m.Migrations).Check
	}
	return checks
}

// OpenLedgerStore opens the ledger database named by dsn: sqlite:PATH or
// postgres://….
func OpenLedgerStore(ctx context.Context, dsn string) (ledger.Store, error) {
	return openStore("ledger", dsn,
		func(path string) (ledger.Store, error) { return sqlite.OpenLedger(ctx, path) },
		func() (ledger.Store, error) { return postgres.OpenLedger(ctx, dsn) })
}

// OpenChannelStore opens the channel database named by dsn: sqlite:PATH or
// postgres://…; log, if not nil, hears the PostgreSQL store's listener.
func OpenChannelStore(ctx context.Context, dsn string, log *slog.Logger) (channel.Store, error) {
	return openStore("channel", dsn,
		func(path string) (channel.Store, error) { return sqlite.OpenChannel(ctx, path) },
		func() (channel.Store, error) { return postgres.OpenChannel(ctx, dsn, postgres.WithLogger(log)) })
}

// openStore opens the what database named by dsn with the SQLite or the
// PostgreSQL opener. On error the store is S's zero value — a nil
// interface — never the opener's: the nil *LedgerStore of a failed open,
// returned as a ledger.Store, is an interface that is not nil and whose
// Close dereferences nil. The error names the database, without its
// password.
func openStore[S any](what, dsn string, onSQLite func(path string) (S, error), onPostgres func() (S, error)) (S, error) {
	var zero S
	path, err := sqlitePath(dsn)
	if err != nil {
		return zero, err
	}
	var s S
	if path != "" {
		s, err = onSQLite(path)
	} else {
		s, err = onPostgres()
	}
	if err != nil {
		return zero, fmt.Errorf("open %s database %s: %w", what, redactDSN(dsn), err)
	}
	return s, nil
}

// sqlitePath checks a database DSN, sqlite:PATH or postgres://…, and for
// SQLite returns the path, its directory made; for PostgreSQL it returns "".
func sqlitePath(dsn string) (string, error) {
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		path := strings.TrimPrefix(dsn, "sqlite:")
		if path == "" {
			return "", errors.New("sqlite DSN needs a path: sqlite:PATH")
		}
		return path, os.MkdirAll(filepath.Dir(path), 0o755)
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return "", nil
	}
	// Not echoed: a DSN of another form (host=… password=…) may hold a password.
	return "", errors.New("database must be sqlite:PATH or postgres://… (a keyword=value DSN is not taken)")
}

// redactDSN is dsn fit for an error message: a PostgreSQL URL without its
// password, in the user part or as a parameter.
func redactDSN(dsn string) string {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return dsn
	}
	u, err := url.Parse(dsn)
	if err != nil {
		// Unparsable, it may hold a password anywhere: name only the scheme.
		scheme, _, _ := strings.Cut(dsn, "://")
		return scheme + "://…"
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}
