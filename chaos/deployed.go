package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	bhttp "banksync/http"
)

// Deployed is a run against processes started and faulted from outside
// this package: one core and channel replicas, each its own process, on
// their own databases and a Kafka cluster. The run drives the same
// workload as Run through their HTTP APIs, injects Faults on the schedule
// the seed gives, and checks every promise with the same checker, during
// the run through the APIs and after it in the databases themselves.
type Deployed struct {
	Seed      uint64
	Duration  time.Duration // how long the workload and the scheduled faults run
	Customers int

	CoreURL      string
	ServiceToken string   // the channels' credential at core
	ChannelURLs  []string // the replicas' customer APIs
	JWTSecret    []byte   // the replicas' HS256 secret, to sign customers' tokens

	// The databases, read directly at the end: core's ledger and the
	// replicas' shared history.
	Ledger  LedgerReader
	History HistoryReader

	// Faults are scheduled from the seed while the workload runs. Finale
	// runs once after it, with a way to send one deposit to every account.
	// Calm then ends every fault: processes, brokers and databases back,
	// the network clean. The checker waits at most PendingMax for pending
	// transfers to settle (P2) and SettleMax for the histories to reach
	// core's ledger (P4).
	Faults     []DeployedFault
	Finale     func(ctx context.Context, depositToAll func(ctx context.Context, tag string)) error
	Calm       func(ctx context.Context) error
	PendingMax time.Duration
	SettleMax  time.Duration
	// ClockSkewMax bounds how far each replica's clock is off real time.
	ClockSkewMax time.Duration

	Logger *slog.Logger
}

// DeployedFault is one kind of fault a deployed run injects. Do injects it once;
// Every is the mean wait between two; Max, if set, bounds how many a run
// injects. The report counts each injected fault under Name, and a fault
// whose Do failed under Name_failed — unless the run's end cut it short.
type DeployedFault struct {
	Name  string
	Every time.Duration
	Max   int
	Do    func(ctx context.Context, rng *rand.Rand) error
}

// LedgerReader and HistoryReader are what the final check reads of core's
// ledger database and of the channel's history database; every
// ledger.Store and channel.Store has them.
type (
	LedgerReader  = ledgerReader
	HistoryReader = historyReader
)

// RunDeployed runs d and returns what it did and found. Faults it could
// not inject are in the report, not an error; an error is a run that could
// not start (core refusing the accounts) or was called off.
func RunDeployed(ctx context.Context, d Deployed) (*Report, error) {
	if d.Customers <= 0 {
		d.Customers = 8
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	auth, err := bhttp.NewHS256Authenticator(d.JWTSecret, bhttp.AuthOptions{})
	if err != nil {
		return nil, err
	}
	hc := newHTTPClient()
	defer hc.CloseIdleConnections()
	var rs []replica
	for _, u := range d.ChannelURLs {
		rs = append(rs, newHTTPReplica(strings.TrimSuffix(u, "/"), auth, hc))
	}
	stats := newCounters()
	w := newWorkload(newHTTPBank(strings.TrimSuffix(d.CoreURL, "/"), d.ServiceToken, hc), rs, stats, d.Customers, d.Seed)
	if err := w.setup(ctx); err != nil {
		return nil, fmt.Errorf("chaos setup: %w", err)
	}
	runCtx, cancel := context.WithTimeout(ctx, d.Duration)
	done := make(chan struct{})
	go func() { defer close(done); w.run(runCtx) }()
	kinds := make([]scheduled, len(d.Faults))
	for i, f := range d.Faults {
		kinds[i] = scheduled{every: f.Every, max: f.Max, do: func(rng *rand.Rand) {
			d.Logger.Info("chaos: fault", "kind", f.Name)
			if err := f.Do(runCtx, rng); err != nil {
				if runCtx.Err() != nil {
					// The run ended mid-fault: cut short, not failed.
					d.Logger.Info("chaos: fault cut short by the run's end", "kind", f.Name, "err", err)
					return
				}
				d.Logger.Error("chaos: fault not injected", "kind", f.Name, "err", err)
				stats.fault(f.Name + "_failed")
				return
			}
			stats.fault(f.Name)
		}}
	}
	schedule(runCtx, d.Seed, d.Duration, kinds)
	<-done
	cancel()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if d.Finale != nil {
		d.Logger.Info("chaos: finale")
		if err := d.Finale(ctx, w.depositToAll); err != nil {
			d.Logger.Error("chaos: finale not injected", "err", err)
			stats.fault("finale_failed")
		} else {
			stats.fault("finale")
		}
	}
	if d.Calm != nil {
		if err := d.Calm(ctx); err != nil {
			return nil, fmt.Errorf("chaos: the faults did not end: %w", err)
		}
	}
	checkAfter(ctx, w, d.Ledger, d.History, bounds{pendingMax: d.PendingMax, settleMax: d.SettleMax, clockSpread: 2 * d.ClockSkewMax})
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return stats.report(Config{Seed: d.Seed, Duration: d.Duration}), nil
}

// scheduled is one kind of fault on a schedule: do, about every every,
// at most max times (0: no bound).
type scheduled struct {
	every time.Duration
	max   int
	do    func(rng *rand.Rand)
}

// schedule runs kinds until ctx ends. Each kind has its own goroutine and
// its own random stream from the seed, so the same seed gives each kind
// the same sequence of waits and choices, and a slow fault (a restart)
// delays no other kind. No interval is longer than a third of the run, so
// a short run still meets every kind.
func schedule(ctx context.Context, seed uint64, run time.Duration, kinds []scheduled) {
	var wg sync.WaitGroup
	for i, k := range kinds {
		if k.every <= 0 {
			continue
		}
		every := min(k.every, run/3)
		rng := rand.New(rand.NewPCG(seed, uint64(10+i)))
		wg.Go(func() {
			for n := 0; k.max == 0 || n < k.max; n++ {
				wait := every/2 + time.Duration(rng.Int64N(int64(every)))
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
				k.do(rng)
			}
		})
	}
	wg.Wait()
}
