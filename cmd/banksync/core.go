package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/sasl"

	"banksync"
	bhttp "banksync/http"
	"banksync/kafka"
	"banksync/ledger"
	"banksync/metrics"
	"banksync/postgres"
	"banksync/sqlite"
)

type coreCommand struct {
	cfg coreConfig
}

// coreConfig is what a core process needs; the demo and benchmarks build
// one too.
type coreConfig struct {
	Listen       string
	DB           string
	Kafka        string         // "embedded", "none" or host:port,…
	KafkaTLS     *tls.Config    // dials the brokers of Kafka over TLS, if set
	KafkaSASL    sasl.Mechanism // authenticates to them, if set
	KafkaListen  string         // address of the embedded cluster
	KafkaData    string         // data directory of the embedded cluster
	Partitions   int
	Topic        string // the ledger topic; "" for banksync.TopicLedgerEntries (its dead letters go to Topic+".dlq")
	ServiceToken string
	OpsListen    string // plain-HTTP address for /healthz, /readyz, /metrics; "" serves them only on Listen
	TLSCert      string // PEM certificate to serve HTTPS with; "" serves HTTP
	TLSKey       string // its private key
	ClientCA     string // PEM bundle; set, a client certificate it signed is required
	AmountMax    int64
	BatchSizeMax int
	Logger       *slog.Logger
	Chaos        chaosSwitches // set only in a binary built with -tags chaos
}

// dlqTopicOf is the dead-letter topic beside a ledger topic other than the
// default ("" keeps the default pair).
func dlqTopicOf(topic string) string {
	if topic == "" {
		return ""
	}
	return topic + ".dlq"
}

func (c *coreCommand) Run(ctx context.Context, args []string) error {
	f := newFlags("core", "Runs the core ledger API and its outbox relay to Kafka.")
	f.String(&c.cfg.Listen, "listen", "BANKSYNC_CORE_LISTEN", "127.0.0.1:8081", "address to serve the core API on")
	f.String(&c.cfg.DB, "db", "BANKSYNC_CORE_DB", "sqlite:data/core.db", "ledger database: sqlite:PATH or postgres://…")
	f.String(&c.cfg.Kafka, "kafka", "BANKSYNC_KAFKA_BROKERS", "embedded", `Kafka brokers host:port,…; "embedded" runs an in-process cluster`)
	f.String(&c.cfg.KafkaListen, "kafka-listen", "BANKSYNC_KAFKA_LISTEN", "127.0.0.1:9092", "address of the embedded Kafka cluster")
	f.String(&c.cfg.KafkaData, "kafka-data", "BANKSYNC_KAFKA_DATA", "data/kafka", "data directory of the embedded Kafka cluster")
	f.Int(&c.cfg.Partitions, "partitions", "BANKSYNC_PARTITIONS", 10, "partitions of core.ledger.entries when core creates it")
	f.String(&c.cfg.ServiceToken, "service-token", "BANKSYNC_SERVICE_TOKEN", "", "bearer token the channel must present (required)")
	f.String(&c.cfg.OpsListen, "ops-listen", "BANKSYNC_OPS_LISTEN", "", "plain-HTTP address for /healthz, /readyz and /metrics (probes and Prometheus need no client certificate there); unset, only on --listen")
	f.String(&c.cfg.TLSCert, "tls-cert", "BANKSYNC_TLS_CERT", "", "PEM certificate (chain) to serve HTTPS with; unset, core serves plain HTTP")
	f.String(&c.cfg.TLSKey, "tls-key", "BANKSYNC_TLS_KEY", "", "PEM private key of --tls-cert")
	f.String(&c.cfg.ClientCA, "client-ca", "BANKSYNC_CLIENT_CA", "", "PEM bundle of CAs; set, core requires a client certificate signed by one of them (mutual TLS; needs --tls-cert)")
	f.Int64(&c.cfg.AmountMax, "amount-max", "BANKSYNC_AMOUNT_MAX", banksync.AmountMaxDefault, "largest amount of one transfer or deposit, in won")
	kafkaSec := f.kafkaSecurityFlags()
	logger := f.logFlags("json")
	chaosSw := f.chaosFlags()
	if err := f.parse(args); err != nil {
		return err
	}
	var err error
	if c.cfg.Chaos, err = chaosSw(); err != nil {
		return err
	}
	if c.cfg.ServiceToken == "" {
		return errors.New("a service token is required (--service-token or BANKSYNC_SERVICE_TOKEN)")
	}
	var brokers []string
	if c.cfg.Kafka != "embedded" && c.cfg.Kafka != "none" {
		brokers = parseBrokers(c.cfg.Kafka)
	}
	conn, err := kafkaSec.conn(brokers)
	if err != nil {
		return err
	}
	c.cfg.KafkaTLS, c.cfg.KafkaSASL = conn.TLS, conn.SASL
	log, err := logger()
	if err != nil {
		return err
	}
	c.cfg.Logger = log
	node, err := startCore(ctx, c.cfg)
	if err != nil {
		return err
	}
	log.Info("core listening", "addr", node.Addr(), "kafka", node.Conn().String(), "tls", c.cfg.TLSCert != "", "client_certs", c.cfg.ClientCA != "")
	<-ctx.Done()
	return node.Close()
}

// coreNode is a running core: store, ledger, relay and HTTP server.
type coreNode struct {
	store   ledger.Store
	ledger  *ledger.Ledger
	cluster *kafka.Cluster // nil unless embedded
	pub     *kafka.Publisher
	relay   *ledger.Relay
	conn    kafka.Conn // no brokers without Kafka
	api     *server
	ops     *server // --ops-listen, if set
	stop    context.CancelFunc
	wg      sync.WaitGroup
	log     *slog.Logger
}

