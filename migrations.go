package banksync

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Migrations lists a store's schema migrations: those this binary embeds
// and those its database has recorded as applied. Every store has one.
type Migrations func(ctx context.Context) (known, applied []string, err error)

// Check fails if the database lacks a migration this binary needs.
// Migrations it does not know are not a failure: during a rolling upgrade
// the first new replica migrates the database while old ones still serve,
// which our additive migrations allow.
func (list Migrations) Check(ctx context.Context) error {
	known, applied, err := list(ctx)
	if err != nil {
		return err
	}
	var missing []string
	for _, name := range known {
		if !slices.Contains(applied, name) {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("migrations not applied: %s", strings.Join(missing, ", "))
	}
	return nil
}
