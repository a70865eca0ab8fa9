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
	return createScratch(ctx, dsn, prefix, "")
}

// CopyScratchDatabase is CreateScratchDatabase of a copy of the database of
// template (CREATE DATABASE … TEMPLATE), on the same server; no session may
// be using template meanwhile.
func CopyScratchDatabase(ctx context.Context, dsn, template, prefix string) (string, func(context.Context) error, error) {
	cfg, err := pgx.ParseConfig(template)
	if err != nil {
		return "", nil, fmt.Errorf("template database dsn: %w", err)
	}
	return createScratch(ctx, dsn, prefix, cfg.Database)
}

func createScratch(ctx context.Context, dsn, prefix, template string) (string, func(context.Context) error, error) {
	var suffix [8]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return "", nil, fmt.Errorf("name scratch database: %w", err)
	}
	name := prefix + "_" + hex.EncodeToString(suffix[:])
	fresh, err := withDatabase(dsn, name)
	if err != nil {
		return "", nil, fmt.Errorf("scratch database dsn: %w", err)
	}
	create := "CREATE DATABASE " + pgx.Identifier{name}.Sanitize()
	if template != "" {
		create += " TEMPLATE " + pgx.Identifier{template}.Sanitize()
	}
	if err := Exec(ctx, dsn, create); err != nil {
		return "", nil, fmt.Errorf("create scratch database: %w", err)
	}
	drop := func(ctx context.Context) error {
		// FORCE ends sessions left open, which would otherwise block the drop.
		return Exec(ctx, dsn, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	}
	return fresh, drop, nil
}

// Vacuum runs VACUUM ANALYZE on the database of dsn: after a bulk load, the
// upkeep a table years old has long had.
func Vacuum(ctx context.Context, dsn string) error {
	if err := Exec(ctx, dsn, "VACUUM ANALYZE"); err != nil {
		return fmt.Errorf("vacuum: %w", err)
	}
	return nil
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
