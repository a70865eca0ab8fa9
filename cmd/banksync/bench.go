package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"banksync/bench"
	"banksync/ledger"
)

type benchCommand struct{}

const benchUsage = `Usage: banksync bench core|payday [flags]

Runs a benchmark and checks its result against core's ledger.

  banksync bench core     committed transfers per second and latency through core's API
  banksync bench payday   the seed's payday: salary deposits booked at core and drained into the history

Run "banksync bench core -h" or "banksync bench payday -h" for their flags.
`

func (benchCommand) Run(ctx context.Context, args []string) error {
	sub, args, err := subcommand("bench", benchUsage, args, "core", "payday")
	if err != nil {
		return err
	}
	if sub == "core" {
		return benchCore(ctx, args)
	}
	return benchPayday(ctx, args)
}

func benchCore(ctx context.Context, args []string) error {
	var cfg bench.CoreConfig
	var asJSON bool
	var profile string
	f := newFlags("bench core", "Measures committed transfers per second and latency through core's HTTP API from\nconcurrent clients on loopback, the same in process, and a baseline of one\ndatabase transaction per request, in one run.")
	f.String(&cfg.DB, "db", "BANKSYNC_BENCH_DB", "sqlite", `"sqlite" (a fresh file) or a postgres:// URL of an empty database`)
	f.Int(&cfg.Clients, "clients", "BANKSYNC_BENCH_CLIENTS", 64, "concurrent clients").within(1, clientsMax)
	f.Duration(&cfg.Duration, "duration", "BANKSYNC_BENCH_DURATION", 10*time.Second, "how long each measurement runs").within(waitMin, runDurationMax)
	f.Int(&cfg.Accounts, "accounts", "BANKSYNC_BENCH_ACCOUNTS", 10000, "accounts transfers move between").within(2, accountsMax)
	f.Bool(&cfg.Baseline, "baseline", "BANKSYNC_BENCH_BASELINE", true, "also measure one transaction per request")
	f.Bool(&cfg.Relay, "relay", "BANKSYNC_BENCH_RELAY", false, "also run the outbox relay into an in-process Kafka cluster")
	f.Bool(&asJSON, "json", "BANKSYNC_BENCH_JSON", false, "end with one JSON line of the results")
	f.String(&cfg.Log, "log", "BANKSYNC_BENCH_LOG", "", "append core's JSON log (info: an access line per request, every transfer decided) to this file, to measure what logging costs; unset, nothing is logged")
	f.String(&profile, "cpuprofile", "BANKSYNC_BENCH_CPUPROFILE", "", "write a CPU profile of the run to this file")
	if err := f.parse(args); err != nil {
		return err
	}
	stopProfile, err := cpuProfile(profile)
	if err != nil {
		return err
	}
	defer stopProfile()
	fmt.Printf("banksync bench core: %d clients, %s each, %d accounts, db %s, relay %v, log %q, %d CPUs, %s\n",
		cfg.Clients, cfg.Duration, cfg.Accounts, bench.DBKind(cfg.DB), cfg.Relay, cfg.Log, runtime.NumCPU(), time.Now().UTC().Format(time.RFC3339))
	cfg.Out, cfg.Progress = os.Stdout, os.Stderr
	results, err := bench.Core(ctx, cfg)
	if err != nil {
		return err
	}
	if asJSON {
		b, _ := json.Marshal(map[string]any{"db": bench.DBKind(cfg.DB), "clients": cfg.Clients, "results": results})
		fmt.Println(string(b))
	}
	for _, r := range results {
		if !r.Verified {
			return fmt.Errorf("%s: verification failed", r.Name)
		}
	}
	return nil
}

// paydayFlags are bench payday's flags that PaydayConfig does not hold.
type paydayFlags struct {
	kafkaMode, profile, drainProfile string
	asJSON, channelProcess           bool
	kafkaSec                         *kafkaSecurity
}

