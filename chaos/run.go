package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"banksync/channel"
	"banksync/internal/progress"
	"banksync/kafka"
	"banksync/ledger"
	"banksync/node"
)

// Config is one chaos run. Zero values take the defaults.
type Config struct {
	Seed      uint64
	Duration  time.Duration // how long the workload and the faults run
	Dir       string        // where the databases go; "" means a fresh temporary directory
	Channels  int           // channel instances sharing one history database and one consumer group
	Customers int
	// SettleMax bounds the wait, once the faults stop, for every history to
	// reach core's ledger (P4).
	SettleMax time.Duration
	Faults    Faults
	Logger    *slog.Logger
	// Progress receives what the run is doing, a line as each stage
	// starts (start, setup, workload under faults, the last faults,
	// settling and checking) and every few seconds while one runs; nil
	// says nothing.
	Progress io.Writer

	// Unsafe switches one protection off, so a test can show the checker
	// catches the promise it keeps. Never set outside those tests.
	Unsafe Unsafe
}

// Unsafe names the protections a test can switch off.
type Unsafe struct {
	NoFence            bool // the reconciler fails transfers by its clock (P3)
	NoInFlightRefusal  bool // a second transfer while one is pending goes to core (P1)
	OutOfOrder         bool // history written past a hole (P4, P5)
	CommitBeforeApply  bool // offsets committed before the records are applied (P4)
	NoDeadLetterRepair bool // dead letters wait for an operator's replay (P4)
}

// Faults sets how often each kind of fault is injected. A negative rate or
// interval switches that kind off; zero takes the default.
type Faults struct {
	// Per request from a channel to core.
	DropRequest, DropResponse, DelayRequest, SlowCore float64
	// Per produce or fetch request to the broker.
	Broker float64
	// Per history write.
	HistoryWrite float64
	// How often a history outage (every write fails) starts, and how long
	// it lasts.
	HistoryOutageEvery, HistoryOutageFor time.Duration
	// How often core restarts; a consumer restarts; the relay re-publishes
	// recent entries (duplicate delivery); held requests reach core late;
	// core publishes an entry's event in a schema version the channels
	// cannot decode.
	CoreRestartEvery, ConsumerRestartEvery, DuplicateEvery, ReleaseLateEvery, UndecodableEvery time.Duration
	// ClockSkewMax bounds how far each channel's clock is off core's.
	ClockSkewMax time.Duration
}

func (f *Faults) setDefaults() {
	rate := func(r *float64, def float64) {
		if *r == 0 {
			*r = def
		}
		*r = max(*r, 0)
	}
	every := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	rate(&f.DropRequest, 0.02)
	rate(&f.DropResponse, 0.02)
	rate(&f.DelayRequest, 0.01)
	rate(&f.SlowCore, 0.01)
	rate(&f.HistoryWrite, 0.02)
	rate(&f.Broker, 0.01)
	every(&f.HistoryOutageEvery, 7*time.Second)
	every(&f.HistoryOutageFor, 500*time.Millisecond)
	every(&f.CoreRestartEvery, 11*time.Second)
	every(&f.ConsumerRestartEvery, 5*time.Second)
	every(&f.DuplicateEvery, 3*time.Second)
	every(&f.ReleaseLateEvery, 2*time.Second)
	every(&f.UndecodableEvery, 3*time.Second)
	every(&f.ClockSkewMax, 200*time.Millisecond)
}

