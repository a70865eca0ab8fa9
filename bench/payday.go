package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"banksync"
	"banksync/channel"
	bhttp "banksync/http"
	"banksync/internal/progress"
	"banksync/kafka"
	"banksync/ledger"
	"banksync/node"
)

// The payday benchmark: the seed's "a million deposits at once". Salaries
// arrive at core from other banks as batch files; core books them and
// announces every entry on Kafka; the channel's consumers bring them into
// the history the app shows.

// PaydayConfig is what `banksync bench payday` runs.
type PaydayConfig struct {
	DB string // "sqlite" (fresh files) or a postgres:// URL (scratch databases are made beside it)
	// Kafka is a cluster to run on, with topics of the run's own, deleted
	// after it; no brokers, an in-process cluster.
	Kafka      kafka.Conn
	Deposits   int
	Accounts   int
	Rate       int           // single deposits offered per second instead of a burst; 0 for the burst
	Duration   time.Duration // how long Rate is offered
	Partitions int
	Lanes      int
	Clients    int // batch files uploaded at once
	BatchSize  int // deposits per batch file
	Baseline   int // events the naive consumer drains; 0 skips it
	// Prefill is how many history rows every run's core and channel hold
	// before the payday (spread evenly over the accounts, already synced):
	// the drain then writes into a deep history table. 0: empty tables.
	Prefill int64
	// DrainProfile, set, receives a CPU profile of phase 2 alone: the
	// drain from Kafka into the history.
	DrainProfile io.Writer
	// ChannelBinary, set, is a banksync binary that drains phase 2 once
	// more as a `banksync channel` process of its own, whose peak resident
	// set is then the channel's alone.
	ChannelBinary string
	// ChannelMemoryLimit, set, is the channel process's GOMEMLIMIT (as
	// "400MiB"): the soft limit a deployment gives it below its hard one.
	ChannelMemoryLimit string
	Out                io.Writer
	// Progress receives what the run is doing, a line a step and every
	// few seconds while one runs (setup, each phase, the baseline,
	// verification); nil says nothing.
	Progress io.Writer

	templates *prefillTemplates  // the run's prefilled databases, with Prefill
	prog      *progress.Progress // Progress's
}

// PaydayResult is the JSON line the benchmark ends with.
type PaydayResult struct {
	DB                 string  `json:"db"`
	Kafka              string  `json:"kafka"` // "embedded" or "brokers"
	Mode               string  `json:"mode"`  // "burst" or "rate"
	Events             int64   `json:"events"`
	Seconds            float64 `json:"seconds"`
	EventsPerS         float64 `json:"events_per_s"`
	CoreDepositsPerS   float64 `json:"core_deposits_per_s"`
	PublishedSeconds   float64 `json:"published_seconds"`
	KafkaOnlyPerS      float64 `json:"kafka_only_records_per_s"`
	CombinedSeconds    float64 `json:"combined_seconds"`
	P50ms              float64 `json:"p50_ms"`
	P99ms              float64 `json:"p99_ms"`
	Latency            string  `json:"latency"` // what p50_ms and p99_ms measure
	BaselineEventsPerS float64 `json:"baseline_events_per_s"`
	Ratio              float64 `json:"ratio_over_baseline"`
	OfferedRate        int     `json:"offered_rate,omitempty"`
	AchievedRate       float64 `json:"achieved_rate,omitempty"`
	EntriesPerCommit   float64 `json:"entries_per_commit,omitempty"`   // phase 2's mean
	HeapPeakMiB        float64 `json:"drain_heap_peak_mib,omitempty"`  // phase 2, the whole process
	RSSPeakMiB         float64 `json:"drain_rss_peak_mib,omitempty"`   // phase 2, the whole process; 0 where unknown
	ProcessEventsPerS  float64 `json:"process_events_per_s,omitempty"` // phase 2 again, by a channel process of its own
	ProcessRSSPeakMiB  float64 `json:"process_rss_peak_mib,omitempty"` // that channel process's peak resident set
	PageNewestP99ms    float64 `json:"page_newest_p99_ms,omitempty"`   // a newest page of 20 after the drain
	PageDeepP99ms      float64 `json:"page_deep_p99_ms,omitempty"`     // a page of 20 at a random depth after the drain
	// PrefillRows is how many history rows each run's core and channel
	// held before the payday; PrefillSeconds how long loading them into
	// the first run's core and channel took (outside every timed phase).
	PrefillRows    int64   `json:"prefill_rows"`
	PrefillSeconds float64 `json:"prefill_seconds"`
	Verified       bool    `json:"verified"`
}

