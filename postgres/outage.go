package postgres

import (
	"context"
	"net/url"
	"strings"

	"github.com/jackc/pgx/v5"
)

// withDatabase returns dsn pointing at database name, in either DSN form.
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", err
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	// In keyword/value form a later keyword overrides an earlier one.
	return dsn + " dbname=" + name, nil
}

// RefuseConnections makes the database of dsn refuse new connections and
// ends the sessions it has (refuse true), or lets connections in again
// (refuse false): an outage of that one database as its clients see it,
// for failure tests. It connects to the server's postgres database to do
// so, as the user of dsn (who must own the database or be a superuser).
func RefuseConnections(ctx context.Context, dsn string, refuse bool) error {
	name, admin, err := administered(dsn)
	if err != nil {
		return err
	}
	db := pgx.Identifier{name}.Sanitize()
	if !refuse {
		return Exec(ctx, admin, "ALTER DATABASE "+db+" WITH ALLOW_CONNECTIONS true")
	}
	if err := Exec(ctx, admin, "ALTER DATABASE "+db+" WITH ALLOW_CONNECTIONS false"); err != nil {
		return err
	}
	return TerminateSessions(ctx, dsn)
}

// TerminateSessions ends every session on the database of dsn (but its
// own), as an administrator or a failover would: its clients see their
// connections cut mid-use. It connects to the server's postgres database,
// as the user of dsn.
func TerminateSessions(ctx context.Context, dsn string) error {
	name, admin, err := administered(dsn)
	if err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", name)
	return err
}

// administered returns the name of dsn's database and the DSN of its
// server's postgres database, where it is administered from.
func administered(dsn string) (name, admin string, err error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return "", "", err
	}
	admin, err = withDatabase(dsn, "postgres")
	return cfg.Database, admin, err
}
