package deployed_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"

	"banksync"
	"banksync/chaos"
	"banksync/kafka/kafkatest"
	"banksync/postgres"
)

// The deployed shape's settings: short, so that faults resolve within a
// run. The channels' consumer session timeout is the consumer's own (10 s).
const (
	replicas          = 3
	brokers           = 3 // the kafkatest cluster's nodes
	partitions        = 4
	deadline          = 3 * time.Second
	coreTimeout       = 500 * time.Millisecond
	reconcileInterval = 300 * time.Millisecond
	reconcileGrace    = 300 * time.Millisecond
	serviceToken      = "deployed-chaos-service-token"
	jwtSecret         = "deployed chaos customer token secret, 32+ bytes"
	// coreLag is how far core's clock runs behind real time, and skewMax
	// bounds each replica's skew, as in the in-process run: a request held
	// past its deadline can still look in time to core when it arrives, so
	// only the fence stops it.
	coreLag = time.Second
	skewMax = 200 * time.Millisecond
	// sessionTimeout is the consumer's: a replica paused longer than it
	// loses its partitions while it sleeps.
	sessionTimeout = 10 * time.Second
	// pendingMax bounds, once the faults have ended, how long a transfer
	// may stay pending (P2); settleMax how long the histories may take to
	// reach core's ledger (P4): a rebalance after the restarts included.
	pendingMax = 20 * time.Second
	settleMax  = 120 * time.Second
)

// rig is the deployed shape on loopback: PostgreSQL of its own with core's
// and the channels' databases, a three-node Apache Kafka cluster, one core
// process and three channel replicas sharing the history database and one
// consumer group, each reaching core through a proxy the run controls.
type rig struct {
	t       *testing.T
	dir     string // logs
	pg      *pgServer
	kafka   *kafkatest.Cluster
	coreDSN string
	chanDSN string
	core    *proc
	chans   []*proc
	proxies []*toxiproxy.Proxy
	skews   []time.Duration // each replica's clock

	settleMax time.Duration
	brokers   sync.Mutex // one broker down at a time
	database  sync.Mutex // one database fault at a time: none while PostgreSQL restarts
	ledger    *postgres.LedgerStore
	history   *postgres.ChannelStore
}

// rigConfig is what differs between runs: the seed (the replicas'
// clocks), and a protection switched off in every process, for the
// checker's own tests.
type rigConfig struct {
	seed      uint64
	unsafe    string        // --chaos-unsafe
	settleMax time.Duration // 0: settleMax
}

