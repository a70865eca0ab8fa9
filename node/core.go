package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"go.opentelemetry.io/otel/trace"

	bhttp "banksync/http"
	"banksync/kafka"
	"banksync/ledger"
	"banksync/metrics"
)

// CoreConfig is what a core needs: the `banksync core` command's flags, and
// what the demo, the benchmarks and the chaos runs set.
type CoreConfig struct {
	Listen string // address of the core API; "127.0.0.1:0" takes a free port
	DB     string // sqlite:PATH or postgres://…
	// Kafka is the cluster core publishes its ledger to. No brokers and no
	// EmbeddedKafka: core publishes nothing (its outbox keeps every entry).
	Kafka kafka.Conn
	// EmbeddedKafka, set, runs an in-process Kafka-protocol cluster (kfake)
	// and publishes there; Kafka is then ignored. Its Partitions and Logger
	// default to the core's.
	EmbeddedKafka *kafka.ClusterConfig
	Partitions    int    // partitions of the ledger topic when core creates it
	Topic         string // the ledger topic; "" for banksync.TopicLedgerEntries (its dead letters go to Topic+".dlq")
	ServiceToken  string
	OpsListen     string // plain-HTTP address for /healthz, /readyz, /metrics; "" serves them only on Listen
	TLSCert       string // PEM certificate to serve HTTPS with; "" serves HTTP
	TLSKey        string // its private key
	ClientCA      string // PEM bundle; set, a client certificate it signed is required
	AmountMax     int64
	BatchSizeMax  int
	Logger        *slog.Logger
	// Now is core's clock; nil, the real one. Only chaos runs skew it.
	Now func() time.Time
	// WrapPublisher, set, wraps what the relay publishes through: the
	// in-process chaos run's publisher of undecodable events.
	WrapPublisher func(ledger.Publisher) ledger.Publisher
	// Tracing, set, traces each request through the ledger's commit and
	// puts its traceparent in the entries' Kafka records (OTLPTracing);
	// nil traces nothing.
	Tracing trace.TracerProvider
}

// Core is a running core: store, ledger, relay and HTTP server.
type Core struct {
	store   ledger.Store
	ledger  *ledger.Ledger
	cluster *kafka.Cluster // nil unless embedded
	pub     *kafka.Publisher
	relay   *ledger.Relay
	conn    kafka.Conn // no brokers without Kafka
	running
}

// StartCore opens core's database, starts its relay to Kafka and serves its
// API. On error, whatever had started is stopped again.
func StartCore(ctx context.Context, cfg CoreConfig) (n *Core, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n = &Core{}
	defer func() {
		if err != nil {
			n.Close() // whatever had started
			n = nil
		}
	}()
	// Bad certificate files fail before anything is opened.
	tlsCfg, err := coreServerTLS(cfg.TLSCert, cfg.TLSKey, cfg.ClientCA)
	if err != nil {
		return n, err
	}
	if n.store, err = OpenLedgerStore(ctx, cfg.DB); err != nil {
		return n, err
	}
	reg := metrics.NewRegistry()
	m := metrics.NewLedger(reg, func(ctx context.Context) (int64, error) { return n.ledger.OutboxBacklog(ctx) })
	n.ledger, err = ledger.Open(ctx, n.store, ledger.Config{AmountMax: cfg.AmountMax, BatchSizeMax: cfg.BatchSizeMax, Logger: cfg.Logger, Observer: m,
		Now: cfg.Now, Tracer: tracer(cfg.Tracing, "banksync/ledger")})
	if err != nil {
		return n, err
	}
	if err := n.startRelay(ctx, n.background(), cfg, m); err != nil {
		return n, err
	}
	checks := readiness(n.store, func(ctx context.Context) error {
		_, err := n.store.LastPosition(ctx)
		return err
	})
	if n.pub != nil {
		checks["kafka"] = n.pub.Ping
	}
	api := bhttp.NewCoreServer(n.ledger, cfg.ServiceToken, cfg.Logger)
	probes := func(mux *http.ServeMux) *http.ServeMux {
		mux.Handle("GET /metrics", metrics.Handler(reg, cfg.Logger))
		mux.Handle("GET /healthz", bhttp.Healthz())
		mux.Handle("GET /readyz", bhttp.Readyz(checks))
		return mux
	}
	httpMetrics := metrics.NewHTTP(reg, "core")
	if cfg.OpsListen != "" {
		mux := probes(http.NewServeMux())
		mux.Handle("/", bhttp.NoRoute(mux, cfg.Logger))
		if n.ops, err = serve(&n.wg, "core ops", cfg.OpsListen, mux, muxRoute(mux), nil, httpMetrics, cfg.Logger); err != nil {
			return n, err
		}
	}
	root := probes(http.NewServeMux())
	root.Handle("/openapi.yaml", bhttp.CoreOpenAPI()) // any method: it answers 405 itself
	root.Handle("/", api)
	route := muxRoute(root, api)
	if n.api, err = serve(&n.wg, "core", cfg.Listen, traced(cfg.Tracing, root, route), route, tlsCfg, httpMetrics, cfg.Logger); err != nil {
		return n, err
	}
	return n, nil
}

