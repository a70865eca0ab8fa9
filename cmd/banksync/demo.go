package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"

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
	f.String(&cfg.KafkaListen, "kafka-listen", "BANKSYNC_KAFKA_LISTEN", "127.0.0.1:9092", "address of the embedded Kafka cluster; when its port is taken (another demo), a free port, printed at start")
	f.String(&cfg.ServiceToken, "service-token", "BANKSYNC_SERVICE_TOKEN", "", "service token (default: one made at the first start and kept under --data)")
	f.Bool(&cfg.Traffic, "traffic", "BANKSYNC_DEMO_TRAFFIC", false, "add steady synthetic traffic: deposits from other banks, transfers between demo customers")
	f.Float64(&cfg.RateTransfers, "rate-transfers", "BANKSYNC_RATE_TRANSFERS", 5, "transfers a customer may send per second (bursts of twice that); 0 is no limit").within(0, ratePerSecondMax)
	f.Float64(&cfg.RateReads, "rate-reads", "BANKSYNC_RATE_READS", 50, "reads and syncs a customer may make per second (bursts of twice that); 0 is no limit").within(0, ratePerSecondMax)
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

// printWelcome says what the demo runs and where: the pages to open, the
// APIs, the Kafka address it took, its data directory and the rate limits
// it applies, and a first call to try.
func printWelcome(w io.Writer, d *demo.Demo, cfg demo.Config) {
	url, coreURL := d.URL(), d.CoreURL()
	kafkaAddrs := strings.Join(d.Core().Conn().Brokers, ",")
	if _, port, _ := net.SplitHostPort(cfg.KafkaListen); port != "0" && kafkaAddrs != cfg.KafkaListen {
		kafkaAddrs += " (" + cfg.KafkaListen + " was taken)"
	}
	data := cfg.Data
	if abs, err := filepath.Abs(data); err == nil {
		data = abs
	}
	limits := "none (--rate-transfers, --rate-reads set them)"
	if cfg.RateTransfers > 0 || cfg.RateReads > 0 {
		limits = fmt.Sprintf("%s and %s a second per customer (--rate-transfers, --rate-reads; 0 is none)",
			rate(cfg.RateTransfers, "transfers"), rate(cfg.RateReads, "reads"))
	}
	traffic := ""
	if cfg.Traffic {
		traffic = "\n  traffic       on: deposits from other banks, transfers between bob, carol and dave"
	}
	fmt.Fprintf(w, `
banksync demo is running: core, the channel and an embedded Kafka cluster, in this one process.

  Open the bank app:    %s/app/
  Operations view:      %s/ops/#token=%s

  channel API   %s/v1        (customers alice, bob, carol, dave)
  core API      %s/core/v1   (service token: %s)
  kafka         %s   topic %s
  data          %s
  rate limit    %s%s

Or try the API as alice:
  export TOKEN=%s
  curl -s -H "Authorization: Bearer $TOKEN" %s/v1/accounts
  curl -s -H "Authorization: Bearer $TOKEN" -H "Idempotency-Key: $RANDOM" -H 'Content-Type: application/json' \
    -d '{"from_account":"demo-alice","to_account":"demo-bob","amount":1000,"memo":"lunch"}' %s/v1/transfers
  curl -s -H "Authorization: Bearer $TOKEN" '%s/v1/accounts/demo-alice/transactions?limit=20'

Press Ctrl-C to stop; starting again resumes from %s.
`, url, url, d.Secrets().AdminToken, url, coreURL, d.Secrets().ServiceToken, kafkaAddrs, banksync.TopicLedgerEntries,
		data, limits, traffic,
		d.Token("alice"), url, url, url, data)
}

// rate is "5 transfers", or "unlimited transfers" for 0.
func rate(perSecond float64, what string) string {
	if perSecond == 0 {
		return "unlimited " + what
	}
	return fmt.Sprintf("%g %s", perSecond, what)
}
