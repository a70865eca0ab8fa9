package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"banksync"
	"banksync/channel"
	bhttp "banksync/http"
	"banksync/ledger"
)

type demoCommand struct{}

func (demoCommand) Run(ctx context.Context, args []string) error {
	var data, listen, coreListen, kafkaListen, token string
	f := newFlags("demo", "Runs core and channel with SQLite files and an embedded Kafka-protocol cluster\nunder --data, in one process, with two demo customers.")
	f.String(&data, "data", "BANKSYNC_DATA", "data", "directory for the databases and Kafka's log")
	f.String(&listen, "listen", "BANKSYNC_CHANNEL_LISTEN", "127.0.0.1:8080", "address to serve the channel (customer) API on")
	f.String(&coreListen, "core-listen", "BANKSYNC_CORE_LISTEN", "127.0.0.1:8081", "address to serve the core API on")
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
		Listen: coreListen, DB: "sqlite:" + filepath.Join(data, "core.db"), Kafka: "embedded", KafkaListen: kafkaListen,
		KafkaData: filepath.Join(data, "kafka"), Partitions: 10, ServiceToken: token,
		AmountMax: banksync.AmountMaxDefault, Logger: log,
	})
	if err != nil {
		return err
	}
	if err := seedDemo(ctx, node.ledger); err != nil {
		node.Close()
		return err
	}
	jwtSecret := make([]byte, 32)
	rand.Read(jwtSecret)
	chNode, err := startChannel(ctx, channelConfig{
		Listen: listen, DB: "sqlite:" + filepath.Join(data, "channel.db"), CoreURL: "http://" + node.Addr(),
		ServiceToken: token, JWTSecret: hex.EncodeToString(jwtSecret), Deadline: channel.DeadlineDefault,
		Kafka:     strings.Join(node.Brokers(), ","),
		AmountMax: banksync.AmountMaxDefault, Logger: log,
	})
	if err != nil {
		node.Close()
		return err
	}
	auth, err := bhttp.NewHS256Authenticator([]byte(hex.EncodeToString(jwtSecret)), bhttp.AuthOptions{})
	if err != nil {
		return err
	}
	alice, _ := auth.Issue("alice", 24*time.Hour)
	bob, _ := auth.Issue("bob", 24*time.Hour)
	coreURL, url := "http://"+node.Addr(), "http://"+chNode.Addr()
	fmt.Printf(`
banksync demo is running.

  channel API   %s/v1        (customers alice and bob, tokens below)
  core API      %s/core/v1   (service token: %s)
  kafka         %v   topic %s
  data          %s

Try it as alice:
  export TOKEN=%s
  curl -s -H "Authorization: Bearer $TOKEN" %s/v1/accounts
  curl -s -H "Authorization: Bearer $TOKEN" -H "Idempotency-Key: $RANDOM" -H 'Content-Type: application/json' \
    -d '{"from_account":"demo-alice","to_account":"demo-bob","amount":1000,"memo":"lunch"}' %s/v1/transfers
  curl -s -H "Authorization: Bearer $TOKEN" '%s/v1/accounts/demo-alice/transactions?limit=20'

Bob's token: %s

Press Ctrl-C to stop; starting again resumes from %s.
`, url, coreURL, token, node.Brokers(), banksync.TopicLedgerEntries, data, alice, url, url, url, bob, data)
	<-ctx.Done()
	fmt.Println("\nstopping…")
	return errors.Join(chNode.Close(), node.Close())
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
