package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"time"

	"banksync/chaos"
)

type chaosCommand struct{}

func (chaosCommand) Run(ctx context.Context, args []string) error {
	var cfg chaos.Config
	var seed int64
	var asJSON bool
	f := newFlags("chaos", `Runs core, an embedded Kafka-protocol cluster and channel instances in one
process under a workload and injected faults (lost requests and answers,
late delivery, slow core, core restarts, history database failures,
consumer crashes and rebalances, duplicate events, clock skew), then checks
every promise: at most once (P1), never stuck (P2), failed never executed
(P3), history equals the ledger (P4), history always a prefix (P5), money
conserved (P6). The same seed gives the same workload and fault schedule.
scripts/chaos-deployed runs the same workload and checks against separate
processes on PostgreSQL and Apache Kafka (docs/RELIABILITY.md).`)
	f.Int64(&seed, "seed", "BANKSYNC_CHAOS_SEED", 1, "seed of the workload and the fault schedule").within(math.MinInt64, math.MaxInt64)
	f.Duration(&cfg.Duration, "duration", "BANKSYNC_CHAOS_DURATION", 30*time.Second, "how long the workload and the faults run").within(waitMin, runDurationMax)
	f.Int(&cfg.Channels, "channels", "BANKSYNC_CHAOS_CHANNELS", 2, "channel instances sharing one history database and consumer group").within(1, chaosChannelsMax)
	f.Int(&cfg.Customers, "customers", "BANKSYNC_CHAOS_CUSTOMERS", 8, "concurrent customers").within(1, customersMax)
	f.Bool(&asJSON, "json", "BANKSYNC_CHAOS_JSON", false, "end with one JSON line of the report")
	if err := f.parse(args); err != nil {
		return err
	}
	cfg.Seed = uint64(seed)
	cfg.Progress = os.Stderr
	replay := fmt.Sprintf("banksync chaos --seed %d --duration %s --channels %d --customers %d", seed, cfg.Duration, cfg.Channels, cfg.Customers)
	fmt.Printf("banksync chaos: seed %d, %s, %d channels, %d customers, %s\n", seed, cfg.Duration, cfg.Channels, cfg.Customers, time.Now().UTC().Format(time.RFC3339))
	rep, err := chaos.Run(ctx, cfg)
	if err != nil {
		return err
	}
	printCounts := func(title string, m map[string]int64) {
		fmt.Printf("%s:\n", title)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			fmt.Printf("  %-32s %8d\n", k, m[k])
		}
	}
	printCounts("operations", rep.Operations)
	printCounts("faults injected", rep.Faults)
	printCounts("violations", rep.Violations)
	for _, p := range slices.Sorted(maps.Keys(rep.Examples)) {
		fmt.Printf("first %s: %s\n", p, rep.Examples[p])
	}
	if asJSON {
		b, _ := json.Marshal(rep)
		fmt.Println(string(b))
	}
	if !rep.OK() {
		return fmt.Errorf("promises broken; replay with: %s", replay)
	}
	return nil
}