// Payday runs the seed's payday: Deposits salary deposits across Accounts
// accounts, as a burst in phases or, with Rate, as a steady rate, and checks
// every account's history against core's ledger. A run whose histories
// differ returns its result with Verified false and no error.
func Payday(ctx context.Context, cfg PaydayConfig) (PaydayResult, error) {
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	res := PaydayResult{DB: DBKind(cfg.DB), Mode: "burst", Kafka: "embedded"}
	switch {
	case cfg.Deposits < 1 || cfg.Accounts < 1:
		return res, errors.New("--deposits and --accounts must be positive")
	case cfg.BatchSize < 1 || cfg.BatchSize > ledger.DepositsBatchMax:
		return res, fmt.Errorf("--batch must be between 1 and %d", ledger.DepositsBatchMax)
	case cfg.Clients < 1 || cfg.Rate < 0:
		return res, errors.New("--clients must be positive and --rate not negative")
	case cfg.Prefill < 0:
		return res, errors.New("--prefill must not be negative")
	}
	kafkaName := "embedded"
	if len(cfg.Kafka.Brokers) > 0 {
		res.Kafka, kafkaName = "brokers", strings.Join(cfg.Kafka.Brokers, ",")
	}
	load := fmt.Sprintf("%d deposits", cfg.Deposits)
	if cfg.Rate > 0 {
		load = fmt.Sprintf("%d deposits/s for %s", cfg.Rate, cfg.Duration)
	}
	prefilled := ""
	if cfg.Prefill > 0 {
		prefilled = fmt.Sprintf(" holding %d history rows already (prefilled)", cfg.Prefill)
	}
	fmt.Fprintf(cfg.Out, "banksync bench payday: %s to %d accounts%s, db %s, kafka %s, %d partitions, %d lanes, %d CPUs, %s\n",
		load, cfg.Accounts, prefilled, res.DB, kafkaName, cfg.Partitions, cfg.Lanes, runtime.NumCPU(), time.Now().UTC().Format(time.RFC3339))
	cfg.prog = progress.New(cfg.Progress, "bench payday: ")
	cfg, dropTemplates := withPrefill(cfg)
	defer dropTemplates()
	if cfg.Rate > 0 {
		res.Mode = "rate"
		return res, paydayRate(ctx, cfg, &res)
	}
	return res, paydayBurst(ctx, cfg, &res)
}

// paydayBurst runs phases 1 and 2 one after the other, Kafka alone and the
// naive consumer between them, then both phases at once.
func paydayBurst(ctx context.Context, cfg PaydayConfig, res *PaydayResult) error {
	rig, err := newPaydayRig(ctx, cfg, "burst")
	if err != nil {
		return err
	}
	defer rig.close()
	res.PrefillRows, res.PrefillSeconds = cfg.Prefill, cfg.templates.seconds()
	end := rig.step(fmt.Sprintf("phase 1: core books %d deposits from files of %d", cfg.Deposits, cfg.BatchSize), rig.bookedSoFar)
	took, err := rig.postAll(ctx)
	end()
	if err != nil {
		return err
	}
	res.CoreDepositsPerS = float64(cfg.Deposits) / took.Seconds()
	wait, err := rig.waitPublished(ctx)
	if err != nil {
		return err
	}
	published := took + wait
	res.PublishedSeconds = published.Seconds()
	fmt.Fprintf(cfg.Out, "phase 1, core:       %9d deposits in %6.1f s = %7.0f deposits/s (files of %d, %d uploads at once); all on Kafka after %.1f s\n",
		cfg.Deposits, took.Seconds(), res.CoreDepositsPerS, cfg.BatchSize, cfg.Clients, published.Seconds())

	end = rig.step(fmt.Sprintf("kafka alone: reading %d records, doing nothing with them", cfg.Deposits), nil)
	n, kafkaTook, err := consumeOnly(ctx, rig.core.Conn(), rig.topic, int64(cfg.Deposits))
	end()
	if err != nil {
		return err
	}
	res.KafkaOnlyPerS = float64(n) / kafkaTook.Seconds()
	fmt.Fprintf(cfg.Out, "kafka alone:         %9d records consumed in %6.1f s = %7.0f records/s (no apply: the ceiling)\n", n, kafkaTook.Seconds(), res.KafkaOnlyPerS)

	if err := rig.drain(ctx, res); err != nil {
		return err
	}

	verified, err := rig.verify(ctx)
	if err != nil {
		return err
	}
	res.Verified = verified
	fmt.Fprintf(cfg.Out, "verification:        %s: %v\n", rig.verifies(), verified)
	if err := rig.readHistoryPages(ctx, res); err != nil {
		return err
	}
	if cfg.ChannelBinary != "" {
		if err := rig.drainByProcess(ctx, res); err != nil {
			return err
		}
	}

	if cfg.Baseline > 0 {
		n, took, err := rig.naive(ctx, int64(min(cfg.Baseline, cfg.Deposits)))
		if err != nil {
			return err
		}
		res.BaselineEventsPerS = float64(n) / took.Seconds()
		res.Ratio = res.EventsPerS / res.BaselineEventsPerS
		fmt.Fprintf(cfg.Out, "baseline, naive:     %9d events   in %6.1f s = %7.0f events/s (one consumer, one record, one transaction at a time)\n",
			n, took.Seconds(), res.BaselineEventsPerS)
		fmt.Fprintf(cfg.Out, "lanes + batching over the naive consumer: %.1fx\n", res.Ratio)
	}
	rig.close()
	return paydayCombined(ctx, cfg, res)
}

