package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/sasl"

	"banksync"
	"banksync/channel"
	bhttp "banksync/http"
	"banksync/kafka"
	"banksync/metrics"
	"banksync/postgres"
	"banksync/sqlite"
	"banksync/web"
)

type channelCommand struct{}

// channelConfig is what a channel process needs; the demo builds one too.
type channelConfig struct {
	Listen                   string
	OpsListen                string // address of the operator listener (/metrics, /admin/, /ops/); "" serves them on Listen
	DB                       string
	CoreURL                  string
	ServiceToken             string         // the channel's credential at core
	CoreCA                   string         // PEM bundle core's certificate must chain to; "" for the system roots
	CoreCert                 string         // PEM client certificate presented to core
	CoreKey                  string         // its private key
	AdminToken               string         // guards the operator API; "" switches it off
	JWTSecret                string         // HS256 secret of customers' tokens (the demo), or
	JWTPublicKey             string         // a PEM file: Ed25519 (EdDSA) or RSA (RS256) public key of the identity provider
	JWTIssuer                string         // iss the tokens must carry, if set
	JWTAudience              string         // aud the tokens must carry, if set
	CursorSecret             string         // keys history cursors; defaults to JWTSecret
	RateTransfers, RateReads float64        // per customer and second, per replica; 0 is no limit
	Kafka                    string         // brokers host:port,… of core's events; "" consumes nothing
	KafkaTLS                 *tls.Config    // dials them over TLS, if set
	KafkaSASL                sasl.Mechanism // authenticates to them, if set
	Lanes                    int
	Deadline                 time.Duration
	CoreTimeout              time.Duration // how long a transfer waits for core before answering pending
	ReconcileInterval        time.Duration // how often transfers past their deadline are settled
	ReconcileGrace           time.Duration // extra wait after a deadline before fencing at core
	AmountMax                int64
	Logger                   *slog.Logger
	Chaos                    chaosSwitches // set only in a binary built with -tags chaos

	// Demo, when set, serves the demo's own endpoints under /demo/.
	Demo http.Handler
	// Test hooks: the transport to core, and a wrapper of the history
	// store (to make it fail). Only tests set them.
	CoreTransport http.RoundTripper
	WrapStore     func(channel.Store) channel.Store
	// NoDeadLetterRepair switches the channel's own dead-letter repair
	// off, for tests that must see a letter wait for an operator.
	NoDeadLetterRepair bool
}