func (c *Config) setDefaults() {
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Channels <= 0 {
		c.Channels = 2
	}
	if c.Customers <= 0 {
		c.Customers = 8
	}
	if c.SettleMax <= 0 {
		c.SettleMax = settleMaxDefault
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.Faults.setDefaults()
}

// Channel settings of a run: short, so that faults resolve within it.
const (
	transferDeadline  = 2 * time.Second
	coreTimeout       = 300 * time.Millisecond
	reconcileInterval = 200 * time.Millisecond
	reconcileGrace    = 200 * time.Millisecond
	repairInterval    = 300 * time.Millisecond
	serviceToken      = "chaos-token"
	// chaosJWTSecret keys the replicas' customers' tokens; the in-process
	// workload calls the domain and never shows one.
	chaosJWTSecret   = "chaos customers' token secret, 32 bytes"
	accountsEach     = 2
	openingBalance   = 1_000_000
	settleMaxDefault = 60 * time.Second
)

// system is everything a run starts: core, the cluster, the channels.
type system struct {
	cfg     Config
	dir     string
	cluster *kafka.Cluster
	core    *coreProc
	chans   []*chanProc
	stats   *counters
	calmed  atomic.Bool // faults are off
}

// Run runs cfg's workload against a system under faults and checks every
// promise, during the run and after it has quiesced.
func Run(ctx context.Context, cfg Config) (*Report, error) { return run(ctx, cfg, inProcess) }

// driver gives the workload core and the channel replicas to drive, once
// the system has started, and what stops them.
type driver func(s *system) (core bank, replicas []replica, stop func(), err error)

func run(ctx context.Context, cfg Config, drive driver) (*Report, error) {
	cfg.setDefaults()
	s := &system{cfg: cfg, stats: newCounters()}
	// One stage at a time says what the run is doing; the next one, or
	// the run's end, ends it.
	p, endStage := progress.New(cfg.Progress, "chaos: "), func() {}
	defer func() { endStage() }()
	stage := func(what string, howFar func() string) {
		endStage()
		endStage = p.Step(what, howFar)
	}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "banksync-chaos-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	s.dir = dir
	stage(fmt.Sprintf("starting core, the Kafka cluster and %d channels", cfg.Channels), nil)
	if err := s.start(ctx); err != nil {
		s.stop()
		return nil, err
	}
	defer s.stop()

	core, replicas, stopDriver, err := drive(s)
	if err != nil {
		return nil, fmt.Errorf("chaos driver: %w", err)
	}
	defer stopDriver()
	w := newWorkload(core, replicas, s.stats, cfg.Customers, cfg.Seed)
	stage(fmt.Sprintf("opening %d accounts for %d customers", len(w.all), cfg.Customers), nil)
	if err := w.setup(ctx); err != nil {
		return nil, fmt.Errorf("chaos setup: %w", err)
	}
	stage(fmt.Sprintf("running the workload under faults for %s", cfg.Duration), s.stats.sofar)
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	var wg sync.WaitGroup
	wg.Go(func() { w.run(runCtx) })
	wg.Go(func() { s.injectFaults(runCtx) })
	wg.Wait()
	cancel()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	stage("the last faults: a crash while the history stalls, an outage at the end", nil)
	s.crashDuringStall(ctx, w)
	s.outageAtTheEnd(ctx, w)
	s.calm()
	stage(fmt.Sprintf("faults off; waiting for every history to settle (up to %s) and checking every promise", cfg.SettleMax), nil)
	report := s.check(ctx, w)
	if ctx.Err() != nil {
		return nil, ctx.Err() // called off while settling: nothing to report
	}
	return report, nil
}

// coreProc is core — a node.Core — on a fixed address, so it can restart
// where the channels expect it.
type coreProc struct {
	mu     sync.Mutex
	path   string
	addr   string
	core   *node.Core
	halted bool
	poison *poisoningPublisher
	stats  *counters
}

func (s *system) start(ctx context.Context) error {
	var err error
	if s.cluster, err = kafka.StartCluster(kafka.ClusterConfig{Partitions: 4, Logger: s.cfg.Logger}); err != nil {
		return err
	}
	brokerRNG := rand.New(rand.NewPCG(s.cfg.Seed, 5))
	// The first produce and the first fetch of a run always fail, so a run
	// injects both kinds however few requests a loaded machine lets it
	// make (a short run once made no fetch failure at all); later ones fail
	// at the seeded rate. The broker calls this from one goroutine.
	failedOnce := map[int16]bool{}
	s.cluster.FailRequests(func(key int16) bool {
		if s.calmed.Load() || s.cfg.Faults.Broker <= 0 || failedOnce[key] && brokerRNG.Float64() >= s.cfg.Faults.Broker {
			return false
		}
		failedOnce[key] = true
		if key == kmsg.Produce.Int16() {
			s.stats.fault("broker_produce_failed")
		} else {
			s.stats.fault("broker_fetch_failed")
		}
		return true
	})
	s.core = &coreProc{path: filepath.Join(s.dir, "core.db"), addr: "127.0.0.1:0", stats: s.stats}
	if err := s.core.start(ctx, kafka.Brokers(s.cluster.Addrs()...), s.cfg.Logger); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(s.cfg.Seed, 1))
	for i := range s.cfg.Channels {
		skewMax := max(s.cfg.Faults.ClockSkewMax, 0)
		skew := time.Duration(rng.Int64N(int64(2*skewMax)+1)) - skewMax
		cp, err := s.startChannel(ctx, i, skew)
		if err != nil {
			return err
		}
		s.chans = append(s.chans, cp)
	}
	return nil
}

