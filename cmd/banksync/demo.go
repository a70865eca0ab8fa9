package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"

	"banksync"
	"banksync/ledger"
)

type demoCommand struct{}

func (demoCommand) Run(ctx context.Context, args []string) error {
	var data, listen, kafkaListen, token string
	f := newFlags("demo", "Runs core with SQLite files and an embedded Kafka-protocol cluster under --data,\nin one process, with two demo accounts.")
	f.String(&data, "data", "BANKSYNC_DATA", "data", "directory for the databases and Kafka's log")
	f.String(&listen, "listen", "BANKSYNC_CORE_LISTEN", "127.0.0.1:8081", "address to serve the core API on")
	f.String(&kafkaListen, "kafka-listen", "BANKSYNC_KAFKA_LISTEN", "127.0.0.1:9092", "address of the embedded Kafka cluster")
	f.String(&token, "service-token", "BANKSYNC_SERVICE_TOKEN", "", "service token (default: a fresh random one)")
	if err := f.parse(args); err != nil {
		return err
	}
	if token == "" {
		b := make([]byte, 16)
		rand.Read(b)
		token = "demo-" + hex.EncodeToString(b)
	}
	log, _ := newLogger("text")
	node, err := startCore(ctx, coreConfig{
		Listen: listen, DB: "sqlite:" + filepath.Join(data, "core.db"), Kafka: "embedded", KafkaListen: kafkaListen,
		KafkaData: filepath.Join(data, "kafka"), Partitions: 10, ServiceToken: token,
		AmountMax: ledger.AmountMaxDefault, Logger: log,
	})
	if err != nil {
		return err
	}
	if err := seedDemo(ctx, node.ledger); err != nil {
		node.Close()
		return err
	}
	url := "http://" + node.Addr()
	fmt.Printf(`
banksync demo is running.

  core API      %s/core/v1   (service token: %s)
  kafka         %v   topic %s
  data          %s

Try it:
  curl -s -H 'Authorization: Bearer %s' %s/core/v1/accounts/demo-alice
  curl -s -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' \
    -d '{"transfer_id":"t-'$RANDOM'","from_account":"demo-alice","to_account":"demo-bob","amount":1000,"deadline":"'$(date -u -d '+10 sec' +%%Y-%%m-%%dT%%H:%%M:%%SZ)'"}' \
    %s/core/v1/transfers
  curl -s -H 'Authorization: Bearer %s' '%s/core/v1/accounts/demo-bob/entries?after_seq=0'

Press Ctrl-C to stop; starting again resumes from %s.
`, url, token, node.Brokers(), banksync.TopicLedgerEntries, data, token, url, token, url, token, url, data)
	<-ctx.Done()
	fmt.Println("\nstopping…")
	return node.Close()
}

// seedDemo opens the demo accounts and gives Alice her salary, once.
func seedDemo(ctx context.Context, l *ledger.Ledger) error {
	for _, a := range []struct{ id, owner string }{{"demo-alice", "alice"}, {"demo-bob", "bob"}} {
		if _, _, err := l.CreateAccount(ctx, a.id, a.owner); err != nil {
			return fmt.Errorf("seed demo account %s: %w", a.id, err)
		}
	}
	_, err := l.Deposit(ctx, banksync.DepositRequest{ExternalRef: "demo-salary-1", AccountID: "demo-alice", Amount: 3_000_000, Sender: "acme-payroll"})
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("seed demo deposit: %w", err)
	}
	return nil
}
