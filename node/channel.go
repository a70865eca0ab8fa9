package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"banksync/channel"
	bhttp "banksync/http"
	"banksync/kafka"
	"banksync/metrics"
	"banksync/web"
)

// ChannelConfig is what a channel replica needs: the `banksync channel`
// command's flags, and what the demo, the benchmarks and the chaos runs set.
type ChannelConfig struct {
	Listen                   string // address of the customer API (and, without OpsListen, the operator's)
	OpsListen                string // address of the operator listener (/metrics, /admin/, /ops/); "" serves them on Listen
	DB                       string // sqlite:PATH or postgres://…
	CoreURL                  string
	ServiceToken             string  // the channel's credential at core
	CoreCA                   string  // PEM bundle core's certificate must chain to; "" for the system roots
	CoreCert                 string  // PEM client certificate presented to core
	CoreKey                  string  // its private key
	AdminToken               string  // guards the operator API; "" switches it off
	JWTSecret                string  // HS256 secret of customers' tokens (the demo), or
	JWTPublicKey             string  // a PEM file: Ed25519 (EdDSA) or RSA (RS256) public key of the identity provider
	JWTIssuer                string  // iss the tokens must carry, if set
	JWTAudience              string  // aud the tokens must carry, if set
	CursorSecret             string  // keys history cursors; defaults to JWTSecret
	RateTransfers, RateReads float64 // per customer and second, per replica; 0 is no limit
	// JWTLeeway is the clock skew allowed on customers' tokens' exp, nbf
	// and iat, 0 to bhttp.LeewayMax (the command's default is
	// bhttp.LeewayDefault).
	JWTLeeway time.Duration
	// Kafka is the cluster of core's events; no brokers consumes nothing.
	Kafka kafka.Conn
	// Consumer is the consumer's configuration but for Conn and Logger,
	// which are Kafka and Logger: lanes, group, attempts, drain.
	Consumer kafka.ConsumerConfig
	// Repair is the dead-letter repair's but for Conn and Logger.
	Repair kafka.RepairConfig
	// NoDeadLetterRepair switches the channel's own dead-letter repair
	// off, for tests that must see a letter wait for an operator.
	NoDeadLetterRepair bool
	// Channel is the domain's configuration: deadlines, timeouts, the
	// largest amount, the clock; its Logger and Observer are set here.
	Channel channel.Config
	Logger  *slog.Logger

	// Tracing, set, traces each customer request on into core, and each
	// applied record that carries a trace from core (OTLPTracing); nil
	// traces nothing.
	Tracing trace.TracerProvider

	// Demo, when set, serves the demo's own endpoints under /demo/.
	Demo http.Handler
	// Test hooks: the transport to core, and a wrapper of the history
	// store (to make it fail). Only tests and chaos runs set them.
	CoreTransport http.RoundTripper
	WrapStore     func(channel.Store) channel.Store
}

// Channel is a running channel replica: store, domain, reconciler, sync
// engine fed by Kafka, dead-letter repair and HTTP servers.
type Channel struct {
	store       channel.Store
	ch          *channel.Channel
	cursors     channel.Cursors
	consumer    *consumerLoop      // nil without Kafka
	deadLetters *kafka.DeadLetters // nil without Kafka
	running
}

// StartChannel opens the channel's database and starts the replica. On
// error, whatever had started is stopped again.
func StartChannel(ctx context.Context, cfg ChannelConfig) (n *Channel, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n = &Channel{}
	defer func() {
		if err != nil {
			n.Close() // whatever had started
			n = nil
		}
	}()
	// Bad token settings fail before anything is opened.
	if cfg.AdminToken != "" && cfg.AdminToken == cfg.ServiceToken {
		return n, errors.New("--admin-token must differ from --service-token: core accepts the service token, so the same token would let core, or anyone holding the service token, use the operator API and page (/admin/, /ops/)")
	}
	auth, cursors, err := customerAuth(cfg)
	if err != nil {
		return n, err
	}
	n.cursors = cursors
	reg := metrics.NewRegistry()
	m := metrics.NewChannel(reg)
	cfg.Channel.Observer = m
	d, err := OpenDomain(ctx, cfg)
	if err != nil {
		return n, err
	}
	n.store, n.ch = d.opened, d.Channel
	store, core := d.Store, d.core
	state := metrics.ChannelState{Backlog: n.ch.Backlog, Logger: cfg.Logger}
	checks := readiness(n.store, func(ctx context.Context) error {
		_, _, err := n.store.Account(ctx, "readyz")
		return err
	})
	runCtx := n.background()
	n.wg.Go(func() { n.ch.RunReconciler(runCtx) })
	admin := bhttp.AdminConfig{Token: cfg.AdminToken, Channel: n.ch, Core: core, Logger: cfg.Logger}
	if conn := cfg.Kafka; len(conn.Brokers) > 0 {
		if err := reachKafka(ctx, conn); err != nil {
			return n, err
		}
		cc := cfg.Consumer
		cc.Conn, cc.Logger, cc.Tracer = conn, cfg.Logger, tracer(cfg.Tracing, "banksync/kafka")
		if cc.Tracer != nil {
			cc.Traced = n.ch.NoteTrace
		}
		// The repair, the admin API and the gauge read the topic the
		// consumer writes its letters to.
		cc.DLQTopic = cmp.Or(cc.DLQTopic, kafka.DLQTopicOf(cc.Topic))
		if n.consumer, err = startConsumer(cc, n.ch); err != nil {
			return n, err
		}
		// One dead-letter client for the repair, the admin API and the
		// depth gauge; closed after them (Close).
		if n.deadLetters, err = kafka.NewDeadLetters(conn, cc.DLQTopic); err != nil {
			return n, err
		}
		admin.DeadLetters, admin.Consumer = dlqOps{letters: n.deadLetters, sync: n.ch, history: store, replayed: m.Replayed, log: cfg.Logger}, n.consumer
		state.Lag, state.DeadLetters = n.consumer.Lag, n.deadLetters.Depth
		checks["kafka"] = n.consumer.Joined
		if !cfg.NoDeadLetterRepair {
			rc := cfg.Repair
			rc.Logger, rc.Replayed = cfg.Logger, func(r kafka.ReplayResult) { m.Replayed(r.Applied) }
			n.wg.Go(func() { n.deadLetters.RunRepair(runCtx, rc, n.ch) })
		}
	}
	metrics.RegisterChannelState(reg, state)
	return n, n.serve(cfg, reg, checks, admin, auth)
}