// drain is phase 2: a consumer drains every event from Kafka into the
// history, its CPU profiled if asked and the process's memory followed.
func (rig *paydayRig) drain(ctx context.Context, res *PaydayResult) error {
	mem := startMemoryPeak()
	defer mem.end()
	stopProfile, err := profileCPU(rig.cfg.DrainProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	end := rig.step(fmt.Sprintf("phase 2: the consumer drains %d events into the history", rig.cfg.Deposits), rig.visibleSoFar)
	defer end()
	start := time.Now()
	stop, err := rig.startConsumer()
	if err != nil {
		return err
	}
	if err := rig.waitVisible(ctx, int64(rig.cfg.Deposits), 10*time.Minute); err != nil {
		stop()
		return err
	}
	end()
	drain := time.Since(start)
	stopProfile()
	stop()
	res.Events, res.Seconds = int64(rig.cfg.Deposits), drain.Seconds()
	res.EventsPerS = float64(rig.cfg.Deposits) / drain.Seconds()
	res.HeapPeakMiB, res.RSSPeakMiB = mem.end()
	res.EntriesPerCommit = float64(rig.cfg.Deposits) / float64(max(1, rig.vis.commits.Load()))
	fmt.Fprintf(rig.cfg.Out, "phase 2, drain:      %9d events   in %6.1f s = %7.0f events/s into history (%.0f entries a group commit)\n",
		rig.cfg.Deposits, drain.Seconds(), res.EventsPerS, res.EntriesPerCommit)
	fmt.Fprintf(rig.cfg.Out, "                     memory of the process (core and channel together): peak Go heap %.0f MiB, peak resident %.0f MiB\n",
		res.HeapPeakMiB, res.RSSPeakMiB)
	return nil
}

// paydayCombined runs both phases at once, on fresh databases and a fresh
// cluster, and measures first deposit posted to last visible.
func paydayCombined(ctx context.Context, cfg PaydayConfig, res *PaydayResult) error {
	rig, stop, err := newConsumingRig(ctx, cfg, "combined")
	if err != nil {
		return err
	}
	defer rig.close()
	end := rig.step(fmt.Sprintf("combined: core books %d deposits while the consumer drains them", cfg.Deposits), rig.visibleSoFar)
	defer end()
	start := time.Now()
	if _, err := rig.postAll(ctx); err != nil {
		return err
	}
	if err := rig.waitVisible(ctx, int64(cfg.Deposits), 10*time.Minute); err != nil {
		return err
	}
	end()
	res.CombinedSeconds = time.Since(start).Seconds()
	stop()
	lat, coreLat, syncLat := rig.vis.latencies()
	res.P50ms, res.P99ms = percentileMs(lat, 0.50), percentileMs(lat, 0.99)
	res.Latency = "file posted to deposit visible, both phases at once (a backlog, not a steady state)"
	fmt.Fprintf(cfg.Out, "combined:            first deposit posted to last visible %.1f s; file posted to visible p50 %.0f ms, p99 %.0f ms\n",
		res.CombinedSeconds, res.P50ms, res.P99ms)
	fmt.Fprintf(cfg.Out, "                     of which posted to booked p50 %.0f ms, p99 %.0f ms; booked to visible p50 %.0f ms, p99 %.0f ms\n",
		percentileMs(coreLat, 0.5), percentileMs(coreLat, 0.99), percentileMs(syncLat, 0.5), percentileMs(syncLat, 0.99))
	verified, err := rig.verify(ctx)
	if err != nil {
		return err
	}
	res.Verified = res.Verified && verified
	fmt.Fprintf(cfg.Out, "verification:        %s: %v\n", rig.verifies(), verified)
	return nil
}

func paydayRate(ctx context.Context, cfg PaydayConfig, res *PaydayResult) error {
	rig, stop, err := newConsumingRig(ctx, cfg, "rate")
	if err != nil {
		return err
	}
	defer rig.close()
	res.PrefillRows, res.PrefillSeconds = cfg.Prefill, cfg.templates.seconds()
	// One deposit first, through to the history: the consumer has joined
	// its group, so what follows measures the steady state.
	if _, err := rig.client.Deposits(ctx, []banksync.DepositRequest{{ExternalRef: "warm-up", AccountID: rig.ids[0], Amount: 1, Sender: "acme-payroll"}}); err != nil {
		return err
	}
	if err := rig.waitVisible(ctx, 1, time.Minute); err != nil {
		return err
	}
	end := rig.step(fmt.Sprintf("steady rate: offering %d deposits/s for %s", cfg.Rate, cfg.Duration), rig.bookedSoFar)
	defer end()
	posted, took, err := rig.offer(ctx, cfg.Rate, cfg.Duration)
	if err != nil {
		return err
	}
	if err := rig.waitVisible(ctx, posted+1, 2*time.Minute); err != nil {
		return err
	}
	end()
	stop()
	lat, coreLat, syncLat := rig.vis.latencies()
	res.OfferedRate, res.AchievedRate = cfg.Rate, float64(posted)/took.Seconds()
	res.Events, res.Seconds, res.EventsPerS = posted, took.Seconds(), res.AchievedRate
	res.P50ms, res.P99ms = percentileMs(lat, 0.50), percentileMs(lat, 0.99)
	res.Latency = "deposit due to visible at a steady rate"
	fmt.Fprintf(cfg.Out, "steady rate:         %d deposits/s offered for %s; %d booked in %.1f s = %.0f/s; deposit-to-visible p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
		cfg.Rate, cfg.Duration, posted, took.Seconds(), res.AchievedRate, res.P50ms, res.P99ms, percentileMs(lat, 1))
	fmt.Fprintf(cfg.Out, "                     of which due to booked p50 %.1f ms, p99 %.1f ms; booked to visible p50 %.1f ms, p99 %.1f ms\n",
		percentileMs(coreLat, 0.5), percentileMs(coreLat, 0.99), percentileMs(syncLat, 0.5), percentileMs(syncLat, 0.99))
	verified, err := rig.verify(ctx)
	if err != nil {
		return err
	}
	res.Verified = verified
	fmt.Fprintf(cfg.Out, "verification:        %s: %v\n", rig.verifies(), verified)
	return nil
}

// paydayRig is one core (with its relay and an in-process Kafka-protocol
// cluster) and one channel whose store reports when entries become visible.
type paydayRig struct {
	cfg      PaydayConfig
	name     string
	core     *node.Core
	client   *bhttp.CoreClient
	toCore   http.RoundTripper // the pooled connections client and the channel share
	chStore  channel.Store     // the history as the domain writes it
	ch       *channel.Channel
	vis      *visibility
	ids      []string
	topic    string       // the ledger topic
	booked   atomic.Int64 // deposits core has booked for postAll and offer
	cleanups []func()
	closed   bool

	// prefill, set, is the history core and channel held before the
	// payday.
	prefill *prefill
}

const paydayToken = "payday-bench-token"

// paydayConnsMax bounds the bench's connections to core, as a bank's
// gateway pools them; requests beyond wait for a connection (and --rate
// counts that wait).
const paydayConnsMax = 256

func newPaydayRig(ctx context.Context, cfg PaydayConfig, name string) (r *paydayRig, err error) {
	r = &paydayRig{cfg: cfg, name: name}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	// Prefilled before core and channel open: the ledger caches its last
	// position and accounts, and the relay must start past the prefill.
	coreTemplate, chTemplate, err := r.templates(ctx)
	if err != nil {
		return r, err
	}
	coreDSN, err := r.scratch(ctx, "core", coreTemplate)
	if err != nil {
		return r, err
	}
	chDSN, err := r.scratch(ctx, "channel", chTemplate)
	if err != nil {
		return r, err
	}
	coreCfg := node.CoreConfig{Listen: "127.0.0.1:0", DB: coreDSN, EmbeddedKafka: &kafka.ClusterConfig{Addr: "127.0.0.1:0"},
		Partitions: cfg.Partitions, ServiceToken: paydayToken, AmountMax: banksync.AmountMaxDefault}
	r.topic = banksync.TopicLedgerEntries
	if len(cfg.Kafka.Brokers) > 0 {
		// A cluster of someone else's: topics of this run's own, so an
		// earlier run's records are not drained again, deleted after it.
		r.topic = fmt.Sprintf("banksync.bench.payday.%s.%d", name, time.Now().UnixNano())
		coreCfg.EmbeddedKafka, coreCfg.Kafka, coreCfg.Topic = nil, cfg.Kafka, r.topic
	}
	r.core, err = node.StartCore(ctx, coreCfg)
	if err != nil {
		return r, err
	}
	r.cleanups = append(r.cleanups, func() { r.core.Close() })
	if len(cfg.Kafka.Brokers) > 0 {
		r.cleanups = append(r.cleanups, func() { deleteTopics(r.core.Conn(), r.topic, kafka.DLQTopicOf(r.topic)) })
	}
	if err := r.openAccounts(ctx); err != nil {
		return r, err
	}
	r.toCore = &http.Transport{MaxIdleConnsPerHost: paydayConnsMax, MaxConnsPerHost: paydayConnsMax}
	r.client = bhttp.NewCoreClient("http://"+r.core.Addr(), paydayToken, r.toCore)

	perAccount := cfg.Deposits/cfg.Accounts + 1
	if cfg.Rate > 0 {
		perAccount = int(float64(cfg.Rate)*cfg.Duration.Seconds())/cfg.Accounts + 1
	}
	var base []int64
	if r.prefill != nil {
		base = r.prefill.counts
	}
	r.vis = newVisibility(r.ids, perAccount, base)
	d, err := r.openDomain(ctx, chDSN, func(s channel.Store) channel.Store { return &observedStore{Store: s, vis: r.vis} })
	if err != nil {
		return r, err
	}
	r.cleanups = append(r.cleanups, func() { d.Close() })
	r.ch, r.chStore = d.Channel, d.Store
	return r, nil
}

// openAccounts opens the run's accounts at core.
func (r *paydayRig) openAccounts(ctx context.Context) error {
	start := time.Now()
	var opened atomic.Int64
	end := r.step(fmt.Sprintf("setup (%s): opening %d accounts at core", r.name, r.cfg.Accounts),
		func() string { return fmt.Sprintf("%d opened", opened.Load()) })
	ids, err := createAccounts(ctx, r.core.Ledger(), prefillOwner, r.cfg.Accounts, 0, &opened)
	end()
	if err != nil {
		return err
	}
	if r.prefill != nil && !slices.Equal(ids, r.prefill.ids) {
		return errors.New("bench payday: the prefilled accounts are not the payday's")
	}
	r.ids = ids
	fmt.Fprintf(r.cfg.Out, "setup (%s):%*s%9d accounts at core in %.1f s\n", r.name, 12-len(r.name), "", r.cfg.Accounts, time.Since(start).Seconds())
	return nil
}

// step tells the run's progress that what starts, until end is called;
// howFar, if set, says how far it got.
func (r *paydayRig) step(what string, howFar func() string) (end func()) {
	return r.cfg.prog.Step(what, howFar)
}

// bookedSoFar says how many deposits core has booked of the run's.
func (r *paydayRig) bookedSoFar() string { return fmt.Sprintf("%d booked", r.booked.Load()) }

// visibleSoFar says how many entries the history shows of the run's.
func (r *paydayRig) visibleSoFar() string {
	return fmt.Sprintf("%d in the history", r.vis.visible.Load())
}

// newConsumingRig is a rig whose consumer runs from the start; stop stops
// it, as close does.
func newConsumingRig(ctx context.Context, cfg PaydayConfig, name string) (r *paydayRig, stop func(), err error) {
	if r, err = newPaydayRig(ctx, cfg, name); err != nil {
		return nil, nil, err
	}
	if stop, err = r.startConsumer(); err != nil {
		r.close()
		return nil, nil, err
	}
	r.cleanups = append(r.cleanups, stop)
	return r, stop, nil
}

// openDomain is a channel domain on the database dsn, reaching core over
// the rig's pooled connections (as the deposits do), its store wrapped by
// wrap if set.
func (r *paydayRig) openDomain(ctx context.Context, dsn string, wrap func(channel.Store) channel.Store) (*node.Domain, error) {
	return node.OpenDomain(ctx, node.ChannelConfig{DB: dsn, CoreURL: "http://" + r.core.Addr(), ServiceToken: paydayToken,
		CoreTransport: r.toCore, WrapStore: wrap})
}

// scratch returns a DSN of a fresh database for part, dropped at close: a
// copy of template, or empty if template is "".
func (r *paydayRig) scratch(ctx context.Context, part, template string) (string, error) {
	start := time.Now()
	if template != "" {
		defer r.step(fmt.Sprintf("copy (%s %s): copying %d prefilled history rows", r.name, part, r.prefill.rows), nil)()
	}
	dsn, drop, err := copyScratchDB(ctx, r.cfg.DB, template, part+".db")
	if err != nil {
		return "", err
	}
	r.cleanups = append(r.cleanups, drop)
	if template != "" {
		fmt.Fprintf(r.cfg.Out, "%-21s%9d prefilled history rows copied in %.1f s\n",
			"copy ("+r.name+" "+part+"):", r.prefill.rows, time.Since(start).Seconds())
	}
	return dsn, nil
}

// close undoes the rig's setup in reverse order; it is safe to call twice.
func (r *paydayRig) close() {
	if r.closed {
		return
	}
	r.closed = true
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

// deposit is the i-th salary of the run: round robin over the accounts, so
// every account's deposits are spread over the whole run.
func (r *paydayRig) deposit(i int) banksync.DepositRequest {
	return banksync.DepositRequest{ExternalRef: fmt.Sprintf("salary-%s-%08d", r.name, i), AccountID: r.ids[i%len(r.ids)],
		Amount: 2_500_000 + int64(i%1000), Sender: "acme-payroll"}
}

// postAll uploads every deposit in batch files from cfg.Clients uploaders
// and returns how long core took to book them all.
func (r *paydayRig) postAll(ctx context.Context) (time.Duration, error) {
	var next atomic.Int64
	files := (r.cfg.Deposits + r.cfg.BatchSize - 1) / r.cfg.BatchSize
	errs := make([]error, r.cfg.Clients)
	var wg sync.WaitGroup
	start := time.Now()
	for c := range r.cfg.Clients {
		wg.Go(func() {
			for errs[c] == nil {
				f := int(next.Add(1)) - 1
				if f >= files {
					return
				}
				batch := make([]banksync.DepositRequest, 0, r.cfg.BatchSize)
				for i := f * r.cfg.BatchSize; i < min((f+1)*r.cfg.BatchSize, r.cfg.Deposits); i++ {
					batch = append(batch, r.deposit(i))
				}
				postedAt := time.Now()
				results, err := r.client.Deposits(ctx, batch)
				if err != nil {
					errs[c] = fmt.Errorf("batch file %d: %w", f, err)
					return
				}
				for i, res := range results {
					if res.Err != nil {
						errs[c] = fmt.Errorf("deposit %s: %w", batch[i].ExternalRef, res.Err)
						return
					}
					r.vis.posted(res.Outcome.Entry, postedAt)
				}
				r.booked.Add(int64(len(results)))
			}
		})
	}
	wg.Wait()
	return time.Since(start), errors.Join(errs...)
}

// offerInFlightMax bounds the deposits --rate has posted and core not yet
// answered.
const offerInFlightMax = 4096

// offer posts single deposits at a steady rate for d, open loop: each is
// sent when due, whatever the ones before it are doing, and its latency
// counts from when it was due, so a stall is never hidden.
//
// It returns how many were booked and the time from the first due to the
// last answered: a core that cannot keep up takes longer than d.
func (r *paydayRig) offer(ctx context.Context, rate int, d time.Duration) (int64, time.Duration, error) {
	total := int(float64(rate) * d.Seconds())
	interval := time.Second / time.Duration(rate)
	var posted atomic.Int64
	var mu sync.Mutex
	var errs []error
	inFlight := make(chan struct{}, offerInFlightMax)
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < total && ctx.Err() == nil; i++ {
		due := start.Add(time.Duration(i) * interval)
		if wait := time.Until(due); wait > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
		inFlight <- struct{}{}
		wg.Go(func() {
			defer func() { <-inFlight }()
			results, err := r.client.Deposits(ctx, []banksync.DepositRequest{r.deposit(i)})
			if err == nil && results[0].Err != nil {
				err = results[0].Err
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("deposit %d: %w", i, err))
				mu.Unlock()
				return
			}
			r.vis.posted(results[0].Outcome.Entry, due)
			posted.Add(1)
			r.booked.Add(1)
		})
	}
	wg.Wait()
	return posted.Load(), time.Since(start), errors.Join(errs...)
}

// waitPublished waits until the relay has published every committed entry
// and returns how long that took.
func (r *paydayRig) waitPublished(ctx context.Context) (time.Duration, error) {
	defer r.step("phase 1: the relay publishes the last of them to Kafka", nil)()
	start := time.Now()
	for {
		backlog, err := r.core.Ledger().OutboxBacklog(ctx)
		if err != nil {
			return 0, err
		}
		if backlog == 0 {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// startConsumer runs a channel consumer on the rig's cluster.
func (r *paydayRig) startConsumer() (stop func(), err error) {
	c, err := kafka.NewConsumer(kafka.ConsumerConfig{Conn: r.core.Conn(), Topic: r.topic, Group: "payday-" + r.name + "." + r.topic, Lanes: r.cfg.Lanes}, r.ch)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(runCtx) }()
	var once sync.Once
	return func() { once.Do(func() { cancel(); <-done }) }, nil
}

// waitVisible waits until n entries have become visible in the history.
func (r *paydayRig) waitVisible(ctx context.Context, n int64, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for r.vis.visible.Load() < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d entries visible after %s", r.vis.visible.Load(), n, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

// prefillVerifiedAccounts is how many accounts, spread over all of them,
// verify compares in full when the histories were prefilled: reading
// every account's years of rows from both sides would take longer than
// the payday.
const prefillVerifiedAccounts = 500

// verify checks the channel's histories against core's ledger, entry for
// entry (P4): every account's in full, or with a prefill, every account's
// payday entries with the last prefilled one below them (no gap, no
// repeat where the two meet) and the full history of
// prefillVerifiedAccounts accounts. The channel's newest rows are read as
// many as core has past the point compared from, plus one: a row core does
// not have shows as a difference.
func (r *paydayRig) verify(ctx context.Context) (bool, error) {
	defer r.step("verifying: reading every account's history and core's ledger", nil)()
	bad, err := r.differing(ctx)
	return bad == 0, err
}

// differing counts the accounts whose history verify finds different
// from core's.
func (r *paydayRig) differing(ctx context.Context) (int64, error) {
	const workers = 8
	var bad atomic.Int64
	var firstBad sync.Once
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(r.ids) && errs[w] == nil; i += workers {
				id, after := r.ids[i], r.verifiedAfter(i)
				want, err := r.core.Store().Entries(ctx, id, after, math.MaxInt32)
				if err != nil {
					errs[w] = err
					return
				}
				got, err := r.chStore.History(ctx, id, math.MaxInt64, len(want)+1)
				if err != nil {
					errs[w] = err
					return
				}
				slices.Reverse(got)
				below := min(1, after) // the row below the compared ones, when there is one
				if len(got) != len(want)+int(below) || !slices.EqualFunc(want, got[below:], banksync.Entry.Equal) {
					bad.Add(1)
					firstBad.Do(func() {
						fmt.Fprintf(r.cfg.Out, "  %s: core has %d entries after seq %d, the channel's newest history %d, and they differ\n", id, len(want), after, len(got)-int(below))
					})
				}
			}
		})
	}
	wg.Wait()
	return bad.Load(), errors.Join(errs...)
}

// verifiedAfter is the seq after which verify compares account i: 0 (all
// of it) without a prefill or for a sampled account, else the one before
// its last prefilled entry.
func (r *paydayRig) verifiedAfter(i int) int64 {
	if r.prefill == nil || i%max(1, len(r.ids)/prefillVerifiedAccounts) == 0 {
		return 0
	}
	return max(0, r.prefill.counts[i]-1)
}

// verifies says what verify compares.
func (r *paydayRig) verifies() string {
	if r.prefill == nil {
		return "every account's history equals core's ledger"
	}
	sampled := (len(r.ids) + max(1, len(r.ids)/prefillVerifiedAccounts) - 1) / max(1, len(r.ids)/prefillVerifiedAccounts)
	return fmt.Sprintf("every account's payday entries and last prefilled one, and %d accounts' whole histories, equal core's ledger", sampled)
}

// deleteTopics deletes the bench's topics from a cluster it does not own;
// a failure is only reported, as the results stand without it.
func deleteTopics(conn kafka.Conn, topics ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := conn.NewClient()
	if err == nil {
		defer cl.Close()
		_, err = kadm.NewClient(cl).DeleteTopics(ctx, topics...)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "banksync bench payday: delete topics %v: %v\n", topics, err)
	}
}

