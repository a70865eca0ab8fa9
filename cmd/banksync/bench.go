package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"banksync"
	bhttp "banksync/http"
	"banksync/postgres"
)

type benchCommand struct{}

func (benchCommand) Run(ctx context.Context, args []string) error {
	switch {
	case len(args) > 0 && args[0] == "core":
		return benchCore(ctx, args[1:])
	case len(args) > 0 && args[0] == "payday":
		return benchPayday(ctx, args[1:])
	}
	return errors.New("usage: banksync bench core|payday [flags]  (see banksync bench core -h, banksync bench payday -h)")
}

type benchCoreConfig struct {
	DB       string
	Clients  int
	Duration time.Duration
	Accounts int
	Baseline bool
	Relay    bool
	JSON     bool
	Log      string // file core's JSON log goes to; "" logs nothing
	Profile  string // CPU profile of the whole run; "" for none
}

// benchResult is one measured configuration.
type benchResult struct {
	Name         string  `json:"name"`
	Transfers    int64   `json:"transfers"`
	Seconds      float64 `json:"seconds"`
	PerSecond    float64 `json:"transfers_per_s"`
	P50ms        float64 `json:"p50_ms"`
	P99ms        float64 `json:"p99_ms"`
	P999ms       float64 `json:"p999_ms"`
	MeanBatch    float64 `json:"mean_batch,omitempty"`
	Verified     bool    `json:"verified"`
	BatchSizeMax int     `json:"batch_size_max"`
}

func benchCore(ctx context.Context, args []string) error {
	var cfg benchCoreConfig
	f := newFlags("bench core", "Measures committed transfers per second and latency through core's HTTP API from\nconcurrent clients on loopback, the same in process, and a baseline of one\ndatabase transaction per request, in one run.")
	f.String(&cfg.DB, "db", "BANKSYNC_BENCH_DB", "sqlite", `"sqlite" (a fresh file) or a postgres:// URL of an empty database`)
	f.Int(&cfg.Clients, "clients", "BANKSYNC_BENCH_CLIENTS", 64, "concurrent clients")
	f.Duration(&cfg.Duration, "duration", "BANKSYNC_BENCH_DURATION", 10*time.Second, "how long each measurement runs")
	f.Int(&cfg.Accounts, "accounts", "BANKSYNC_BENCH_ACCOUNTS", 10000, "accounts transfers move between")
	f.Bool(&cfg.Baseline, "baseline", "BANKSYNC_BENCH_BASELINE", true, "also measure one transaction per request")
	f.Bool(&cfg.Relay, "relay", "BANKSYNC_BENCH_RELAY", false, "also run the outbox relay into an in-process Kafka cluster")
	f.Bool(&cfg.JSON, "json", "BANKSYNC_BENCH_JSON", false, "end with one JSON line of the results")
	f.String(&cfg.Log, "log", "BANKSYNC_BENCH_LOG", "", "append core's JSON log (info: an access line per request, every transfer decided) to this file, to measure what logging costs; unset, nothing is logged")
	f.String(&cfg.Profile, "cpuprofile", "BANKSYNC_BENCH_CPUPROFILE", "", "write a CPU profile of the run to this file")
	if err := f.parse(args); err != nil {
		return err
	}
	stopProfile, err := cpuProfile(cfg.Profile)
	if err != nil {
		return err
	}
	defer stopProfile()
	fmt.Printf("banksync bench core: %d clients, %s each, %d accounts, db %s, relay %v, log %q, %d CPUs, %s\n",
		cfg.Clients, cfg.Duration, cfg.Accounts, dbKind(cfg.DB), cfg.Relay, cfg.Log, runtime.NumCPU(), time.Now().UTC().Format(time.RFC3339))
	var results []benchResult
	runs := []struct {
		name  string
		http  bool
		batch int
	}{{"http group-commit", true, 0}, {"in-process group-commit", false, 0}}
	if cfg.Baseline {
		runs = append(runs, struct {
			name  string
			http  bool
			batch int
		}{"http baseline (1 tx/request)", true, 1})
	}
	for _, run := range runs {
		res, err := benchCoreOnce(ctx, cfg, run.name, run.http, run.batch)
		if err != nil {
			return fmt.Errorf("%s: %w", run.name, err)
		}
		results = append(results, res)
		fmt.Printf("%-30s %9d transfers  %9.0f /s  p50 %6.2f ms  p99 %6.2f ms  p99.9 %6.2f ms  verified=%v\n",
			res.Name, res.Transfers, res.PerSecond, res.P50ms, res.P99ms, res.P999ms, res.Verified)
	}
	if cfg.Baseline {
		fmt.Printf("group commit over baseline (http): %.1fx\n", results[0].PerSecond/results[2].PerSecond)
	}
	if cfg.JSON {
		b, _ := json.Marshal(map[string]any{"db": dbKind(cfg.DB), "clients": cfg.Clients, "results": results})
		fmt.Println(string(b))
	}
	for _, r := range results {
		if !r.Verified {
			return fmt.Errorf("%s: verification failed", r.Name)
		}
	}
	return nil
}

func dbKind(db string) string {
	if strings.HasPrefix(db, "postgres") {
		return "postgres"
	}
	return "sqlite"
}