func (channelCommand) Run(ctx context.Context, args []string) (err error) {
	var cfg channelConfig
	f := newFlags("channel", "Runs the channel tier's transfer server: the customer API, the reconciler and the sync engine.")
	f.String(&cfg.Listen, "listen", "BANKSYNC_CHANNEL_LISTEN", "127.0.0.1:8080", "address to serve the customer API on")
	f.String(&cfg.OpsListen, "ops-listen", "BANKSYNC_OPS_LISTEN", "", "address of the operator listener: /metrics, /healthz, /readyz, the operator API and page; set, they are off the customer listener (but the probes); unset, all on --listen")
	f.String(&cfg.DB, "db", "BANKSYNC_CHANNEL_DB", "sqlite:data/channel.db", "channel database: sqlite:PATH or postgres://…")
	f.String(&cfg.CoreURL, "core-url", "BANKSYNC_CORE_URL", "http://127.0.0.1:8081", "base URL of the core API")
	f.String(&cfg.CoreCA, "core-ca", "BANKSYNC_CORE_CA", "", "PEM bundle of CAs core's certificate must chain to (https:// --core-url); unset, the system roots")
	f.String(&cfg.CoreCert, "core-cert", "BANKSYNC_CORE_CERT", "", "PEM client certificate presented to core (for core's --client-ca)")
	f.String(&cfg.CoreKey, "core-key", "BANKSYNC_CORE_KEY", "", "PEM private key of --core-cert")
	f.String(&cfg.ServiceToken, "service-token", "BANKSYNC_SERVICE_TOKEN", "", "bearer token for core (required)")
	f.String(&cfg.AdminToken, "admin-token", "BANKSYNC_ADMIN_TOKEN", "", "bearer token of the operator API and page (/admin/, /ops/); unset, the operator API is off")
	f.String(&cfg.JWTSecret, "jwt-secret", "BANKSYNC_JWT_SECRET", "", "HS256 secret customers' tokens are signed with (this or --jwt-public-key)")
	f.String(&cfg.JWTPublicKey, "jwt-public-key", "BANKSYNC_JWT_PUBLIC_KEY", "", "PEM file of the public key customers' tokens are signed with: Ed25519 (EdDSA) or RSA ≥2048 bits (RS256)")
	f.String(&cfg.JWTIssuer, "jwt-issuer", "BANKSYNC_JWT_ISSUER", "", "issuer (iss) customers' tokens must carry; unset, not checked")
	f.String(&cfg.JWTAudience, "jwt-audience", "BANKSYNC_JWT_AUDIENCE", "", "audience (aud) customers' tokens must carry; unset, not checked")
	f.String(&cfg.CursorSecret, "cursor-secret", "BANKSYNC_CURSOR_SECRET", "", "secret (≥32 bytes) keying history cursors, the same on every replica; default --jwt-secret, required with --jwt-public-key")
	f.Float64(&cfg.RateTransfers, "rate-transfers", "BANKSYNC_RATE_TRANSFERS", 5, "transfers a customer may send per second on this replica (bursts of twice that); 0 is no limit")
	f.Float64(&cfg.RateReads, "rate-reads", "BANKSYNC_RATE_READS", 50, "reads and syncs a customer may make per second on this replica (bursts of twice that); 0 is no limit")
	f.String(&cfg.Kafka, "kafka", "BANKSYNC_KAFKA_BROKERS", "", "Kafka brokers host:port,… to consume core's ledger events from")
	f.Int(&cfg.Lanes, "lanes", "BANKSYNC_LANES", 100, "worker lanes applying events; one account is always on one lane")
	f.Duration(&cfg.Deadline, "deadline", "BANKSYNC_DEADLINE", channel.DeadlineDefault, "how long core may take to execute a transfer")
	f.Duration(&cfg.CoreTimeout, "core-timeout", "BANKSYNC_CORE_TIMEOUT", channel.CoreTimeoutDefault, "how long a transfer waits for core before it is answered pending")
	f.Duration(&cfg.ReconcileInterval, "reconcile-interval", "BANKSYNC_RECONCILE_INTERVAL", channel.ReconcileIntervalDefault, "how often transfers past their deadline are settled")
	f.Duration(&cfg.ReconcileGrace, "reconcile-grace", "BANKSYNC_RECONCILE_GRACE", channel.ReconcileGraceDefault, "extra wait after a transfer's deadline before it is fenced at core")
	f.Int64(&cfg.AmountMax, "amount-max", "BANKSYNC_AMOUNT_MAX", banksync.AmountMaxDefault, "largest transfer, in won (as core's)")
	kafkaSec := f.kafkaSecurityFlags()
	logger := f.logFlags("json")
	chaosSw := f.chaosFlags()
	if err := f.parse(args); err != nil {
		return err
	}
	if cfg.Chaos, err = chaosSw(); err != nil {
		return err
	}
	if cfg.ServiceToken == "" || (cfg.JWTSecret == "") == (cfg.JWTPublicKey == "") {
		return errors.New("--service-token and one of --jwt-secret and --jwt-public-key are required (or BANKSYNC_SERVICE_TOKEN, BANKSYNC_JWT_SECRET, BANKSYNC_JWT_PUBLIC_KEY)")
	}
	conn, err := kafkaSec.conn(parseBrokers(cfg.Kafka))
	if err != nil {
		return err
	}
	cfg.KafkaTLS, cfg.KafkaSASL = conn.TLS, conn.SASL
	log, err := logger()
	if err != nil {
		return err
	}
	cfg.Logger = log
	node, err := startChannel(ctx, cfg)
	if err != nil {
		return err
	}
	log.Info("channel listening", "addr", node.Addr(), "ops_addr", node.ops.Addr(), "core", cfg.CoreURL)
	<-ctx.Done()
	return node.Close()
}

// channelNode is a running channel: store, domain, reconciler, HTTP server.
type channelNode struct {
	store channel.Store
	ch    *channel.Channel
	api   *server
	ops   *server // --ops-listen, if set
	stop  context.CancelFunc
	wg    sync.WaitGroup
}