// consumeOnly reads n records of the ledger topic with a plain client and
// does nothing with them: what the in-process cluster and the client can
// move at most.
func consumeOnly(ctx context.Context, conn kafka.Conn, topic string, n int64) (int64, time.Duration, error) {
	cl, err := conn.NewClient(kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return 0, 0, err
	}
	defer cl.Close()
	return drain(ctx, cl, n, func(*kgo.Record) error { return nil })
}

// drain polls cl until n records are handled (or a minute passes) and
// returns how many were and how long it took.
func drain(ctx context.Context, cl *kgo.Client, n int64, handle func(*kgo.Record) error) (int64, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var got int64
	start := time.Now()
	for got < n && ctx.Err() == nil {
		fetches := cl.PollRecords(ctx, int(min(n-got, 10_000)))
		var err error
		fetches.EachRecord(func(rec *kgo.Record) {
			if err == nil && got < n {
				if err = handle(rec); err == nil {
					got++
				}
			}
		})
		if err != nil {
			return got, time.Since(start), err
		}
	}
	return got, time.Since(start), nil
}

// naive drains n events the way the seed first described the consumer:
// one consumer, one record at a time, one database transaction per record,
// into a fresh channel database through the same sync engine.
func (r *paydayRig) naive(ctx context.Context, n int64) (int64, time.Duration, error) {
	// The same history as the rig's channel, so the naive consumer
	// appends to as deep a table as the lanes did.
	_, chTemplate, err := r.templates(ctx)
	if err != nil {
		return 0, 0, err
	}
	dsn, err := r.scratch(ctx, "naive", chTemplate)
	if err != nil {
		return 0, 0, err
	}
	d, err := r.openDomain(ctx, dsn, nil)
	if err != nil {
		return 0, 0, err
	}
	defer d.Close()
	ch := d.Channel
	cl, err := r.core.Conn().NewClient(kgo.ConsumerGroup("payday-naive."+r.topic),
		kgo.ConsumeTopics(r.topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return 0, 0, err
	}
	defer cl.Close()
	var applied atomic.Int64
	defer r.step(fmt.Sprintf("baseline: the naive consumer applies %d events one transaction each", n),
		func() string { return fmt.Sprintf("%d applied", applied.Load()) })()
	return drain(ctx, cl, n, func(rec *kgo.Record) error {
		ev, err := banksync.DecodeLedgerEvent(rec.Value)
		if err != nil {
			return err
		}
		if _, err = ch.Apply(ctx, ev.AccountID, []banksync.Entry{ev.Entry()}); err == nil {
			applied.Add(1)
		}
		return err
	})
}

// visibility records when each deposit was posted and when its entry
// became visible in the channel's history (its store transaction returned).
type visibility struct {
	index   map[string]int // account id -> index
	base    []int64        // per account: the seq its history held before the run (prefilled)
	visible atomic.Int64   // entries visible so far
	commits atomic.Int64   // group commits (Store.ApplyRuns calls) that wrote

	mu        sync.Mutex
	synced    []int64   // per account: seq visible so far
	postedAt  [][]int64 // per account, per seq-base-1: unix nanos
	bookedAt  [][]int64 // when core committed it
	visibleAt [][]int64
}

// newVisibility follows ids, each expected to see about perAccount entries
// after the base seq it starts at (base nil: all start at 0).
func newVisibility(ids []string, perAccount int, base []int64) *visibility {
	if base == nil {
		base = make([]int64, len(ids))
	}
	v := &visibility{index: make(map[string]int, len(ids)), base: base, synced: slices.Clone(base),
		postedAt: make([][]int64, len(ids)), bookedAt: make([][]int64, len(ids)), visibleAt: make([][]int64, len(ids))}
	for i, id := range ids {
		v.index[id] = i
		v.postedAt[i] = make([]int64, 0, perAccount)
		v.bookedAt[i] = make([]int64, 0, perAccount)
		v.visibleAt[i] = make([]int64, 0, perAccount)
	}
	return v
}

// setAt sets the n-th time of s (from 1), growing s to hold it.
func setAt(s *[]int64, n int64, t int64) {
	for int64(len(*s)) < n {
		*s = append(*s, 0)
	}
	(*s)[n-1] = t
}

// posted records that e, posted at at, was booked by core.
func (v *visibility) posted(e banksync.Entry, at time.Time) {
	i, ok := v.index[e.AccountID]
	if !ok {
		return
	}
	if e.Seq <= v.base[i] {
		return
	}
	v.mu.Lock()
	setAt(&v.postedAt[i], e.Seq-v.base[i], at.UnixNano())
	setAt(&v.bookedAt[i], e.Seq-v.base[i], e.BookedAt.UnixNano())
	v.mu.Unlock()
}

// synced records that account's history holds every entry through seq.
func (v *visibility) syncedTo(account string, seq int64, at time.Time) {
	i, ok := v.index[account]
	if !ok {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for s := v.synced[i] + 1; s <= seq; s++ {
		setAt(&v.visibleAt[i], s-v.base[i], at.UnixNano())
	}
	if seq > v.synced[i] {
		v.visible.Add(seq - v.synced[i])
		v.synced[i] = seq
	}
}

// latencies returns, each sorted, the posted-to-visible time of every
// entry and its two parts: posted to booked by core, booked to visible.
func (v *visibility) latencies() (total, core, sync []time.Duration) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for i := range v.postedAt {
		for s, p := range v.postedAt[i] {
			if p != 0 && s < len(v.visibleAt[i]) && v.visibleAt[i][s] != 0 {
				b, vis := v.bookedAt[i][s], v.visibleAt[i][s]
				total = append(total, max(0, time.Duration(vis-p)))
				core = append(core, max(0, time.Duration(b-p)))
				sync = append(sync, max(0, time.Duration(vis-b)))
			}
		}
	}
	for _, l := range [][]time.Duration{total, core, sync} {
		slices.Sort(l)
	}
	return total, core, sync
}

// observedStore tells visibility when Apply and ApplyRuns commit.
type observedStore struct {
	channel.Store
	vis *visibility
}

func (s *observedStore) Apply(ctx context.Context, account string, es []banksync.Entry, at time.Time) (channel.AccountState, error) {
	st, err := s.Store.Apply(ctx, account, es, at)
	if err == nil {
		s.vis.syncedTo(account, st.SyncedSeq, time.Now())
	}
	return st, err
}

func (s *observedStore) ApplyRuns(ctx context.Context, runs []channel.Run, at time.Time) ([]channel.RunResult, error) {
	results, err := s.Store.ApplyRuns(ctx, runs, at)
	if err == nil {
		s.vis.commits.Add(1)
		now := time.Now()
		for i, res := range results {
			if !res.Gap {
				s.vis.syncedTo(runs[i].Account, res.State.SyncedSeq, now)
			}
		}
	}
	return results, err
}
