package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"banksync"
	"banksync/channel"
	bhttp "banksync/http"
	"banksync/kafka"
	"banksync/node"
)

type channelCommand struct{}

func (channelCommand) Run(ctx context.Context, args []string) (err error) {
	var cfg node.ChannelConfig
	var brokers string
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
	f.Duration(&cfg.JWTLeeway, "jwt-leeway", "BANKSYNC_JWT_LEEWAY", bhttp.LeewayDefault, "clock skew allowed on customers' tokens (exp, nbf, iat)").within(0, bhttp.LeewayMax)
	f.String(&cfg.CursorSecret, "cursor-secret", "BANKSYNC_CURSOR_SECRET", "", "secret (≥32 bytes) keying history cursors, the same on every replica; default --jwt-secret, required with --jwt-public-key")
	f.Float64(&cfg.RateTransfers, "rate-transfers", "BANKSYNC_RATE_TRANSFERS", 5, "transfers a customer may send per second on this replica (bursts of twice that); 0 is no limit").within(0, ratePerSecondMax)
	f.Float64(&cfg.RateReads, "rate-reads", "BANKSYNC_RATE_READS", 50, "reads and syncs a customer may make per second on this replica (bursts of twice that); 0 is no limit").within(0, ratePerSecondMax)
	f.String(&brokers, "kafka", "BANKSYNC_KAFKA_BROKERS", "", "Kafka brokers host:port,… to consume core's ledger events from")
	f.String(&cfg.Consumer.Topic, "topic", "BANKSYNC_TOPIC", banksync.TopicLedgerEntries, "the ledger topic to consume (core's --topic; dead letters go to TOPIC.dlq)")
	f.String(&cfg.Consumer.Group, "group", "BANKSYNC_GROUP", kafka.ConsumerGroupDefault, "consumer group, the same on every replica of one channel")
	f.Int(&cfg.Consumer.Lanes, "lanes", "BANKSYNC_LANES", 100, "worker lanes applying events; one account is always on one lane").within(1, lanesMax)
	f.Duration(&cfg.Channel.Deadline, "deadline", "BANKSYNC_DEADLINE", channel.DeadlineDefault, "how long core may take to execute a transfer").within(waitMin, pendingWaitMax)
	f.Duration(&cfg.Channel.CoreTimeout, "core-timeout", "BANKSYNC_CORE_TIMEOUT", channel.CoreTimeoutDefault, "how long a transfer waits for core before it is answered pending").within(waitMin, bhttp.CallTimeoutMax)
	f.Duration(&cfg.Channel.ReconcileInterval, "reconcile-interval", "BANKSYNC_RECONCILE_INTERVAL", channel.ReconcileIntervalDefault, "how often transfers past their deadline are settled").within(waitMin, pendingWaitMax)
	f.Duration(&cfg.Channel.ReconcileGrace, "reconcile-grace", "BANKSYNC_RECONCILE_GRACE", channel.ReconcileGraceDefault, "extra wait after a transfer's deadline before it is fenced at core").within(waitMin, pendingWaitMax)
	f.Int64(&cfg.Channel.AmountMax, "amount-max", "BANKSYNC_AMOUNT_MAX", banksync.AmountMaxDefault, "largest transfer, in won (as core's)").within(1, math.MaxInt64)
	kafkaSec := f.kafkaSecurityFlags()
	logger := f.logFlags("json")
	tracing := f.tracingFlags()
	chaosSw := f.chaosFlags()
	if err := f.parse(args); err != nil {
		return err
	}
	sw, err := chaosSw()
	if err != nil {
		return err
	}
	cfg.Channel.Now, cfg.Channel.Unsafe.NoFence, cfg.Consumer.UnsafeCommitBeforeApply = sw.now(), sw.NoFence, sw.CommitBeforeApply
	if cfg.ServiceToken == "" || (cfg.JWTSecret == "") == (cfg.JWTPublicKey == "") {
		return errors.New("--service-token and one of --jwt-secret and --jwt-public-key are required (or BANKSYNC_SERVICE_TOKEN, BANKSYNC_JWT_SECRET, BANKSYNC_JWT_PUBLIC_KEY)")
	}
	if cfg.Kafka, err = kafkaSec.conn(parseBrokers(brokers)); err != nil {
		return err
	}
	log, err := logger()
	if err != nil {
		return err
	}
	cfg.Logger = log
	tp, stopTracing, err := tracing(ctx, "banksync-channel")
	if err != nil {
		return err
	}
	defer stopTracing()
	cfg.Tracing = tp
	replica, err := node.StartChannel(ctx, cfg)
	if err != nil {
		return err
	}
	log.Info("channel listening", "addr", replica.Addr(), "ops_addr", replica.OpsAddr(), "core", cfg.CoreURL)
	<-ctx.Done()
	return replica.Close()
}

type tokenCommand struct{}

func (tokenCommand) Run(ctx context.Context, args []string) error {
	var customer, secret string
	var ttl time.Duration
	f := newFlags("token", "Prints a customer's bearer token (HS256 JWT) for the channel API.")
	f.String(&customer, "customer", "BANKSYNC_CUSTOMER", "", "customer id (the token's sub)")
	f.String(&secret, "secret", "BANKSYNC_JWT_SECRET", "", "the channel's --jwt-secret")
	f.Duration(&ttl, "ttl", "BANKSYNC_TOKEN_TTL", time.Hour, "how long the token is valid").within(time.Second, tokenTTLMax)
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
