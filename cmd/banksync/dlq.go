package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"banksync"
	"banksync/channel"
	bhttp "banksync/http"
	"banksync/kafka"
)

type dlqCommand struct{}

func (dlqCommand) Run(ctx context.Context, args []string) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "replay") {
		return errors.New("usage: banksync dlq list|replay [flags]  (see banksync dlq list -h)")
	}
	if args[0] == "list" {
		return dlqList(ctx, args[1:])
	}
	return dlqReplay(ctx, args[1:])
}

func dlqList(ctx context.Context, args []string) error {
	var brokers string
	f := newFlags("dlq list", "Lists the records of the dead-letter topic: account, seq, reason, age, and whether replayed.")
	f.String(&brokers, "kafka", "BANKSYNC_KAFKA_BROKERS", "127.0.0.1:9092", "Kafka brokers host:port,…")
	if err := f.parse(args); err != nil {
		return err
	}
	letters, replayed, err := kafka.ReadDeadLetters(ctx, parseBrokers(brokers), banksync.TopicLedgerEntriesDLQ)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ACCOUNT\tSEQ\tREASON\tATTEMPTS\tAGE\tFROM\tREPLAYED")
	for _, d := range letters {
		age := "?"
		if !d.At.IsZero() {
			age = time.Since(d.At).Round(time.Second).String()
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%d\t%s\t%d/%d\t%v\n", d.Event.AccountID, d.Event.Seq, oneLine(d.Reason, 60),
			d.Attempts, age, d.FromPartition, d.FromOffset, d.Offset < replayed[d.Partition])
	}
	w.Flush()
	fmt.Printf("%d dead letters\n", len(letters))
	return nil
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		return s[:max-1] + "…"
	}
	return s
}

func dlqReplay(ctx context.Context, args []string) error {
	var brokers, db, coreURL, coreCA, coreCert, coreKey, token, account string
	var all bool
	f := newFlags("dlq replay", "Re-applies dead letters through the channel's sync engine. --all replays every\nletter not yet replayed and records how far it got; --account ID applies that\naccount's letters and records nothing (a later --all sees them again, harmlessly).")
	f.String(&brokers, "kafka", "BANKSYNC_KAFKA_BROKERS", "127.0.0.1:9092", "Kafka brokers host:port,…")
	f.String(&db, "db", "BANKSYNC_CHANNEL_DB", "sqlite:data/channel.db", "the channel's database")
	f.String(&coreURL, "core-url", "BANKSYNC_CORE_URL", "http://127.0.0.1:8081", "base URL of the core API (to fill holes)")
	f.String(&coreCA, "core-ca", "BANKSYNC_CORE_CA", "", "PEM bundle of CAs core's certificate must chain to (https:// --core-url); unset, the system roots")
	f.String(&coreCert, "core-cert", "BANKSYNC_CORE_CERT", "", "PEM client certificate presented to core (for core's --client-ca)")
	f.String(&coreKey, "core-key", "BANKSYNC_CORE_KEY", "", "PEM private key of --core-cert")
	f.String(&token, "service-token", "BANKSYNC_SERVICE_TOKEN", "", "bearer token for core (required)")
	newLog := f.logFlags("text") // each letter replayed is logged
	f.Bool(&all, "all", "BANKSYNC_DLQ_ALL", false, "replay every letter not yet replayed")
	f.String(&account, "account", "BANKSYNC_DLQ_ACCOUNT", "", "replay only this account's letters")
	if err := f.parse(args); err != nil {
		return err
	}
	if all == (account != "") || token == "" {
		return errors.New("give exactly one of --all and --account, and --service-token")
	}
	logger, err := newLog()
	if err != nil {
		return err
	}
	transport, err := coreClientTransport(coreURL, coreCA, coreCert, coreKey)
	if err != nil {
		return err
	}
	store, err := openChannelStore(ctx, db)
	if err != nil {
		return err
	}
	defer store.Close()
	ch := channel.New(store, bhttp.NewCoreClient(strings.TrimSuffix(coreURL, "/"), token, transport), channel.Config{Logger: logger})
	var match func(banksync.LedgerEvent) bool
	if account != "" {
		match = func(ev banksync.LedgerEvent) bool { return ev.AccountID == account }
	}
	res, err := kafka.ReplayDeadLetters(ctx, parseBrokers(brokers), banksync.TopicLedgerEntriesDLQ, match, ch, logger)
	fmt.Printf("replayed %d dead letters (%d of other accounts left)\n", res.Applied, res.Skipped)
	return err
}

// dlqOps serves the admin API's dead-letter operations from Kafka, applying
// through the channel's sync engine.
type dlqOps struct {
	brokers  []string
	apply    kafka.Applier
	history  channel.Store // to tell which letters' entries are in the history
	replayed func(n int)   // counts letters a replay applied
	log      *slog.Logger  // each letter replayed is logged
}

func (o dlqOps) List(ctx context.Context) ([]bhttp.DeadLetterView, error) {
	letters, replayed, err := kafka.ReadDeadLetters(ctx, o.brokers, banksync.TopicLedgerEntriesDLQ)
	if err != nil {
		return nil, err
	}
	synced := map[string]int64{}
	views := make([]bhttp.DeadLetterView, 0, len(letters))
	for _, d := range letters {
		account := d.Event.AccountID
		if _, ok := synced[account]; !ok {
			st, _, err := o.history.Account(ctx, account)
			if err != nil {
				return nil, fmt.Errorf("read history state of %s: %w", account, err)
			}
			synced[account] = st.SyncedSeq
		}
		views = append(views, bhttp.DeadLetterView{AccountID: account, Seq: d.Event.Seq, EventID: d.Event.EventID,
			Reason: d.Reason, Attempts: d.Attempts, At: d.At, FromPartition: d.FromPartition, FromOffset: d.FromOffset,
			Replayed: d.Offset < replayed[d.Partition], InHistory: d.Event.Seq <= synced[account]})
	}
	return views, nil
}

func (o dlqOps) Replay(ctx context.Context, account string) (int, error) {
	var match func(banksync.LedgerEvent) bool
	if account != "" {
		match = func(ev banksync.LedgerEvent) bool { return ev.AccountID == account }
	}
	res, err := kafka.ReplayDeadLetters(ctx, o.brokers, banksync.TopicLedgerEntriesDLQ, match, o.apply, o.log)
	if o.replayed != nil {
		o.replayed(res.Applied)
	}
	return res.Applied, err
}
