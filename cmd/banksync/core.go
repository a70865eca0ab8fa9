package main

import (
	"context"
	"errors"
	"math"

	"banksync"
	"banksync/kafka"
	"banksync/node"
)

type coreCommand struct {
	cfg node.CoreConfig
}

func (c *coreCommand) Run(ctx context.Context, args []string) error {
	var kafkaMode, kafkaListen, kafkaData string
	f := newFlags("core", "Runs the core ledger API and its outbox relay to Kafka.")
	f.String(&c.cfg.Listen, "listen", "BANKSYNC_CORE_LISTEN", "127.0.0.1:8081", "address to serve the core API on")
	f.String(&c.cfg.DB, "db", "BANKSYNC_CORE_DB", "sqlite:data/core.db", "ledger database: sqlite:PATH or postgres://…")
	f.String(&kafkaMode, "kafka", "BANKSYNC_KAFKA_BROKERS", "embedded", `Kafka brokers host:port,…; "embedded" runs an in-process cluster`)
	f.String(&kafkaListen, "kafka-listen", "BANKSYNC_KAFKA_LISTEN", "127.0.0.1:9092", "address of the embedded Kafka cluster")
	f.String(&kafkaData, "kafka-data", "BANKSYNC_KAFKA_DATA", "data/kafka", "data directory of the embedded Kafka cluster")
	f.String(&c.cfg.Topic, "topic", "BANKSYNC_TOPIC", banksync.TopicLedgerEntries, "the ledger topic core publishes its entries to (its dead letters go to TOPIC.dlq)")
	f.Int(&c.cfg.Partitions, "partitions", "BANKSYNC_PARTITIONS", 10, "partitions of core.ledger.entries when core creates it").within(1, partitionsMax)
	f.String(&c.cfg.ServiceToken, "service-token", "BANKSYNC_SERVICE_TOKEN", "", "bearer token the channel must present (required)")
	f.String(&c.cfg.OpsListen, "ops-listen", "BANKSYNC_OPS_LISTEN", "", "plain-HTTP address for /healthz, /readyz and /metrics (probes and Prometheus need no client certificate there); unset, only on --listen")
	f.String(&c.cfg.TLSCert, "tls-cert", "BANKSYNC_TLS_CERT", "", "PEM certificate (chain) to serve HTTPS with; unset, core serves plain HTTP")
	f.String(&c.cfg.TLSKey, "tls-key", "BANKSYNC_TLS_KEY", "", "PEM private key of --tls-cert")
	f.String(&c.cfg.ClientCA, "client-ca", "BANKSYNC_CLIENT_CA", "", "PEM bundle of CAs; set, core requires a client certificate signed by one of them (mutual TLS; needs --tls-cert)")
	f.Int64(&c.cfg.AmountMax, "amount-max", "BANKSYNC_AMOUNT_MAX", banksync.AmountMaxDefault, "largest amount of one transfer or deposit, in won").within(1, math.MaxInt64)
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
	c.cfg.Now = sw.now()
	if c.cfg.ServiceToken == "" {
		return errors.New("a service token is required (--service-token or BANKSYNC_SERVICE_TOKEN)")
	}
	var brokers []string
	switch kafkaMode {
	case "embedded":
		c.cfg.EmbeddedKafka = &kafka.ClusterConfig{Addr: kafkaListen, DataDir: kafkaData}
	case "none":
	default:
		brokers = parseBrokers(kafkaMode)
	}
	if c.cfg.Kafka, err = kafkaSec.conn(brokers); err != nil {
		return err
	}
	log, err := logger()
	if err != nil {
		return err
	}
	c.cfg.Logger = log
	tp, stopTracing, err := tracing(ctx, "banksync-core")
	if err != nil {
		return err
	}
	defer stopTracing()
	c.cfg.Tracing = tp
	core, err := node.StartCore(ctx, c.cfg)
	if err != nil {
		return err
	}
	log.Info("core listening", "addr", core.Addr(), "kafka", core.Conn().String(), "tls", c.cfg.TLSCert != "", "client_certs", c.cfg.ClientCA != "")
	<-ctx.Done()
	return core.Close()
}