func newRig(t *testing.T, cfg rigConfig) *rig {
	t.Helper()
	ctx := t.Context()
	r := &rig{t: t, dir: logDir(t), settleMax: cmp.Or(cfg.settleMax, settleMax)}
	bin := banksyncBin
	r.pg = startPostgres(t)
	r.kafka = kafkatest.Start(t)
	var err error
	if r.coreDSN, err = r.pg.createDatabase(ctx, "core"); err != nil {
		t.Fatal(err)
	}
	if r.chanDSN, err = r.pg.createDatabase(ctx, "channel"); err != nil {
		t.Fatal(err)
	}
	brokers := strings.Join(r.kafka.Addrs(), ",")
	corePort := mustPort(t)
	r.core = &proc{name: "core", bin: bin, log: filepath.Join(r.dir, "core.log"),
		base: fmt.Sprintf("http://127.0.0.1:%d", corePort),
		args: []string{"core", "--listen", fmt.Sprintf("127.0.0.1:%d", corePort), "--db", r.coreDSN, "--kafka", brokers,
			"--partitions", fmt.Sprint(partitions), "--service-token", serviceToken, "--log-format", "text",
			"--chaos-clock-skew", (-coreLag).String()}}
	t.Cleanup(r.core.stop)
	if err := r.core.start(ctx); err != nil {
		t.Fatal(err)
	}

	tp := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	rng := rand.New(rand.NewPCG(cfg.seed, 1))
	for i := range replicas {
		proxy := toxiproxy.NewProxy(tp, fmt.Sprintf("channel-%d-to-core", i), fmt.Sprintf("127.0.0.1:%d", mustPort(t)), fmt.Sprintf("127.0.0.1:%d", corePort))
		if err := proxy.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(proxy.Stop)
		r.proxies = append(r.proxies, proxy)
		skew := time.Duration(rng.Int64N(int64(2*skewMax)+1)) - skewMax
		r.skews = append(r.skews, skew)
		port := mustPort(t)
		p := &proc{name: fmt.Sprintf("channel-%d", i), bin: bin, log: filepath.Join(r.dir, fmt.Sprintf("channel-%d.log", i)),
			base: fmt.Sprintf("http://127.0.0.1:%d", port),
			args: []string{"channel", "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--db", r.chanDSN,
				"--core-url", "http://" + proxy.Listen, "--service-token", serviceToken, "--jwt-secret", jwtSecret,
				"--kafka", brokers, "--lanes", "16", "--rate-transfers", "0", "--rate-reads", "0",
				"--deadline", deadline.String(), "--core-timeout", coreTimeout.String(),
				"--reconcile-interval", reconcileInterval.String(), "--reconcile-grace", reconcileGrace.String(),
				"--log-format", "text", "--chaos-clock-skew", skew.String(), "--chaos-unsafe", cfg.unsafe}}
		t.Cleanup(p.stop)
		if err := p.start(ctx); err != nil {
			t.Fatal(err)
		}
		r.chans = append(r.chans, p)
	}
	// The checker's own view of the two databases.
	if r.ledger, err = postgres.OpenLedgerReader(ctx, r.coreDSN); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.ledger.Close() })
	if r.history, err = postgres.OpenChannel(ctx, r.chanDSN); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.history.Close() })
	return r
}