// startRelay connects to Kafka — the embedded cluster started here, or
// cfg.Kafka — and runs the outbox relay until runCtx ends. Without Kafka
// it does nothing.
func (n *Core) startRelay(ctx, runCtx context.Context, cfg CoreConfig, m *metrics.Ledger) (err error) {
	n.conn = cfg.Kafka
	if e := cfg.EmbeddedKafka; e != nil {
		cc := *e
		cc.Partitions, cc.Logger = cmp.Or(cc.Partitions, cfg.Partitions), cmp.Or(cc.Logger, cfg.Logger)
		if cc.DataDir != "" {
			if err := os.MkdirAll(cc.DataDir, 0o755); err != nil {
				return err
			}
		}
		if n.cluster, err = kafka.StartCluster(cc); err != nil {
			return fmt.Errorf("start embedded kafka: %w", err)
		}
		n.conn = kafka.Brokers(n.cluster.Addrs()...)
	}
	if len(n.conn.Brokers) == 0 {
		return nil
	}
	if err := reachKafka(ctx, n.conn); err != nil {
		return err
	}
	n.pub, err = kafka.NewPublisher(ctx, kafka.PublisherConfig{Conn: n.conn, Topic: cfg.Topic, Partitions: cfg.Partitions, Logger: cfg.Logger})
	if err != nil {
		return fmt.Errorf("connect to kafka %s: %w", n.conn, err)
	}
	var pub ledger.Publisher = n.pub
	if cfg.WrapPublisher != nil {
		pub = cfg.WrapPublisher(pub)
	}
	rc := ledger.RelayConfig{Wake: n.ledger.Committed(), Logger: cfg.Logger, Published: m.Published}
	if cfg.Tracing != nil {
		rc.Traces = n.ledger
	}
	n.relay = ledger.NewRelay(n.store, pub, rc)
	n.wg.Go(func() { n.relay.Run(runCtx) })
	return nil
}

// Conn is how core reaches its Kafka cluster, for clients beside it (the
// benchmarks' consumers, the demo's channel).
func (n *Core) Conn() kafka.Conn { return n.conn }

// Ledger is core's ledger, for callers in the same process (the demo's
// seed, the benchmarks, the in-process chaos run).
func (n *Core) Ledger() *ledger.Ledger { return n.ledger }

// EmbeddedKafka is the in-process cluster core started; nil without one.
func (n *Core) EmbeddedKafka() *kafka.Cluster { return n.cluster }

// Store is core's ledger store.
func (n *Core) Store() ledger.Store { return n.store }

// Close stops taking requests, finishes those in flight, stops the relay
// and the writer, publishes what the last batches committed, and closes
// Kafka and the store.
func (n *Core) Close() error {
	errs := []error{n.halt(false)}
	if n.ledger != nil {
		errs = append(errs, n.ledger.Close())
	}
	if n.relay != nil {
		// The loop has stopped, so this is the only publisher: flush what
		// the last batches committed, within a bound. Anything left is
		// published at the next start.
		ctx, cancel := context.WithTimeout(context.Background(), relayFlushTimeout)
		for {
			published, err := n.relay.Once(ctx)
			if err != nil || published == 0 {
				break
			}
		}
		cancel()
	}
	return errors.Join(append(errs, n.closeClients())...)
}

// Abort stops core at once, as a crashed process looks to its clients:
// connections are cut, requests in flight fail, and what the last batches
// committed stays unpublished until the next start (the outbox keeps it).
// The in-process chaos run's core crash.
func (n *Core) Abort() error {
	errs := []error{n.halt(true)}
	if n.ledger != nil {
		errs = append(errs, n.ledger.Close())
	}
	return errors.Join(append(errs, n.closeClients())...)
}

// closeClients closes the publisher, the embedded cluster and the store,
// once nothing uses them.
func (n *Core) closeClients() error {
	if n.pub != nil {
		n.pub.Close()
	}
	if n.cluster != nil {
		n.cluster.Close()
	}
	if n.store != nil {
		return n.store.Close()
	}
	return nil
}
