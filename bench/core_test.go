package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"banksync/internal/testkit"
)

// TestCoreSaysWhatItSetsUp: bench core, in miniature, says it sets up each
// run (the baseline's too) before its results, and then what it measures
// and verifies.
func TestCoreSaysWhatItSetsUp(t *testing.T) {
	var out testkit.SyncBuffer
	results, err := Core(context.Background(), CoreConfig{DB: "sqlite", Clients: 2, Duration: 50 * time.Millisecond, Accounts: 20,
		Baseline: true, Out: &out, Progress: &out})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 3 {
		t.Fatalf("%d results, want 3", len(results))
	}
	got := out.String()
	prev := -1
	for _, w := range []string{
		"bench core: http group-commit: setting up a fresh sqlite database and core with 20 funded accounts\n",
		"bench core: http group-commit: measuring for 50ms with 2 clients\n",
		"bench core: http group-commit: verifying the ledger\n",
		"http group-commit  ",
		"bench core: in-process group-commit: setting up",
		"in-process group-commit  ",
		"bench core: http baseline (1 tx/request): setting up a fresh sqlite database and core with 20 funded accounts, one transaction each\n",
		"http baseline (1 tx/request)  ",
	} {
		i := strings.Index(got, w)
		if i < 0 {
			t.Fatalf("output lacks %q:\n%s", w, got)
		}
		if i < prev {
			t.Fatalf("%q comes before the line above it in the list, want after:\n%s", w, got)
		}
		prev = i
	}
}
