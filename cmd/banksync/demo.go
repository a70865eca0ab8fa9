package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"banksync"
	"banksync/demo"
	bhttp "banksync/http"
)

type demoCommand struct{}

func (demoCommand) Run(ctx context.Context, args []string) error {
	var cfg demo.Config
	f := newFlags("demo", "Runs core and channel with SQLite files and an embedded Kafka-protocol cluster\nunder --data, in one process, with demo customers, their accounts and some history.\nOpen the printed address in a browser.")
	f.String(&cfg.Data, "data", "BANKSYNC_DATA", "data", "directory for the databases and Kafka's log")
	f.String(&cfg.Listen, "listen", "BANKSYNC_CHANNEL_LISTEN", "127.0.0.1:8080", "address to serve the app, the operations page and the channel API on")
	f.String(&cfg.CoreListen, "core-listen", "BANKSYNC_CORE_LISTEN", "127.0.0.1:8081", "address to serve the core API on")
	f.String(&cfg.KafkaListen, "kafka-listen", "BANKSYNC_KAFKA_LISTEN", "127.0.0.1:9092", "address of the embedded Kafka cluster")
	f.String(&cfg.ServiceToken, "service-token", "BANKSYNC_SERVICE_TOKEN", "", "service token (default: one made at the first start and kept under --data)")
	f.Bool(&cfg.Traffic, "traffic", "BANKSYNC_DEMO_TRAFFIC", false, "add steady synthetic traffic: deposits from other banks, transfers between demo customers")
	if err := f.parse(args); err != nil {
		return err
	}
	// Warnings only, so the terminal stays readable under --traffic.
	cfg.Logger = slog.New(bhttp.LogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	d, err := demo.Start(ctx, cfg)
	if err != nil {
		return err
	}
	printWelcome(os.Stdout, d, cfg)
	<-ctx.Done()
	fmt.Println("\nstopping…")
	return d.Close()
}

func printWelcome(w io.Writer, d *demo.Demo, cfg demo.Config) {
	url, coreURL := d.URL(), d.CoreURL()
	traffic := ""
	if cfg.Traffic {
		traffic = "\n  traffic       on: deposits from other banks, transfers between bob, carol and dave"
	}
	fmt.Fprintf(w, `
banksync demo is running.

  Open the bank app:    %s/app/
  Operations view:      %s/ops/#token=%s

  channel API   %s/v1        (customers alice, bob, carol, dave)
  core API      %s/core/v1   (service token: %s)
  kafka         %v   topic %s
  data          %s%s

Or try the API as alice:
  export TOKEN=%s
  curl -s -H "Authorization: Bearer $TOKEN" %s/v1/accounts
  curl -s -H "Authorization: Bearer $TOKEN" -H "Idempotency-Key: $RANDOM" -H 'Content-Type: application/json' \
    -d '{"from_account":"demo-alice","to_account":"demo-bob","amount":1000,"memo":"lunch"}' %s/v1/transfers
  curl -s -H "Authorization: Bearer $TOKEN" '%s/v1/accounts/demo-alice/transactions?limit=20'

Press Ctrl-C to stop; starting again resumes from %s.
`, url, url, d.Secrets().AdminToken, url, coreURL, d.Secrets().ServiceToken, d.Core().Conn().Brokers, banksync.TopicLedgerEntries,
		cfg.Data, traffic,
		d.Token("alice"), url, url, url, cfg.Data)
}