// serve starts the replica's HTTP servers: the customer API with the app
// and the probes, and the operator API, page and metrics on OpsListen or
// beside them.
func (n *Channel) serve(cfg ChannelConfig, reg *prometheus.Registry, checks map[string]bhttp.Check, admin bhttp.AdminConfig, auth *bhttp.Authenticator) (err error) {
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
			return err
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
		Auth: auth, Cursors: n.cursors, Logger: cfg.Logger,
		TransferLimit: perSecond(cfg.RateTransfers), ReadLimit: perSecond(cfg.RateReads), Tracer: tracer(cfg.Tracing, "banksync/http"),
	})
	root.Handle("/", api)
	route := muxRoute(root, api, adminAPI)
	n.api, err = serve(&n.wg, "channel", cfg.Listen, traced(cfg.Tracing, root, route), route, nil, httpMetrics, cfg.Logger)
	return err
}

// Domain is a channel's domain on its own — its store and its client of
// core, without servers or Kafka — for work beside the replicas:
// `banksync dlq replay` applies letters through it.
type Domain struct {
	Channel *channel.Channel
	Store   channel.Store // the store the domain writes through (WrapStore's, if set)
	opened  channel.Store // the store opened, closed by Close
	core    *bhttp.CoreClient
}

// OpenDomain opens cfg's channel database and builds the domain over it
// and a client of core. Of cfg.Channel, Logger is cfg's.
func OpenDomain(ctx context.Context, cfg ChannelConfig) (*Domain, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	coreTransport := cfg.CoreTransport
	if coreTransport == nil {
		var err error
		if coreTransport, err = coreClientTransport(cfg.CoreURL, cfg.CoreCA, cfg.CoreCert, cfg.CoreKey); err != nil {
			return nil, err
		}
	}
	store, err := OpenChannelStore(ctx, cfg.DB, cfg.Logger)
	if err != nil {
		return nil, err
	}
	d := &Domain{Store: store, opened: store}
	if cfg.WrapStore != nil {
		d.Store = cfg.WrapStore(store)
	}
	d.core = bhttp.NewCoreClient(strings.TrimSuffix(cfg.CoreURL, "/"), cfg.ServiceToken, tracedTransport(cfg.Tracing, coreTransport))
	domain := cfg.Channel
	domain.Logger = cfg.Logger
	d.Channel = channel.New(d.Store, d.core, domain)
	return d, nil
}

// Close stops the domain's batcher and closes its store.
func (d *Domain) Close() error {
	d.Channel.Close()
	return d.opened.Close()
}

// Domain is the replica's channel, for callers in the same process (the
// in-process chaos run's workload).
func (n *Channel) Domain() *channel.Channel { return n.ch }

// Cursors keys the replica's history cursors.
func (n *Channel) Cursors() channel.Cursors { return n.cursors }

// StopConsumer makes the replica's consumer leave its group — as a crashed
// member would when its DrainTimeout is negative: work in flight cut off,
// uncommitted records going to whoever takes the partitions — and
// StartConsumer joins again as a new member. The in-process chaos run
// restarts consumers with them. Without Kafka they do nothing.
func (n *Channel) StopConsumer() {
	if n.consumer != nil {
		n.consumer.stop()
	}
}

// StartConsumer: see StopConsumer. It does nothing while a member runs.
func (n *Channel) StartConsumer() error {
	if n.consumer == nil {
		return nil
	}
	return n.consumer.start()
}

// customerAuth builds what verifies customers' tokens — the HS256 secret or
// the identity provider's public key — and the cursor key.
func customerAuth(cfg ChannelConfig) (*bhttp.Authenticator, channel.Cursors, error) {
	if cfg.JWTLeeway < 0 || cfg.JWTLeeway > bhttp.LeewayMax {
		return nil, channel.Cursors{}, fmt.Errorf("--jwt-leeway %v is outside 0s to %v: it is the clock skew allowed between the identity provider and the channel", cfg.JWTLeeway, bhttp.LeewayMax)
	}
	opts := bhttp.AuthOptions{Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, Leeway: cfg.JWTLeeway}
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
// reconciler, the consumer and the repair, and closes the store.
func (n *Channel) Close() error {
	// The consumer drains while the reconciler and the repair stop: the
	// pods' grace period allows for the longest of them, not their sum.
	var consumer []func()
	if n.consumer != nil {
		consumer = append(consumer, n.consumer.close)
	}
	if n.ch != nil {
		n.ch.StopStreams() // else open streams hold the servers' shutdown
	}
	errs := []error{n.halt(false, consumer...)}
	if n.deadLetters != nil {
		n.deadLetters.Close()
	}
	if n.ch != nil {
		n.ch.Close()
	}
	if n.store != nil {
		errs = append(errs, n.store.Close())
	}
	return errors.Join(errs...)
}
