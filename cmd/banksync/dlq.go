package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
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
	f := newFlags("dlq list", "Lists the records of the dead-letter topic: account, seq, state (waiting, held,\nreplayed, parked), reason, age, where it came from and where it is. A letter that\ncannot be decoded is listed with its raw key and why.")
	f.String(&brokers, "kafka", "BANKSYNC_KAFKA_BROKERS", "127.0.0.1:9092", "Kafka brokers host:port,…")
	kafkaSec := f.kafkaSecurityFlags()
	if err := f.parse(args); err != nil {
		return err
	}
	conn, err := kafkaSec.conn(parseBrokers(brokers))
	if err != nil {
		return err
	}
	letters, err := kafka.ReadDeadLetters(ctx, conn, banksync.TopicLedgerEntriesDLQ)
	if err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "ACCOUNT\tSEQ\tSTATE\tREASON\tATTEMPTS\tAGE\tFROM\tAT")
	states := map[string]int{}
	for _, d := range letters {
		age := "?"
		if !d.At.IsZero() {
			age = time.Since(d.At).Round(time.Second).String()
		}
		account, seq, reason := d.Event.AccountID, strconv.FormatInt(d.Event.Seq, 10), d.Reason
		if d.Undecodable != "" {
			// The raw key, quoted: it may be anything.
			account, seq, reason = strconv.Quote(oneLine(d.Key, 40)), "?", "undecodable: "+d.Undecodable+"; "+reason
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%d/%d\t%d/%d\n", account, seq, d.State, oneLine(reason, 60),
			d.Attempts, age, d.FromPartition, d.FromOffset, d.Partition, d.Offset)
		states[d.State]++
	}
	w.Flush()
	fmt.Printf("%d dead letters: %d waiting, %d held, %d replayed, %d parked\n", len(letters),
		states[kafka.LetterWaiting], states[kafka.LetterHeld], states[kafka.LetterReplayed], states[kafka.LetterParked])
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
	f := newFlags("dlq replay", "Re-applies dead letters through the channel's sync engine, as every channel\nreplica also does on its own. --all replays every letter not yet replayed and\nrecords how far it got: a letter that cannot be decoded is parked (its account\nsynced from core), one that still fails is held and tried again later.\n--account ID applies that account's letters and holds the others.")
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
	kafkaSec := f.kafkaSecurityFlags()
	if err := f.parse(args); err != nil {
		return err
	}
	if all == (account != "") || token == "" {
		return errors.New("give exactly one of --all and --account, and --service-token")
	}
	conn, err := kafkaSec.conn(parseBrokers(brokers))
	if err != nil {
		return err
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
	res, err := kafka.ReplayDeadLetters(ctx, conn, banksync.TopicLedgerEntriesDLQ, accountMatch(account), ch, logger)
	fmt.Printf("replayed %d dead letters, parked %d, held %d still failing, skipped %d of other accounts\n", res.Applied, res.Parked, res.Held, res.Skipped)
	return err
}

// dlqOps serves the admin API's dead-letter operations from Kafka, applying
// through the channel's sync engine.
type dlqOps struct {
	conn     kafka.Conn
	sync     kafka.Syncer
	history  channel.Store // to tell which letters' entries are in the history
	replayed func(n int)   // counts letters a replay applied
	log      *slog.Logger  // each letter replayed is logged
}

func (o dlqOps) List(ctx context.Context) ([]bhttp.DeadLetterView, error) {
	letters, err := kafka.ReadDeadLetters(ctx, o.conn, banksync.TopicLedgerEntriesDLQ)
	if err != nil {
		return nil, err
	}
	synced := map[string]int64{}
	views := make([]bhttp.DeadLetterView, 0, len(letters))
	for _, d := range letters {
		account := d.Account()
		if _, ok := synced[account]; !ok && account != "" {
			st, _, err := o.history.Account(ctx, account)
			if err != nil {
				return nil, fmt.Errorf("read history state of %s: %w", account, err)
			}
			synced[account] = st.SyncedSeq
		}
		headers := make([]bhttp.HeaderView, len(d.Headers))
		for i, h := range d.Headers {
			headers[i] = bhttp.HeaderView{Key: h.Key, Value: string(h.Value)}
		}
		views = append(views, bhttp.DeadLetterView{AccountID: account, Key: d.Key, Seq: d.Event.Seq, EventID: d.Event.EventID,
			Undecodable: d.Undecodable, Reason: d.Reason, Attempts: d.Attempts, At: d.At,
			FromPartition: d.FromPartition, FromOffset: d.FromOffset, Partition: d.Partition, Offset: d.Offset,
			Headers: headers, State: d.State, Replayed: d.State == kafka.LetterReplayed || d.State == kafka.LetterParked,
			InHistory: d.Undecodable == "" && d.Event.Seq <= synced[account]})
	}
	return views, nil
}

func (o dlqOps) Replay(ctx context.Context, account string) (kafka.ReplayResult, error) {
	res, err := kafka.ReplayDeadLetters(ctx, o.conn, banksync.TopicLedgerEntriesDLQ, accountMatch(account), o.sync, o.log)
	if o.replayed != nil {
		o.replayed(res.Applied)
	}
	return res, err
}

// accountMatch picks one account's letters for a replay; "" picks every
// letter (a nil match).
func accountMatch(account string) func(banksync.LedgerEvent) bool {
	if account == "" {
		return nil
	}
	return func(ev banksync.LedgerEvent) bool { return ev.AccountID == account }
}