// newPaydayFlags defines bench payday's flags, filling cfg and the
// returned paydayFlags when parsed.
func newPaydayFlags(cfg *bench.PaydayConfig) (*flags, *paydayFlags) {
	var pf paydayFlags
	f := newFlags("bench payday", `The seed's payday: N salary deposits across M accounts. Without --rate, a burst
in phases: (1) core books the deposits from batch files as fast as it can;
(2) the channel's consumers drain every event from Kafka into the history;
then every account's history is checked against core's ledger. It also
measures Kafka alone (consume only), the seed's naive consumer (one record,
one transaction at a time) on a subset, and both phases at once (first
deposit posted to last visible). With --rate, it offers a steady rate of
single deposits for --duration and reports deposit-to-visible latency.
With --prefill, every run's core and channel first hold that many rows of
past deposits, so the drain writes into a deep history table; verification
then compares every account's payday entries and a sample's whole history.`)
	f.String(&cfg.DB, "db", "BANKSYNC_BENCH_DB", "sqlite", `"sqlite" (fresh files) or a postgres:// URL (scratch databases are made beside it)`)
	f.String(&pf.kafkaMode, "kafka", "BANKSYNC_KAFKA_BROKERS", "embedded", `"embedded" (an in-process cluster) or Kafka brokers host:port,… (topics of the run's own, deleted after it)`)
	f.Int(&cfg.Deposits, "deposits", "BANKSYNC_BENCH_DEPOSITS", 1_000_000, "deposits in the burst").within(1, depositsMax)
	f.Int(&cfg.Accounts, "accounts", "BANKSYNC_BENCH_ACCOUNTS", 100_000, "accounts the deposits go to").within(1, accountsMax)
	f.Int(&cfg.Rate, "rate", "BANKSYNC_BENCH_RATE", 0, "offer this many single deposits per second instead of a burst").within(0, ratePerSecondMax)
	f.Duration(&cfg.Duration, "duration", "BANKSYNC_BENCH_DURATION", 20*time.Second, "how long --rate offers deposits").within(waitMin, runDurationMax)
	f.Int(&cfg.Partitions, "partitions", "BANKSYNC_PARTITIONS", 10, "partitions of core.ledger.entries").within(1, partitionsMax)
	f.Int(&cfg.Lanes, "lanes", "BANKSYNC_LANES", 100, "consumer lanes").within(1, lanesMax)
	f.Int(&cfg.Clients, "clients", "BANKSYNC_BENCH_CLIENTS", 8, "batch files uploaded to core at once").within(1, clientsMax)
	f.Int(&cfg.BatchSize, "batch", "BANKSYNC_BENCH_BATCH", ledger.DepositsBatchMax, "deposits per batch file").within(1, ledger.DepositsBatchMax)
	f.Int(&cfg.Baseline, "baseline", "BANKSYNC_BENCH_BASELINE", 20_000, "events the naive baseline drains (0: skip)").within(0, depositsMax)
	f.Int64(&cfg.Prefill, "prefill", "BANKSYNC_BENCH_PREFILL", 0, "history rows core and channel hold before the payday, spread over the accounts and already synced, loaded outside the timed phases (10000000: years of history)").within(0, prefillRowsMax)
	f.Bool(&pf.asJSON, "json", "BANKSYNC_BENCH_JSON", false, "end with one JSON line of the results")
	f.String(&pf.profile, "cpuprofile", "BANKSYNC_BENCH_CPUPROFILE", "", "write a CPU profile of the run to this file")
	f.String(&pf.drainProfile, "drain-cpuprofile", "BANKSYNC_BENCH_DRAIN_CPUPROFILE", "", "write a CPU profile of phase 2 alone (the drain into the history) to this file")
	f.Bool(&pf.channelProcess, "channel-process", "BANKSYNC_BENCH_CHANNEL_PROCESS", false, "drain phase 2 once more by a `banksync channel` process of its own (this binary), and report its rate and peak resident set")
	f.String(&cfg.ChannelMemoryLimit, "channel-process-memory-limit", "BANKSYNC_BENCH_CHANNEL_PROCESS_MEMORY_LIMIT", "", "GOMEMLIMIT of the --channel-process process (as 400MiB); unset, none")
	pf.kafkaSec = f.kafkaSecurityFlags()
	return f, &pf
}

func benchPayday(ctx context.Context, args []string) error {
	var cfg bench.PaydayConfig
	f, pf := newPaydayFlags(&cfg)
	if err := f.parse(args); err != nil {
		return err
	}
	if pf.channelProcess {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		cfg.ChannelBinary = self
	}
	var brokers []string
	if pf.kafkaMode != "embedded" {
		brokers = parseBrokers(pf.kafkaMode)
	}
	var err error
	if cfg.Kafka, err = pf.kafkaSec.conn(brokers); err != nil {
		return err
	}
	stopProfile, err := cpuProfile(pf.profile)
	if err != nil {
		return err
	}
	defer stopProfile()
	if pf.drainProfile != "" {
		out, err := os.Create(pf.drainProfile)
		if err != nil {
			return err
		}
		defer out.Close()
		cfg.DrainProfile = out
	}
	cfg.Out, cfg.Progress = os.Stdout, os.Stderr
	res, err := bench.Payday(ctx, cfg)
	if err != nil {
		return err
	}
	if pf.asJSON {
		b, _ := json.Marshal(res)
		fmt.Println(string(b))
	}
	if !res.Verified {
		return errors.New("verification failed: a channel history differs from core's ledger")
	}
	return nil
}

// cpuProfile starts writing a CPU profile to path ("" for none) and returns
// what stops it.
func cpuProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	out, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		out.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		out.Close()
	}, nil
}
