package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// CreateScratchDatabase creates an empty database with a random name prefix_…
// on the server of dsn, for tests and benchmarks. It returns the new
// database's DSN and a function that drops it.
func CreateScratchDatabase(ctx context.Context, dsn, prefix string) (string, func(context.Context) error, error) {
	var suffix [8]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return "", nil, fmt.Errorf("name scratch database: %w", err)
	}
	name := prefix + "_" + hex.EncodeToString(suffix[:])
	fresh, err := withDatabase(dsn, name)
	if err != nil {
		return "", nil, fmt.Errorf("scratch database dsn: %w", err)
	}
	if err := Exec(ctx, dsn, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, fmt.Errorf("create scratch database: %w", err)
	}
	drop := func(ctx context.Context) error {
		// FORCE ends sessions left open, which would otherwise block the drop.
		return Exec(ctx, dsn, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	}
	return fresh, drop, nil
}

// Exec runs one statement on the database of dsn, on a connection of its
// own, for administration and tests: creating a database, ending sessions.
func Exec(ctx context.Context, dsn, sql string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}