func startCore(ctx context.Context, cfg coreConfig) (n *coreNode, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n = &coreNode{log: cfg.Logger}
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
	if n.store, err = openLedgerStore(ctx, cfg.DB); err != nil {
		return n, err
	}
	reg := metrics.NewRegistry()
	m := metrics.NewLedger(reg, func(ctx context.Context) (int64, error) { return n.ledger.OutboxBacklog(ctx) })
	n.ledger, err = ledger.Open(ctx, n.store, ledger.Config{AmountMax: cfg.AmountMax, BatchSizeMax: cfg.BatchSizeMax, Logger: cfg.Logger, Observer: m,
		Now: cfg.Chaos.now()})
	if err != nil {
		return n, err
	}
	runCtx, stop := context.WithCancel(context.Background())
	n.stop = stop
	switch cfg.Kafka {
	case "none":
	case "embedded":
		if cfg.KafkaData != "" {
			if err := os.MkdirAll(cfg.KafkaData, 0o755); err != nil {
				return n, err
			}
		}
		n.cluster, err = kafka.StartCluster(kafka.ClusterConfig{Addr: cfg.KafkaListen, DataDir: cfg.KafkaData, Partitions: cfg.Partitions, Logger: cfg.Logger})
		if err != nil {
			return n, fmt.Errorf("start embedded kafka: %w", err)
		}
		n.conn = kafka.Brokers(n.cluster.Addrs()...)
	default:
		n.conn = kafka.Conn{Brokers: parseBrokers(cfg.Kafka), TLS: cfg.KafkaTLS, SASL: cfg.KafkaSASL}
	}
	if len(n.conn.Brokers) > 0 {
		if err := reachKafka(ctx, n.conn); err != nil {
			return n, err
		}
		n.pub, err = kafka.NewPublisher(ctx, kafka.PublisherConfig{Conn: n.conn, Topic: cfg.Topic, DLQTopic: dlqTopicOf(cfg.Topic), Partitions: cfg.Partitions, Logger: cfg.Logger})
		if err != nil {
			return n, fmt.Errorf("connect to kafka %s: %w", n.conn, err)
		}
		n.relay = ledger.NewRelay(n.store, n.pub, ledger.RelayConfig{Wake: n.ledger.Committed(), Logger: cfg.Logger, Published: m.Published})
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.relay.Run(runCtx)
		}()
	}
	api := bhttp.NewCoreServer(n.ledger, cfg.ServiceToken, cfg.Logger)
	checks := map[string]bhttp.Check{"database": func(ctx context.Context) error {
		_, err := n.store.LastPosition(ctx)
		return err
	}}
	if m, ok := n.store.(migrated); ok {
		checks["migrations"] = banksync.Migrations(m.Migrations).Check
	}
	if n.pub != nil {
		checks["kafka"] = n.pub.Ping
	}
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
	if n.api, err = serve(&n.wg, "core", cfg.Listen, root, muxRoute(root, api), tlsCfg, httpMetrics, cfg.Logger); err != nil {
		return n, err
	}
	return n, nil
}

func (n *coreNode) Addr() string { return n.api.Addr() }

func (n *coreNode) Brokers() []string { return n.conn.Brokers }

// Conn is how core reaches its Kafka cluster, for clients beside it (the
// benchmarks' consumers).
func (n *coreNode) Conn() kafka.Conn { return n.conn }

// Close stops taking requests, finishes those in flight, stops the writer and
// the relay, and closes Kafka and the store.
func (n *coreNode) Close() error {
	errs := []error{shutdown(n.api, n.ops)}
	if n.ledger != nil {
		errs = append(errs, n.ledger.Close())
	}
	if n.stop != nil {
		n.stop()
	}
	n.wg.Wait()
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
	if n.pub != nil {
		n.pub.Close()
	}
	if n.cluster != nil {
		n.cluster.Close()
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	return errors.Join(errs...)
}

// openLedgerStore opens the ledger database named by dsn.
func openLedgerStore(ctx context.Context, dsn string) (ledger.Store, error) {
	return openStore("ledger", dsn,
		func(path string) (ledger.Store, error) { return sqlite.OpenLedger(ctx, path) },
		func() (ledger.Store, error) { return postgres.OpenLedger(ctx, dsn) })
}

// openStore opens the what database named by dsn with the SQLite or the
// PostgreSQL opener. On error the store is S's zero value — a nil
// interface — never the opener's: the nil *LedgerStore of a failed open,
// returned as a ledger.Store, is an interface that is not nil and whose
// Close dereferences nil. The error names the database, without its
// password.
func openStore[S any](what, dsn string, onSQLite func(path string) (S, error), onPostgres func() (S, error)) (S, error) {
	var zero S
	path, err := sqlitePath(dsn)
	if err != nil {
		return zero, err
	}
	var s S
	if path != "" {
		s, err = onSQLite(path)
	} else {
		s, err = onPostgres()
	}
	if err != nil {
		return zero, fmt.Errorf("open %s database %s: %w", what, redactDSN(dsn), err)
	}
	return s, nil
}

// sqlitePath checks a database DSN, sqlite:PATH or postgres://…, and for
// SQLite returns the path, its directory made; for PostgreSQL it returns "".
func sqlitePath(dsn string) (string, error) {
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		path := strings.TrimPrefix(dsn, "sqlite:")
		if path == "" {
			return "", errors.New("sqlite DSN needs a path: sqlite:PATH")
		}
		return path, os.MkdirAll(filepath.Dir(path), 0o755)
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return "", nil
	}
	// Not echoed: a DSN of another form (host=… password=…) may hold a password.
	return "", errors.New("database must be sqlite:PATH or postgres://… (a keyword=value DSN is not taken)")
}