func benchCoreOnce(ctx context.Context, cfg benchCoreConfig, name string, viaHTTP bool, batchSizeMax int) (benchResult, error) {
	res := benchResult{Name: name, BatchSizeMax: batchSizeMax}
	dsn := cfg.DB
	if dsn == "sqlite" {
		dir, err := os.MkdirTemp("", "banksync-bench-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(dir)
		dsn = "sqlite:" + filepath.Join(dir, "core.db")
	} else {
		fresh, drop, err := freshPostgres(ctx, dsn)
		if err != nil {
			return res, err
		}
		defer drop()
		dsn = fresh
	}
	const token = "bench-token"
	kafkaMode := "none"
	if cfg.Relay {
		kafkaMode = "embedded" // in memory: no KafkaData
	}
	var log *slog.Logger // nil: nothing
	if cfg.Log != "" {
		f, err := os.OpenFile(cfg.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return res, err
		}
		defer f.Close()
		log = slog.New(bhttp.LogHandler(slog.NewJSONHandler(f, nil)))
	}
	node, err := startCore(ctx, coreConfig{Listen: "127.0.0.1:0", DB: dsn, Kafka: kafkaMode, KafkaListen: "127.0.0.1:0", ServiceToken: token,
		AmountMax: banksync.AmountMaxDefault, BatchSizeMax: batchSizeMax, Logger: log})
	if err != nil {
		return res, err
	}
	defer node.Close()

	// Accounts with enough money that no transfer is refused for funds.
	ids := make([]string, cfg.Accounts)
	var setup sync.WaitGroup
	var setupErr atomic.Value
	for w := 0; w < 32; w++ {
		setup.Add(1)
		go func(w int) {
			defer setup.Done()
			for i := w; i < len(ids); i += 32 {
				ids[i] = fmt.Sprintf("bench-%06d", i)
				if _, _, err := node.ledger.CreateAccount(ctx, ids[i], "bench"); err != nil {
					setupErr.Store(err)
					return
				}
				if _, err := node.ledger.Deposit(ctx, banksync.DepositRequest{ExternalRef: "seed-" + ids[i], AccountID: ids[i], Amount: 1_000_000_000, Sender: "bench"}); err != nil {
					setupErr.Store(err)
					return
				}
			}
		}(w)
	}
	setup.Wait()
	if err, ok := setupErr.Load().(error); ok {
		return res, fmt.Errorf("setup: %w", err)
	}
	startPos, err := node.store.LastPosition(ctx)
	if err != nil {
		return res, fmt.Errorf("read core's position before the run: %w", err)
	}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: cfg.Clients, MaxConnsPerHost: cfg.Clients}}
	url := "http://" + node.Addr() + "/core/v1/transfers"
	var (
		completed atomic.Int64
		failures  atomic.Int64
		mu        sync.Mutex
		lat       []time.Duration
		wg        sync.WaitGroup
	)
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	start := time.Now()
	for c := 0; c < cfg.Clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			local := make([]time.Duration, 0, 1<<14)
			for i := 0; runCtx.Err() == nil; i++ {
				from := rng.IntN(len(ids))
				to := (from + 1 + rng.IntN(len(ids)-1)) % len(ids)
				// Time-ordered ids, as the channel assigns them: new keys land
				// at the right edge of the transfers index.
				req := banksync.TransferRequest{TransferID: uuid.Must(uuid.NewV7()).String(), FromAccount: ids[from], ToAccount: ids[to],
					Amount: rng.Int64N(100) + 1, Deadline: time.Now().Add(30 * time.Second), Memo: "bench"}
				t0 := time.Now()
				var status string
				var err error
				if viaHTTP {
					status, err = postTransfer(client, url, token, req)
				} else {
					var out banksync.TransferOutcome
					out, err = node.ledger.Transfer(context.Background(), req)
					status = out.Status
				}
				if err != nil || status != banksync.StatusCompleted {
					if runCtx.Err() == nil {
						failures.Add(1)
					}
					continue
				}
				local = append(local, time.Since(t0))
				completed.Add(1)
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	if failures.Load() > 0 {
		return res, fmt.Errorf("%d transfers failed", failures.Load())
	}
	slices.Sort(lat)
	res.Transfers = completed.Load()
	res.Seconds = elapsed.Seconds()
	res.PerSecond = float64(res.Transfers) / elapsed.Seconds()
	res.P50ms, res.P99ms, res.P999ms = percentileMs(lat, 0.50), percentileMs(lat, 0.99), percentileMs(lat, 0.999)

	// Verify: every completed transfer booked two entries, money conserved.
	endPos, err := node.store.LastPosition(ctx)
	if err != nil {
		return res, fmt.Errorf("read core's position after the run: %w", err)
	}
	tot, err := node.store.Totals(ctx)
	if err != nil {
		return res, err
	}
	res.Verified = endPos-startPos == 2*res.Transfers && tot.Balances == tot.Deposits && tot.NegativeAccounts == 0
	if node.relay != nil {
		// The relay keeps up: its backlog drains within seconds.
		drained := false
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if backlog, err := node.ledger.OutboxBacklog(ctx); err == nil && backlog == 0 {
				drained = true
				break
			}
		}
		res.Verified = res.Verified && drained
	}
	if !res.Verified {
		fmt.Printf("  verification: %d entries for %d transfers; totals %+v\n", endPos-startPos, res.Transfers, tot)
	}
	return res, nil
}

func postTransfer(client *http.Client, url, token string, t banksync.TransferRequest) (string, error) {
	body, _ := json.Marshal(map[string]any{"transfer_id": t.TransferID, "from_account": t.FromAccount,
		"to_account": t.ToAccount, "amount": t.Amount, "deadline": t.Deadline.Format(time.RFC3339Nano), "memo": t.Memo})
	req, err := http.NewRequest("POST", url, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, raw)
	}
	var out struct {
		Status string `json:"status"`
	}
	return out.Status, json.Unmarshal(raw, &out)
}

// freshPostgres creates a scratch database beside the one dsn names.
func freshPostgres(ctx context.Context, dsn string) (string, func(), error) {
	fresh, drop, err := postgres.CreateScratchDatabase(ctx, dsn, "banksync_bench")
	if err != nil {
		return "", nil, err
	}
	return fresh, func() { drop(context.Background()) }, nil
}