// logDir is where the processes' logs and the fault schedule go: a
// temporary folder, or $BANKSYNC_DEPLOYED_CHAOS_LOGS, kept for a look
// after the run.
func logDir(t *testing.T) string {
	if d := os.Getenv("BANKSYNC_DEPLOYED_CHAOS_LOGS"); d != "" {
		d = filepath.Join(d, fmt.Sprintf("%s-%s", strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UTC().Format("20060102T150405")))
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

func mustPort(t *testing.T) int {
	p, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// run drives the workload for d over the rig, with faults, finale and
// the calm that ends them.
func (r *rig) run(seed uint64, d time.Duration, faults []chaos.DeployedFault, finale bool) *chaos.Report {
	r.t.Helper()
	schedule, err := os.Create(filepath.Join(r.dir, "faults.log"))
	if err != nil {
		r.t.Fatal(err)
	}
	defer schedule.Close()
	urls := make([]string, len(r.chans))
	for i, p := range r.chans {
		urls[i] = p.base
	}
	run := chaos.Deployed{Seed: seed, Duration: d, CoreURL: r.core.base, ServiceToken: serviceToken,
		ChannelURLs: urls, JWTSecret: []byte(jwtSecret), Ledger: r.ledger, History: r.history,
		Faults: faults, Calm: r.calm, PendingMax: pendingMax, SettleMax: r.settleMax, ClockSkewMax: skewMax,
		Logger: slog.New(slog.NewTextHandler(schedule, nil))}
	if finale {
		run.Finale = r.crashDuringStall
	}
	rep, err := chaos.RunDeployed(r.t.Context(), run)
	if err != nil {
		r.t.Fatalf("%v; the processes' logs are in %s", err, r.dir)
	}
	skewed := 1 // core
	for _, s := range r.skews {
		if s != 0 {
			skewed++
		}
	}
	rep.Faults["clock_skew"] = int64(skewed)
	b, _ := json.Marshal(rep)
	r.t.Logf("seed %d: %s", seed, b)
	return rep
}

// faultErrors is what faults.log says of the kind's failures: the folder
// is gone once the test ends, unless kept.
func (r *rig) faultErrors(kind string) string {
	data, _ := os.ReadFile(filepath.Join(r.dir, "faults.log"))
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, "level=ERROR") && strings.Contains(l, "kind="+kind+" ") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// calmTimeout bounds the calm: every broker and process back, from
// scratch if need be.
const calmTimeout = 5 * time.Minute

// calm ends every fault: the network clean, PostgreSQL up and every
// database taking connections, every broker and process up.
func (r *rig) calm(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, calmTimeout)
	defer cancel()
	for _, p := range r.proxies {
		p.Toxics.ResetToxics(ctx)
	}
	if err := r.pg.ensureUp(ctx); err != nil {
		return err
	}
	for _, dsn := range []string{r.coreDSN, r.chanDSN} {
		if err := postgres.RefuseConnections(ctx, dsn, false); err != nil {
			return err
		}
	}
	r.brokers.Lock()
	err := r.startBrokers(ctx)
	r.brokers.Unlock()
	if err != nil {
		return err
	}
	for _, p := range append([]*proc{r.core}, r.chans...) {
		p.resume()
		if err := p.start(ctx); err != nil {
			return err
		}
	}
	return nil
}

// faults are every kind the deployed run injects, each about every
// every (the run caps it at a third of its length).
func (r *rig) faults() []chaos.DeployedFault {
	return []chaos.DeployedFault{
		{Name: "channel_killed", Every: 12 * time.Second, Do: r.killChannel},
		{Name: "core_killed", Every: 20 * time.Second, Do: r.killCore},
		{Name: "channel_paused", Every: 30 * time.Second, Do: r.pauseChannel},
		{Name: "broker_leader_killed", Every: 20 * time.Second, Do: r.killLeader},
		{Name: "controller_killed", Every: 30 * time.Second, Do: r.killController},
		{Name: "db_connections_terminated", Every: 8 * time.Second, Do: r.terminateConnections},
		{Name: "db_connections_refused", Every: 15 * time.Second, Do: r.refuseConnections},
		{Name: "postgres_restarted", Every: 40 * time.Second, Max: 1, Do: r.restartPostgres},
		{Name: "network_latency", Every: 6 * time.Second, Do: r.latency},
		{Name: "network_cut_mid_response", Every: 6 * time.Second, Do: r.cutMidResponse},
		{Name: "request_delivered_late", Every: 8 * time.Second, Do: r.deliverLate},
		{Name: "event_undecodable", Every: 10 * time.Second, Do: r.undecodableEvent},
	}
}

// restartAfter waits for d (less if the run ends), then starts p again.
// A start must not be cut short by the run's end: it runs on its own
// bound.
func restartAfter(ctx context.Context, p *proc, d time.Duration) error {
	sleep(ctx, d)
	return p.start(context.WithoutCancel(ctx))
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func (r *rig) killChannel(ctx context.Context, rng *rand.Rand) error {
	p := r.chans[rng.IntN(len(r.chans))]
	if err := p.kill(); err != nil {
		return err
	}
	return restartAfter(ctx, p, time.Duration(200+rng.IntN(1500))*time.Millisecond)
}

// killCore kills core, mid-request: pending transfers must settle (P2)
// once it is back.
func (r *rig) killCore(ctx context.Context, rng *rand.Rand) error {
	if err := r.core.kill(); err != nil {
		return err
	}
	return restartAfter(ctx, r.core, time.Duration(200+rng.IntN(1500))*time.Millisecond)
}

// pauseChannel freezes a replica past the consumer session timeout: the
// group gives its partitions to the others while it sleeps, and it wakes
// believing it still owns them. It must not commit or apply out of order.
func (r *rig) pauseChannel(ctx context.Context, rng *rand.Rand) error {
	// A replica, of those running: another fault may have one down just now.
	var paused *proc
	for _, i := range rng.Perm(len(r.chans)) {
		if r.chans[i].pause() == nil {
			paused = r.chans[i]
			break
		}
	}
	if paused == nil {
		return errors.New("no replica running to pause")
	}
	sleep(ctx, sessionTimeout+time.Duration(1000+rng.IntN(3000))*time.Millisecond)
	// An error here is a replica killed in its sleep: it was started
	// again, awake.
	paused.resume()
	return nil
}

// killBroker kills the node target names, and starts it again after a
// few seconds. One broker is down at a time, and the next fault waits
// until the restarted one has caught up (every ledger partition back on
// three in-sync replicas): three replicas with two in sync required
// survive one loss; two at once would be a zone's, which this run does
// not inject. The target is chosen under the same lock, so it is the
// leader or controller when it is killed.
func (r *rig) killBroker(ctx context.Context, rng *rand.Rand, target func(context.Context) (int, error)) error {
	r.brokers.Lock()
	defer r.brokers.Unlock()
	// The cluster's answer may be slow on a loaded machine: a few tries.
	i, err := target(ctx)
	for try := 1; err != nil && try < targetTries && ctx.Err() == nil; try++ {
		sleep(ctx, time.Second)
		i, err = target(ctx)
	}
	if err != nil {
		return err
	}
	r.kafka.Kill(i)
	sleep(ctx, time.Duration(1000+rng.IntN(3000))*time.Millisecond)
	return r.startBrokers(context.WithoutCancel(ctx))
}

// targetTries bounds the tries at naming a broker fault's target.
const targetTries = 5

// startBrokers starts every node that is down and waits until the ledger
// topic is on three in-sync replicas again.
func (r *rig) startBrokers(ctx context.Context) error {
	for i := range brokers {
		if err := r.kafka.Start(i); err != nil {
			return err
		}
	}
	if err := r.kafka.WaitBrokers(brokers); err != nil {
		return err
	}
	return r.kafka.WaitInSync(ctx, banksync.TopicLedgerEntries)
}

// killLeader kills the broker leading one of the ledger topic's partitions.
func (r *rig) killLeader(ctx context.Context, rng *rand.Rand) error {
	partition := int32(rng.IntN(partitions))
	return r.killBroker(ctx, rng, func(ctx context.Context) (int, error) {
		return r.kafka.LeaderOf(ctx, banksync.TopicLedgerEntries, partition)
	})
}

// killController kills the active KRaft controller.
func (r *rig) killController(ctx context.Context, rng *rand.Rand) error {
	return r.killBroker(ctx, rng, r.kafka.ActiveController)
}

// terminateConnections ends every session core and the channels hold on
// their databases, as an administrator or a failover does.
func (r *rig) terminateConnections(ctx context.Context, _ *rand.Rand) error {
	r.database.Lock()
	defer r.database.Unlock()
	return errors.Join(postgres.TerminateSessions(ctx, r.coreDSN), postgres.TerminateSessions(ctx, r.chanDSN))
}

// refuseConnections makes core's or the channels' database refuse new
// connections, its sessions ended, for a second or three.
func (r *rig) refuseConnections(ctx context.Context, rng *rand.Rand) (err error) {
	r.database.Lock()
	defer r.database.Unlock()
	dsn := []string{r.coreDSN, r.chanDSN}[rng.IntN(2)]
	// Let in again whatever happened, even if refusing failed half-way
	// (connections refused, the sessions not all ended).
	defer func() {
		err = errors.Join(err, postgres.RefuseConnections(context.WithoutCancel(ctx), dsn, false))
	}()
	if err := postgres.RefuseConnections(ctx, dsn, true); err != nil {
		return err
	}
	sleep(ctx, time.Duration(1000+rng.IntN(2000))*time.Millisecond)
	return nil
}

func (r *rig) restartPostgres(ctx context.Context, _ *rand.Rand) error {
	r.database.Lock()
	defer r.database.Unlock()
	return r.pg.restart(ctx)
}

// The network faults act on one replica's connections to core, for a few
// seconds each.
func (r *rig) latency(ctx context.Context, rng *rand.Rand) error {
	return r.toxic(ctx, rng, "latency", "downstream", map[string]int64{"latency": int64(50 + rng.IntN(200)), "jitter": 50}, 3*time.Second)
}

// cutMidResponse cuts each connection after a few hundred bytes of
// answers: the request reached core, its answer is lost half-way.
func (r *rig) cutMidResponse(ctx context.Context, rng *rand.Rand) error {
	return r.toxic(ctx, rng, "limit_data", "downstream", map[string]int64{"bytes": int64(100 + rng.IntN(400))}, 2*time.Second)
}

// deliverLate holds the requests to core past the transfer deadline: core
// gets them after the channel has given up on its answer. The toxic stays
// long enough that the first request it holds gets its whole delay.
func (r *rig) deliverLate(ctx context.Context, rng *rand.Rand) error {
	late := deadline + time.Duration(200+rng.IntN(500))*time.Millisecond
	return r.toxic(ctx, rng, "latency", "upstream", map[string]int64{"latency": late.Milliseconds()}, late+time.Second)
}

// toxic puts one toxic on a replica's connections to core for d.
func (r *rig) toxic(ctx context.Context, rng *rand.Rand, kind, stream string, attrs map[string]int64, d time.Duration) error {
	p := r.proxies[rng.IntN(len(r.proxies))]
	name := fmt.Sprintf("%s-%s-%d", kind, stream, rng.Uint64())
	body, err := json.Marshal(map[string]any{"name": name, "type": kind, "stream": stream, "toxicity": 1, "attributes": attrs})
	if err != nil {
		return err
	}
	if _, err := p.Toxics.AddToxicJson(strings.NewReader(string(body))); err != nil {
		return err
	}
	sleep(ctx, d)
	return p.Toxics.RemoveToxic(context.WithoutCancel(ctx), name)
}

// undecodableEvent produces, straight to the ledger topic, an event of an
// account's latest entry in the next schema version, or a value that is
// not an event at all: what a core upgraded ahead of its channels, or a
// stray producer, would send. The consumer dead-letters it; the repair
// parks it once the account is synced from core.
func (r *rig) undecodableEvent(ctx context.Context, rng *rand.Rand) error {
	// One of the workload's accounts: its 8 customers have 2 each.
	account := fmt.Sprintf("cust-%02d-acc-%d", rng.IntN(8), rng.IntN(2))
	value := []byte("not an event")
	// The next version's event of the account's latest entry, when core's
	// database answers (it may be refusing connections just now).
	if es, err := r.ledger.Entries(ctx, account, 0, 1000); rng.IntN(2) == 0 && err == nil && len(es) > 0 {
		ev := banksync.EventOf(es[len(es)-1])
		ev.Version = banksync.EventSchemaVersion + 1
		if value, err = json.Marshal(ev); err != nil {
			return err
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(r.kafka.Addrs()...), kgo.DefaultProduceTopic(banksync.TopicLedgerEntries),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		return err
	}
	defer cl.Close()
	return cl.ProduceSync(ctx, &kgo.Record{Key: []byte(account), Value: value}).FirstErr()
}

// crashDuringStall is the run's last fault: the channels' history table
// is locked (as a long migration or VACUUM FULL would), so their writes
// hang, while a deposit lands on every account; every replica is killed
// while its writes hang; the lock goes, the replicas start again. What
// they had not applied must be re-delivered (P4): nothing later fills
// those holes.
func (r *rig) crashDuringStall(ctx context.Context, depositToAll func(context.Context, string)) error {
	conn, err := pgx.Connect(ctx, r.chanDSN)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE channel_history IN ACCESS EXCLUSIVE MODE"); err != nil {
		tx.Rollback(ctx)
		return err
	}
	depositToAll(ctx, "final")
	sleep(ctx, 1500*time.Millisecond)
	for _, p := range r.chans {
		p.kill()
	}
	if err := tx.Rollback(ctx); err != nil {
		return err
	}
	for _, p := range r.chans {
		if err := p.start(ctx); err != nil {
			return err
		}
	}
	return nil
}
