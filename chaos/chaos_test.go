package chaos_test

import (
	"encoding/json"
	"testing"
	"time"

	"banksync/chaos"
)

// A short chaos pass over several seeds: every fault kind on, every promise
// checked. A violation fails CI.
func TestChaosKeepsThePromises(t *testing.T) {
	for _, seed := range []uint64{1, 2} {
		rep, err := chaos.Run(t.Context(), chaos.Config{Seed: seed, Duration: 8 * time.Second})
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		b, _ := json.Marshal(rep)
		t.Logf("seed %d: %s", seed, b)
		if !rep.OK() {
			t.Errorf("seed %d broke a promise: %v\nreplay: go run ./cmd/banksync chaos --seed %d --duration 8s", seed, rep.Examples, seed)
		}
	}
}
