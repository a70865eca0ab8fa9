package postgres

import (
	"context"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// TestDSNEnv names the environment variable holding the DSN of a PostgreSQL
// server tests may create and drop databases on.
const TestDSNEnv = "BANKSYNC_TEST_POSTGRES"

// testDatabaseTimeout bounds creating or dropping a test database, so a
// wedged server fails the test instead of hanging it.
const testDatabaseTimeout = 30 * time.Second

// TestDatabase returns the DSN of a fresh, empty database on the server named
// by BANKSYNC_TEST_POSTGRES and drops it when tb ends. Without that variable it
// skips tb, or fails it under CI so a misconfigured pipeline cannot pass by
// skipping every PostgreSQL test. It lives outside _test.go files because
// other packages' tests (the store conformance suite) call it.
func TestDatabase(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv(TestDSNEnv)
	if dsn == "" {
		if os.Getenv("CI") != "" {
			tb.Fatal(TestDSNEnv + " must be set in CI")
		}
		tb.Skip(TestDSNEnv + " is not set: skipping PostgreSQL tests (set it to a DSN whose user may CREATE DATABASE)")
	}

	ctx, cancel := context.WithTimeout(context.Background(), testDatabaseTimeout)
	defer cancel()
	fresh, drop, err := CreateScratchDatabase(ctx, dsn, "banksync_test")
	if err != nil {
		tb.Fatalf("%s: %v", TestDSNEnv, err)
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
