// Package pgtest gives tests a fresh PostgreSQL database on the server
// BANKSYNC_TEST_POSTGRES names.
package pgtest

import (
	"context"
	"os"
	"testing"
	"time"

	"banksync/postgres"
)

// DSNEnv names the environment variable holding the DSN of a PostgreSQL
// server tests may create and drop databases on.
const DSNEnv = "BANKSYNC_TEST_POSTGRES"

// testDatabaseTimeout bounds creating or dropping a test database, so a
// wedged server fails the test instead of hanging it.
const testDatabaseTimeout = 30 * time.Second

// Database returns the DSN of a fresh, empty database on the server named
// by BANKSYNC_TEST_POSTGRES and drops it when tb ends. Without that variable it
// skips tb, or fails it under CI so a misconfigured pipeline cannot pass by
// skipping every PostgreSQL test. It lives outside _test.go files because
// other packages' tests (the store conformance suite) call it, and
// outside package postgres so that the binary does not link testing.
func Database(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv(DSNEnv)
	if dsn == "" {
		if os.Getenv("CI") != "" {
			tb.Fatal(DSNEnv + " must be set in CI")
		}
		tb.Skip(DSNEnv + " is not set: skipping PostgreSQL tests (set it to a DSN whose user may CREATE DATABASE)")
	}

	ctx, cancel := context.WithTimeout(context.Background(), testDatabaseTimeout)
	defer cancel()
	fresh, drop, err := postgres.CreateScratchDatabase(ctx, dsn, "banksync_test")
	if err != nil {
		tb.Fatalf("%s: %v", DSNEnv, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testDatabaseTimeout)
		defer cancel()
		if err := drop(ctx); err != nil {
			tb.Errorf("drop test database: %v", err)
		}
	})
	return fresh
}
