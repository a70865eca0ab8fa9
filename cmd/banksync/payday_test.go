package main_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// runPayday runs a small `banksync bench payday --json` and returns its
// last line, decoded, and all it printed.
func runPayday(t *testing.T, args ...string) (map[string]any, string) {
	t.Helper()
	out, err := exec.Command(binary, append([]string{"bench", "payday", "--json"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("bench payday: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var res map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("last line is not JSON: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	return res, string(out)
}

// The payday benchmark in miniature: every phase runs, every account's
// history is verified against core's, and the JSON line carries the
// figures docs/BENCHMARKS.md quotes, the drain by a channel process of its
// own included.
func TestBenchPaydayBurst(t *testing.T) {
	res, out := runPayday(t, "--deposits", "3000", "--accounts", "200", "--baseline", "300", "--batch", "500", "--channel-process")
	if res["verified"] != true || res["events"] != 3000.0 {
		t.Fatalf("result = %v, want 3000 events verified", res)
	}
	for _, k := range []string{"seconds", "events_per_s", "core_deposits_per_s", "combined_seconds", "p99_ms", "baseline_events_per_s", "kafka_only_records_per_s",
		"process_events_per_s", "process_rss_peak_mib", "page_newest_p99_ms", "page_deep_p99_ms"} {
		if v, ok := res[k].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v, want a positive figure", k, res[k])
		}
	}
	// Each long step says, as it starts, what it does.
	for _, w := range []string{
		"bench payday: setup (burst): opening 200 accounts at core",
		"bench payday: phase 1: core books 3000 deposits from files of 500",
		"bench payday: kafka alone: reading 3000 records",
		"bench payday: phase 2: the consumer drains 3000 events into the history",
		"bench payday: verifying:",
		"bench payday: phase 2 again: a `banksync channel` process drains",
		"bench payday: baseline: the naive consumer applies 300 events",
		"bench payday: combined: core books 3000 deposits while the consumer drains them",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("no progress line %q:\n%s", w, out)
		}
	}
}

func TestBenchPaydayRate(t *testing.T) {
	res, out := runPayday(t, "--accounts", "100", "--rate", "300", "--duration", "2s")
	if !strings.Contains(out, "bench payday: steady rate: offering 300 deposits/s for 2s\n") {
		t.Errorf("no progress line for the steady rate:\n%s", out)
	}
	if res["verified"] != true || res["events"] != 600.0 || res["mode"] != "rate" {
		t.Fatalf("result = %v, want 600 deposits at a steady rate, verified", res)
	}
	if p99, ok := res["p99_ms"].(float64); !ok || p99 <= 0 {
		t.Errorf("p99_ms = %v, want a positive latency", res["p99_ms"])
	}
}