func startChannel(ctx context.Context, cfg channelConfig) (n *channelNode, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n = &channelNode{}
	defer func() {
		if err != nil {
			n.Close() // whatever had started
			n = nil
		}
	}()
	if n.store, err = openChannelStore(ctx, cfg.DB); err != nil {
		return n, err
	}
	store := n.store
	if cfg.WrapStore != nil {
		store = cfg.WrapStore(store)
	}
	coreTransport := cfg.CoreTransport
	if coreTransport == nil {
		if coreTransport, err = coreClientTransport(cfg.CoreURL, cfg.CoreCA, cfg.CoreCert, cfg.CoreKey); err != nil {
			return n, err
		}
	}
	core := bhttp.NewCoreClient(strings.TrimSuffix(cfg.CoreURL, "/"), cfg.ServiceToken, coreTransport)
	reg := metrics.NewRegistry()
	m := metrics.NewChannel(reg)
	n.ch = channel.New(store, core, channel.Config{AmountMax: cfg.AmountMax, Deadline: cfg.Deadline, CoreTimeout: cfg.CoreTimeout,
		ReconcileInterval: cfg.ReconcileInterval, ReconcileGrace: cfg.ReconcileGrace, Logger: cfg.Logger, Observer: m,
		Now: cfg.Chaos.now(), Unsafe: channel.Unsafe{NoFence: cfg.Chaos.NoFence}})
	state := metrics.ChannelState{Backlog: n.ch.Backlog, Logger: cfg.Logger}
	checks := map[string]bhttp.Check{"database": func(ctx context.Context) error {
		_, _, err := n.store.Account(ctx, "readyz")
		return err
	}}
	if m, ok := n.store.(migrated); ok {
		checks["migrations"] = banksync.Migrations(m.Migrations).Check
	}
	runCtx, stop := context.WithCancel(context.Background())
	n.stop = stop
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.ch.RunReconciler(runCtx)
	}()
	admin := bhttp.AdminConfig{Token: cfg.AdminToken, Channel: n.ch, Core: core, Logger: cfg.Logger}
	if conn := (kafka.Conn{Brokers: parseBrokers(cfg.Kafka), TLS: cfg.KafkaTLS, SASL: cfg.KafkaSASL}); len(conn.Brokers) > 0 {
		if err := reachKafka(ctx, conn); err != nil {
			return n, err
		}
		consumer, err := kafka.NewConsumer(kafka.ConsumerConfig{Conn: conn, Lanes: cfg.Lanes, Logger: cfg.Logger,
			UnsafeCommitBeforeApply: cfg.Chaos.CommitBeforeApply}, n.ch)
		if err != nil {
			return n, err
		}
		admin.DeadLetters, admin.Consumer = dlqOps{conn: conn, sync: n.ch, history: store, replayed: m.Replayed, log: cfg.Logger}, consumer
		state.Lag = consumer.Lag
		state.DeadLetters = func(ctx context.Context) (kafka.Depth, error) {
			return kafka.DeadLetterDepth(ctx, conn, banksync.TopicLedgerEntriesDLQ)
		}
		checks["kafka"] = consumer.Joined
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			consumer.Run(runCtx)
		}()
		if !cfg.NoDeadLetterRepair {
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				kafka.RunDeadLetterRepair(runCtx, kafka.RepairConfig{Conn: conn, Logger: cfg.Logger,
					Replayed: func(r kafka.ReplayResult) { m.Replayed(r.Applied) }}, n.ch)
			}()
		}
	}
	auth, cursors, err := customerAuth(cfg)
	if err != nil {
		return n, err
	}
	metrics.RegisterChannelState(reg, state)
	httpMetrics := metrics.NewHTTP(reg, "channel")
	adminAPI := bhttp.NewAdminServer(admin)
	pages := web.Handler()
	probes := func(mux *http.ServeMux) *http.ServeMux {
		mux.Handle("GET /healthz", bhttp.Healthz())
		mux.Handle("GET /readyz", bhttp.Readyz(checks))
		mux.Handle("/openapi.yaml", bhttp.ChannelOpenAPI()) // any method: it answers 405 itself
		mux.Handle("/assets/", pages)
		return mux
	}
	operator := func(mux *http.ServeMux) *http.ServeMux {
		mux.Handle("GET /metrics", metrics.Handler(reg, cfg.Logger))
		mux.Handle("/admin/", adminAPI)
		mux.Handle("/ops/", pages)
		return mux
	}
	root := probes(http.NewServeMux())
	if cfg.OpsListen != "" {
		mux := operator(probes(http.NewServeMux()))
		mux.Handle("/", bhttp.NoRoute(mux, cfg.Logger))
		if n.ops, err = serve(&n.wg, "channel ops", cfg.OpsListen, mux, muxRoute(mux, adminAPI), nil, httpMetrics, cfg.Logger); err != nil {
			return n, err
		}
	} else {
		operator(root)
	}
	root.Handle("/app/", pages)
	root.Handle("GET /{$}", http.RedirectHandler("/app/", http.StatusFound))
	if cfg.Demo != nil {
		root.Handle("/demo/", cfg.Demo)
	}
	api := bhttp.NewChannelServer(n.ch, bhttp.ChannelServerConfig{
		Auth: auth, Cursors: cursors, Logger: cfg.Logger,
		TransferLimit: perSecond(cfg.RateTransfers), ReadLimit: perSecond(cfg.RateReads),
	})
	root.Handle("/", api)
	if n.api, err = serve(&n.wg, "channel", cfg.Listen, root, muxRoute(root, api, adminAPI), nil, httpMetrics, cfg.Logger); err != nil {
		return n, err
	}
	return n, nil
}

