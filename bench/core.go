package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"banksync"
	bhttp "banksync/http"
	"banksync/internal/progress"
	"banksync/kafka"
	"banksync/node"
)

// CoreConfig is what `banksync bench core` measures.
type CoreConfig struct {
	DB       string // "sqlite" (a fresh file) or a postgres:// URL (a scratch database beside it)
	Clients  int
	Duration time.Duration
	Accounts int
	Baseline bool      // also measure one transaction per request
	Relay    bool      // also run the outbox relay into an in-process Kafka cluster
	Log      string    // file core's JSON log goes to; "" logs nothing
	Out      io.Writer // a line per run; nil prints nothing
	// Progress receives what the run is doing, a line a step and every
	// few seconds while one runs (setting up, measuring, verifying);
	// nil says nothing.
	Progress io.Writer
}

// CoreResult is one measured configuration.
type CoreResult struct {
	Name         string  `json:"name"`
	Transfers    int64   `json:"transfers"`
	Seconds      float64 `json:"seconds"`
	PerSecond    float64 `json:"transfers_per_s"`
	P50ms        float64 `json:"p50_ms"`
	P99ms        float64 `json:"p99_ms"`
	P999ms       float64 `json:"p999_ms"`
	MeanBatch    float64 `json:"mean_batch,omitempty"`
	CPUus        float64 `json:"cpu_us_per_transfer"` // the process's CPU, user and system, client and core, per transfer
	Verified     bool    `json:"verified"`
	BatchSizeMax int     `json:"batch_size_max"`
}

// Core measures committed transfers per second and their latency through
// core's HTTP API, the same in process, and — with Baseline — through HTTP
// with one database transaction per request, each on a fresh database.
func Core(ctx context.Context, cfg CoreConfig) ([]CoreResult, error) {
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	type run struct {
		name  string
		http  bool
		batch int
	}
	runs := []run{{"http group-commit", true, 0}, {"in-process group-commit", false, 0}}
	if cfg.Baseline {
		runs = append(runs, run{"http baseline (1 tx/request)", true, 1})
	}
	var results []CoreResult
	p := progress.New(cfg.Progress, "bench core: ")
	for _, r := range runs {
		res, err := coreOnce(ctx, cfg, p, r.name, r.http, r.batch)
		if err != nil {
			return results, fmt.Errorf("%s: %w", r.name, err)
		}
		results = append(results, res)
		fmt.Fprintf(cfg.Out, "%-30s %9d transfers  %9.0f /s  p50 %6.2f ms  p99 %6.2f ms  p99.9 %6.2f ms  cpu %5.0f µs/transfer  verified=%v\n",
			res.Name, res.Transfers, res.PerSecond, res.P50ms, res.P99ms, res.P999ms, res.CPUus, res.Verified)
	}
	if cfg.Baseline {
		fmt.Fprintf(cfg.Out, "group commit over baseline (http): %.1fx\n", results[0].PerSecond/results[2].PerSecond)
	}
	return results, nil
}