func (c *coreProc) start(ctx context.Context, conn kafka.Conn, log *slog.Logger) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.poison == nil {
		var err error
		if c.poison, err = newPoisoningPublisher(conn, c.stats); err != nil {
			return err
		}
	}
	cfg := node.CoreConfig{Listen: c.addr, DB: "sqlite:" + c.path, Kafka: conn, Partitions: 4, ServiceToken: serviceToken,
		Logger: log, Now: coreNow, WrapPublisher: c.poison.wrap}
	// After a restart the old socket may linger a moment.
	var err error
	for range 50 {
		var n *node.Core
		if n, err = node.StartCore(ctx, cfg); err == nil {
			// Published only once it all works, so current() never hands
			// out a half-started core.
			c.core, c.addr, c.halted = n, n.Addr(), false
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// coreLag is how far core's clock runs behind real time. The channels' own
// skews are far smaller, so a request the network held past its deadline
// can still look in time to core when it arrives: only the fence stops it
// (P3 is "fenced, not merely timed").
const coreLag = time.Second

func coreNow() time.Time { return time.Now().Add(-coreLag) }

// halt stops core as a crash would look to its clients: connections cut,
// requests in flight failing. What was committed stays.
func (c *coreProc) halt() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.core == nil || c.halted {
		return
	}
	c.core.Abort()
	c.halted = true // current() hands out the closed core until the restart: calls fail, as a crashed core's do
}

func (c *coreProc) close() {
	c.halt()
	if c.poison != nil {
		c.poison.close()
	}
}

// current returns core's ledger and store as of now (they change at a
// restart).
func (c *coreProc) current() (*ledger.Ledger, ledger.Store) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.core.Ledger(), c.core.Store()
}

// chanProc is one channel replica — a node.Channel — with its own store
// handle on the shared history database (with injected write failures),
// its own network to core (with injected faults) and its own clock.
type chanProc struct {
	id    int
	store *faultyStore
	net   *Transport
	node  *node.Channel
	ch    *channel.Channel
}

func (s *system) startChannel(ctx context.Context, i int, skew time.Duration) (*chanProc, error) {
	rng := rand.New(rand.NewPCG(s.cfg.Seed, uint64(100+i)))
	cp := &chanProc{id: i, net: NewTransport(nil)}
	storeSeed := rng.Uint64()
	cp.net.Choose = chooser(s.cfg.Faults, rng.Uint64(), s.stats, &s.calmed)
	n, err := node.StartChannel(ctx, node.ChannelConfig{
		Listen: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(s.dir, "channel.db"), CoreURL: "http://" + s.core.addr,
		ServiceToken: serviceToken, JWTSecret: chaosJWTSecret, CursorSecret: "chaos cursor secret, 32 bytes or more",
		Kafka: kafka.Brokers(s.cluster.Addrs()...), Logger: s.cfg.Logger,
		// DrainTimeout -1: a consumer restart is a crash; the lanes' work is cut off.
		Consumer: kafka.ConsumerConfig{Group: "chaos-channel", Lanes: 8, AttemptsMax: 3, DrainTimeout: -1,
			UnsafeCommitBeforeApply: s.cfg.Unsafe.CommitBeforeApply},
		Repair:             kafka.RepairConfig{Interval: repairInterval},
		NoDeadLetterRepair: s.cfg.Unsafe.NoDeadLetterRepair,
		Channel: channel.Config{Deadline: transferDeadline, CoreTimeout: coreTimeout,
			ReconcileInterval: reconcileInterval, ReconcileGrace: reconcileGrace, ReadSyncTimeout: coreTimeout,
			Now: func() time.Time { return time.Now().Add(skew) },
			Unsafe: channel.Unsafe{NoFence: s.cfg.Unsafe.NoFence, NoInFlightRefusal: s.cfg.Unsafe.NoInFlightRefusal,
				OutOfOrder: s.cfg.Unsafe.OutOfOrder}},
		CoreTransport: cp.net,
		WrapStore: func(real channel.Store) channel.Store {
			cp.store = newFaultyStore(real, s.cfg.Faults.HistoryWrite, storeSeed, s.stats)
			return cp.store
		},
	})
	if err != nil {
		return nil, err
	}
	cp.node, cp.ch = n, n.Domain()
	return cp, nil
}