func (n *channelNode) Addr() string { return n.api.Addr() }

// customerAuth builds what verifies customers' tokens — the HS256 secret or
// the identity provider's public key — and the cursor key.
func customerAuth(cfg channelConfig) (*bhttp.Authenticator, channel.Cursors, error) {
	opts := bhttp.AuthOptions{Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience}
	cursorSecret := cfg.CursorSecret
	var auth *bhttp.Authenticator
	var err error
	switch {
	case cfg.JWTPublicKey != "":
		pem, rerr := os.ReadFile(cfg.JWTPublicKey)
		if rerr != nil {
			return nil, channel.Cursors{}, fmt.Errorf("--jwt-public-key: %w", rerr)
		}
		if auth, err = bhttp.NewPublicKeyAuthenticator(pem, opts); err != nil {
			return nil, channel.Cursors{}, fmt.Errorf("--jwt-public-key %s: %w", cfg.JWTPublicKey, err)
		}
		if cursorSecret == "" {
			return nil, channel.Cursors{}, errors.New("--cursor-secret is required with --jwt-public-key (the same on every replica)")
		}
	default:
		if auth, err = bhttp.NewHS256Authenticator([]byte(cfg.JWTSecret), opts); err != nil {
			return nil, channel.Cursors{}, fmt.Errorf("--jwt-secret: %w", err)
		}
		if cursorSecret == "" {
			cursorSecret = cfg.JWTSecret
		}
	}
	if len(cursorSecret) < cursorSecretLengthMin {
		return nil, channel.Cursors{}, fmt.Errorf("--cursor-secret is %d bytes; at least %d are required", len(cursorSecret), cursorSecretLengthMin)
	}
	return auth, channel.NewCursors([]byte(cursorSecret)), nil
}

// cursorSecretLengthMin matches the HS256 secret's minimum.
const cursorSecretLengthMin = 32

// perSecond is a customer's budget of rate requests a second, with bursts
// of twice that.
func perSecond(rate float64) bhttp.RateLimit {
	if rate <= 0 {
		return bhttp.RateLimit{}
	}
	return bhttp.RateLimit{Rate: rate, Burst: max(1, int(2*rate))}
}

// Close stops taking requests, finishes those in flight, stops the
// reconciler and closes the store.
func (n *channelNode) Close() error {
	errs := []error{shutdown(n.api, n.ops)}
	if n.stop != nil {
		n.stop()
	}
	n.wg.Wait()
	if n.ch != nil {
		n.ch.Close()
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	return errors.Join(errs...)
}

// openChannelStore opens the channel database named by dsn.
func openChannelStore(ctx context.Context, dsn string) (channel.Store, error) {
	return openStore("channel", dsn,
		func(path string) (channel.Store, error) { return sqlite.OpenChannel(ctx, path) },
		func() (channel.Store, error) { return postgres.OpenChannel(ctx, dsn) })
}

type tokenCommand struct{}

func (tokenCommand) Run(ctx context.Context, args []string) error {
	var customer, secret string
	var ttl time.Duration
	f := newFlags("token", "Prints a customer's bearer token (HS256 JWT) for the channel API.")
	f.String(&customer, "customer", "BANKSYNC_CUSTOMER", "", "customer id (the token's sub)")
	f.String(&secret, "secret", "BANKSYNC_JWT_SECRET", "", "the channel's --jwt-secret")
	f.Duration(&ttl, "ttl", "BANKSYNC_TOKEN_TTL", time.Hour, "how long the token is valid")
	if err := f.parse(args); err != nil {
		return err
	}
	if customer == "" || secret == "" {
		return errors.New("--customer and --secret are required")
	}
	auth, err := bhttp.NewHS256Authenticator([]byte(secret), bhttp.AuthOptions{})
	if err != nil {
		return err
	}
	tok, err := auth.Issue(customer, ttl)
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}