// coreOnce measures one configuration on a core of its own, telling p
// what it is doing.
func coreOnce(ctx context.Context, cfg CoreConfig, p *progress.Progress, name string, viaHTTP bool, batchSizeMax int) (CoreResult, error) {
	res := CoreResult{Name: name, BatchSizeMax: batchSizeMax}
	var opened atomic.Int64
	setup := fmt.Sprintf("%s: setting up a fresh %s database and core with %d funded accounts", name, DBKind(cfg.DB), cfg.Accounts)
	if batchSizeMax == 1 {
		setup += ", one transaction each"
	}
	endSetup := p.Step(setup, func() string { return fmt.Sprintf("%d of %d accounts", opened.Load(), cfg.Accounts) })
	defer endSetup()
	dsn, drop, err := scratchDB(ctx, cfg.DB, "core.db")
	if err != nil {
		return res, err
	}
	defer drop()
	const token = "bench-token"
	ccfg := node.CoreConfig{Listen: "127.0.0.1:0", DB: dsn, ServiceToken: token, AmountMax: banksync.AmountMaxDefault, BatchSizeMax: batchSizeMax}
	if cfg.Relay {
		ccfg.EmbeddedKafka = &kafka.ClusterConfig{Addr: "127.0.0.1:0"} // in memory: no DataDir
	}
	if cfg.Log != "" {
		f, err := os.OpenFile(cfg.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return res, err
		}
		defer f.Close()
		ccfg.Logger = slog.New(bhttp.LogHandler(slog.NewJSONHandler(f, nil)))
	}
	core, err := node.StartCore(ctx, ccfg)
	if err != nil {
		return res, err
	}
	defer core.Close()
	ids, err := createAccounts(ctx, core.Ledger(), "bench", cfg.Accounts, 1_000_000_000, &opened)
	if err != nil {
		return res, fmt.Errorf("setup: %w", err)
	}
	startPos, err := core.Store().LastPosition(ctx)
	if err != nil {
		return res, fmt.Errorf("read core's position before the run: %w", err)
	}
	endSetup()
	transfer := core.Ledger().Transfer
	if viaHTTP {
		rt := &http.Transport{MaxIdleConnsPerHost: cfg.Clients, MaxConnsPerHost: cfg.Clients}
		transfer = bhttp.NewCoreClient("http://"+core.Addr(), token, rt).Transfer
	}
	endMeasure := p.Step(fmt.Sprintf("%s: measuring for %s with %d clients", name, cfg.Duration, cfg.Clients), nil)
	cpu0 := processCPU()
	lat, elapsed, err := transferFor(ctx, cfg, ids, transfer)
	endMeasure()
	if err != nil {
		return res, err
	}
	res.Transfers = int64(len(lat))
	if res.Transfers > 0 {
		res.CPUus = float64((processCPU() - cpu0).Microseconds()) / float64(res.Transfers)
	}
	res.Seconds = elapsed.Seconds()
	res.PerSecond = float64(res.Transfers) / elapsed.Seconds()
	res.P50ms, res.P99ms, res.P999ms = percentileMs(lat, 0.50), percentileMs(lat, 0.99), percentileMs(lat, 0.999)
	defer p.Step(name+": verifying the ledger", nil)()
	res.Verified, err = verifyCore(ctx, cfg.Out, core, startPos, res.Transfers, cfg.Relay)
	return res, err
}

// transferFor sends transfers between random accounts from cfg.Clients
// clients for cfg.Duration, and returns the latency of each, sorted, and
// how long it took. Any transfer that did not complete fails the run.
func transferFor(ctx context.Context, cfg CoreConfig, ids []string,
	transfer func(context.Context, banksync.TransferRequest) (banksync.TransferOutcome, error)) ([]time.Duration, time.Duration, error) {
	var (
		failures atomic.Int64
		mu       sync.Mutex
		lat      []time.Duration
		wg       sync.WaitGroup
	)
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	start := time.Now()
	for c := range cfg.Clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			local := make([]time.Duration, 0, 1<<14)
			for runCtx.Err() == nil {
				from := rng.IntN(len(ids))
				to := (from + 1 + rng.IntN(len(ids)-1)) % len(ids)
				// Time-ordered ids, as the channel assigns them: new keys land
				// at the right edge of the transfers index.
				req := banksync.TransferRequest{TransferID: uuid.Must(uuid.NewV7()).String(), FromAccount: ids[from], ToAccount: ids[to],
					Amount: rng.Int64N(100) + 1, Deadline: time.Now().Add(30 * time.Second), Memo: "bench"}
				t0 := time.Now()
				// Not runCtx: a call in flight when the time is up finishes.
				out, err := transfer(context.Background(), req)
				if err != nil || out.Status != banksync.StatusCompleted {
					if runCtx.Err() == nil {
						failures.Add(1)
					}
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if n := failures.Load(); n > 0 {
		return nil, elapsed, fmt.Errorf("%d transfers failed", n)
	}
	slices.Sort(lat)
	return lat, elapsed, nil
}

// verifyCore checks that every completed transfer booked two entries and
// money was conserved, and with the relay, that its backlog drains within
// seconds.
func verifyCore(ctx context.Context, out io.Writer, core *node.Core, startPos, transfers int64, relay bool) (bool, error) {
	endPos, err := core.Store().LastPosition(ctx)
	if err != nil {
		return false, fmt.Errorf("read core's position after the run: %w", err)
	}
	tot, err := core.Store().Totals(ctx)
	if err != nil {
		return false, err
	}
	ok := endPos-startPos == 2*transfers && tot.Balances == tot.Deposits && tot.NegativeAccounts == 0
	if relay {
		drained := false
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if backlog, err := core.Ledger().OutboxBacklog(ctx); err == nil && backlog == 0 {
				drained = true
				break
			}
		}
		ok = ok && drained
	}
	if !ok {
		fmt.Fprintf(out, "  verification: %d entries for %d transfers; totals %+v\n", endPos-startPos, transfers, tot)
	}
	return ok, nil
}