func (cp *chanProc) close() { cp.node.Close() }

func (s *system) stop() {
	for _, cp := range s.chans {
		cp.close()
	}
	if s.core != nil {
		s.core.close()
	}
	if s.cluster != nil {
		s.cluster.Close()
	}
}

// injectFaults runs the faults that come on a schedule until ctx ends.
func (s *system) injectFaults(ctx context.Context) {
	f := s.cfg.Faults
	schedule(ctx, s.cfg.Seed, s.cfg.Duration, []scheduled{
		{every: f.CoreRestartEvery, do: func(*rand.Rand) { s.restartCore(ctx) }},
		{every: f.ConsumerRestartEvery, do: func(rng *rand.Rand) { s.restartConsumer(rng.IntN(len(s.chans))) }},
		{every: f.HistoryOutageEvery, do: func(*rand.Rand) { s.historyOutage(ctx, f.HistoryOutageFor) }},
		{every: f.DuplicateEvery, do: func(rng *rand.Rand) { s.duplicateEvents(ctx, 1+rng.Int64N(50)) }},
		{every: f.ReleaseLateEvery, do: func(*rand.Rand) { s.releaseLate() }},
		{every: f.UndecodableEvery, do: func(*rand.Rand) { s.core.poison.arm(1) }},
	})
}

// restartCore stops core and starts it again, retrying until it is up: a
// restart that overlaps the end of the run must not leave core down.
func (s *system) restartCore(ctx context.Context) {
	s.stats.fault("core_restart")
	s.core.halt()
	time.Sleep(100 * time.Millisecond)
	for attempt := 1; ; attempt++ {
		err := s.core.start(context.WithoutCancel(ctx), kafka.Brokers(s.cluster.Addrs()...), s.cfg.Logger)
		if err == nil {
			return
		}
		s.cfg.Logger.Error("chaos: core did not restart; retrying", "attempt", attempt, "err", err)
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *system) restartConsumer(i int) {
	s.stats.fault("consumer_restart")
	s.chans[i].node.StopConsumer()
	if err := s.chans[i].node.StartConsumer(); err != nil {
		s.cfg.Logger.Error("chaos: consumer did not restart", "err", err)
	}
}

func (s *system) historyOutage(ctx context.Context, d time.Duration) {
	s.stats.fault("history_outage")
	for _, cp := range s.chans {
		cp.store.outage(true)
	}
	go func() {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
		for _, cp := range s.chans {
			cp.store.outage(false)
		}
	}()
}

// duplicateEvents moves the relay's position back, so it publishes the
// last n entries again: duplicate delivery, as after a relay crash. While
// core is restarting, or its relay has published nothing yet (its first
// produce always fails), it tries again every 100 ms until the run ends: a
// short run has only two or three of these, and must not end without one
// (clean-clone CI runs' seeds 1 and 2 did).
func (s *system) duplicateEvents(ctx context.Context, n int64) {
	for {
		_, store := s.core.current()
		pos, err := store.RelayPosition(ctx)
		if err == nil && pos > 0 && store.SetRelayPosition(ctx, max(0, pos-n)) == nil {
			s.stats.faultN("duplicate_events", min(n, pos))
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(duplicateRetry):
		}
	}
}

// duplicateRetry is how soon duplicateEvents tries again.
const duplicateRetry = 100 * time.Millisecond

func (s *system) releaseLate() {
	for _, cp := range s.chans {
		if n := len(cp.net.Release()); n > 0 {
			s.stats.faultN("late_delivery", int64(n))
		}
	}
}

// crashDuringStall is the run's last fault: a burst of deposits to every
// account while the history database hangs, every consumer crashing while
// their writes hang, and the hung writes then failing (the database's
// connections died). What the crashed members had not applied must be
// re-delivered to the members that take over.
func (s *system) crashDuringStall(ctx context.Context, w *workload) {
	s.stats.fault("crash_during_stall")
	for _, cp := range s.chans {
		cp.store.stall(true)
	}
	// Some of the burst's events are undecodable too: the last entries of
	// their accounts, which no later event will fill in.
	if s.cfg.Faults.UndecodableEvery > 0 {
		s.core.poison.arm(3)
	}
	w.depositToAll(ctx, "final")
	sleep(ctx, 300*time.Millisecond)
	for _, cp := range s.chans {
		cp.node.StopConsumer()
	}
	for _, cp := range s.chans {
		cp.store.stall(false)
	}
	for i := range s.chans {
		s.restartConsumer(i)
	}
}

// outageAtTheEnd is the run's last fault: a deposit to every other account
// while the history database refuses every call, for longer than the
// consumers' retries last. Those accounts' last entries are then
// dead-lettered, their stale marks refused, and no later event fills the
// hole: only the dead-letter repair brings them into the histories (P4).
// The other half get no later event either, so what an earlier fault lost
// there is not filled in by this one's entries.
func (s *system) outageAtTheEnd(ctx context.Context, w *workload) {
	s.stats.fault("outage_at_the_end")
	for _, cp := range s.chans {
		cp.store.outage(true)
	}
	var half []string
	for i, id := range w.all {
		if i%2 == 0 {
			half = append(half, id)
		}
	}
	w.depositTo(ctx, "outage", half)
	sleep(ctx, 2*time.Second)
	for _, cp := range s.chans {
		cp.store.outage(false)
	}
}

// calm switches every fault off and delivers what the network still held.
func (s *system) calm() {
	s.calmed.Store(true)
	for _, cp := range s.chans {
		cp.store.calm()
		cp.net.Release()
	}
}

// chooser draws the fault of each channel → core request from rng.
func chooser(f Faults, seed uint64, stats *counters, calmed *atomic.Bool) func(*http.Request) Fault {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, 3))
	return func(req *http.Request) Fault {
		if calmed.Load() {
			return 0
		}
		mu.Lock()
		x := rng.Float64()
		mu.Unlock()
		for _, c := range []struct {
			rate  float64
			fault Fault
			name  string
		}{{f.DropRequest, DropRequest, "request_lost"}, {f.DropResponse, DropResponse, "response_lost"},
			{f.DelayRequest, DelayRequest, "request_held"}, {f.SlowCore, SlowCore, "core_slow"}} {
			if x < c.rate {
				stats.fault(c.name)
				return c.fault
			}
			x -= c.rate
		}
		return 0
	}
}

