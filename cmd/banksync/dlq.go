package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"banksync/kafka"
	"banksync/node"
)

type dlqCommand struct{}

const dlqUsage = `Usage: banksync dlq list|replay [flags]

Reads the dead-letter topic, where the channel's consumers put the events
they could not apply.

  banksync dlq list     list the dead letters: account, seq, state, reason, age
  banksync dlq replay   re-apply dead letters through the channel's sync engine

Run "banksync dlq list -h" or "banksync dlq replay -h" for their flags.
`

func (dlqCommand) Run(ctx context.Context, args []string) error {
	sub, args, err := subcommand("dlq", dlqUsage, args, "list", "replay")
	if err != nil {
		return err
	}
	if sub == "list" {
		return dlqList(ctx, args)
	}
	return dlqReplay(ctx, args)
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
	dls, err := kafka.NewDeadLetters(conn, "")
	if err != nil {
		return err
	}
	defer dls.Close()
	letters, err := dls.List(ctx)
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
	d, err := node.OpenDomain(ctx, node.ChannelConfig{DB: db, CoreURL: coreURL, CoreCA: coreCA, CoreCert: coreCert, CoreKey: coreKey,
		ServiceToken: token, Logger: logger})
	if err != nil {
		return err
	}
	defer d.Close()
	dls, err := kafka.NewDeadLetters(conn, "")
	if err != nil {
		return err
	}
	defer dls.Close()
	res, err := dls.Replay(ctx, node.AccountMatch(account), d.Channel, logger)
	fmt.Printf("replayed %d dead letters, parked %d, held %d still failing, skipped %d of other accounts\n", res.Applied, res.Parked, res.Held, res.Skipped)
	return err
}
