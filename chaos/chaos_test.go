package chaos_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"banksync/chaos"
	"banksync/internal/testkit"
)

// A short chaos pass over two seeds: every fault kind injected at least
// once, every promise checked. A violation fails CI.
func TestChaosKeepsThePromises(t *testing.T) {
	for _, seed := range []uint64{1, 2} {
		// Broker faults more often than by default, so a short run surely
		// meets them.
		rep, err := chaos.Run(t.Context(), chaos.Config{Seed: seed, Duration: 8 * time.Second, Faults: chaos.Faults{Broker: 0.05}})
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		b, _ := json.Marshal(rep)
		t.Logf("seed %d: %s", seed, b)
		for _, kind := range []string{"request_lost", "response_lost", "request_held", "late_delivery", "core_slow",
			"core_restart", "history_write_failed", "history_outage", "consumer_restart", "broker_produce_failed",
			"broker_fetch_failed", "duplicate_events", "crash_during_stall", "event_undecodable", "history_read_failed_outage", "outage_at_the_end"} {
			if rep.Faults[kind] == 0 {
				t.Errorf("seed %d: no %s fault was injected: the run proved less than it claims", seed, kind)
			}
		}
		if !rep.OK() {
			t.Errorf("seed %d broke a promise: %v\nreplay: go run ./cmd/banksync chaos --seed %d --duration 8s", seed, rep.Examples, seed)
		}
	}
}

// TestChaosSaysWhatItIsDoing: a run says each stage as it starts and,
// while the workload runs, how far it got every few seconds, so a run of
// minutes is never silent.
func TestChaosSaysWhatItIsDoing(t *testing.T) {
	var out testkit.SyncBuffer
	if _, err := chaos.Run(t.Context(), chaos.Config{Seed: 3, Duration: 4 * time.Second, Progress: &out}); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	prev := -1
	for _, w := range []string{
		"chaos: starting core, the Kafka cluster and 2 channels\n",
		"chaos: opening 16 accounts for 8 customers\n",
		"chaos: running the workload under faults for 4s\n",
		"chaos: still running the workload under faults for 4s: ",
		"chaos: the last faults: a crash while the history stalls, an outage at the end\n",
		"chaos: faults off; waiting for every history to settle (up to 1m0s) and checking every promise\n",
	} {
		i := strings.Index(got, w)
		if i < 0 || i < prev {
			t.Fatalf("progress lacks %q after the line above it in the list:\n%s", w, got)
		}
		prev = i
	}
}
