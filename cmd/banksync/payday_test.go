package main_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// runPayday runs a small `banksync bench payday --json` and returns its
// last line, decoded.
func runPayday(t *testing.T, args ...string) map[string]any {
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
	return res
}

// The payday benchmark in miniature: every phase runs, every account's
// history is verified against core's, and the JSON line carries the
// figures docs/BENCHMARKS.md quotes, the drain by a channel process of its
// own included.
func TestBenchPaydayBurst(t *testing.T) {
	res := runPayday(t, "--deposits", "3000", "--accounts", "200", "--baseline", "300", "--batch", "500", "--channel-process")
	if res["verified"] != true || res["events"] != 3000.0 {
		t.Fatalf("result = %v, want 3000 events verified", res)
	}
	for _, k := range []string{"seconds", "events_per_s", "core_deposits_per_s", "combined_seconds", "p99_ms", "baseline_events_per_s", "kafka_only_records_per_s",
		"process_events_per_s", "process_rss_peak_mib", "page_newest_p99_ms", "page_deep_p99_ms"} {
		if v, ok := res[k].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v, want a positive figure", k, res[k])
		}
	}
}

func TestBenchPaydayRate(t *testing.T) {
	res := runPayday(t, "--accounts", "100", "--rate", "300", "--duration", "2s")
	if res["verified"] != true || res["events"] != 600.0 || res["mode"] != "rate" {
		t.Fatalf("result = %v, want 600 deposits at a steady rate, verified", res)
	}
	if p99, ok := res["p99_ms"].(float64); !ok || p99 <= 0 {
		t.Errorf("p99_ms = %v, want a positive latency", res["p99_ms"])
	}
}