// errInjected is what an injected history database failure returns.
var errInjected = errors.New("chaos: injected history database failure")

// faultyStore is the history database under faults: writes fail at a rate;
// during an outage every call fails, reads and writes alike — MarkStale and
// ClearStale too, as a real outage spares nothing; during a stall writes
// hang, then fail.
type faultyStore struct {
	HookedStore
	stats *counters

	mu      sync.Mutex
	rng     *rand.Rand
	rate    float64
	down    bool
	calmed  bool
	stalled chan struct{} // while not nil, writes wait for it to close, then fail
}

func newFaultyStore(s channel.Store, rate float64, seed uint64, stats *counters) *faultyStore {
	f := &faultyStore{rate: rate, rng: rand.New(rand.NewPCG(seed, 4)), stats: stats}
	f.HookedStore = HookedStore{Store: s, Before: func(ctx context.Context, write bool) error {
		if write {
			return f.fail(ctx)
		}
		return f.unreachable()
	}}
	return f
}

func (f *faultyStore) outage(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down && !f.calmed
}

// stall makes writes hang until stall(false), and then fail.
func (f *faultyStore) stall(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case on && f.stalled == nil:
		f.stalled = make(chan struct{})
	case !on && f.stalled != nil:
		close(f.stalled)
		f.stalled = nil
	}
}

func (f *faultyStore) calm() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calmed, f.down = true, false
}

// fail decides the fate of a write.
func (f *faultyStore) fail(ctx context.Context) error {
	f.mu.Lock()
	if stalled := f.stalled; stalled != nil {
		f.mu.Unlock()
		f.stats.fault("history_write_hung")
		select {
		case <-stalled:
		case <-ctx.Done():
		}
		return errInjected
	}
	defer f.mu.Unlock()
	if f.calmed {
		return nil
	}
	if f.down {
		f.stats.fault("history_write_failed_outage")
		return errInjected
	}
	if f.rng.Float64() < f.rate {
		f.stats.fault("history_write_failed")
		return errInjected
	}
	return nil
}

// unreachable decides the fate of a read: it fails during an outage.
func (f *faultyStore) unreachable() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		f.stats.fault("history_read_failed_outage")
		return errInjected
	}
	return nil
}
