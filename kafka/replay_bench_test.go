package kafka_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"banksync"
	"banksync/kafka"
)

// BenchmarkReplayDeadLetters: the backlog an outage leaves — b.N dead
// letters over 1,000 accounts, whose entries core has booked and the
// history lacks — replayed into a channel over SQLite. "batched" is
// DeadLetters.Replay (the letters of each fetch in one group-committed
// ApplyBatch); "one-by-one" is the baseline of the same letters applied
// each as a batch of one, one transaction per letter, as a replay did
// before batching. ns/op is per letter. Run with -benchtime Nx.
func BenchmarkReplayDeadLetters(b *testing.B) {
	for _, mode := range []string{"batched", "one-by-one"} {
		b.Run(mode, func(b *testing.B) {
			ctx := context.Background()
			p := newPipeline(b, nil)
			const accounts = 1000
			for i := range accounts {
				if _, _, err := p.ledger.CreateAccount(ctx, fmt.Sprintf("acc-%d", i), "c"); err != nil {
					b.Fatal(err)
				}
			}
			ds := make([]banksync.DepositRequest, b.N)
			for i := range ds {
				ds[i] = banksync.DepositRequest{ExternalRef: fmt.Sprintf("kb-%d", i), AccountID: fmt.Sprintf("acc-%d", i%accounts), Amount: 1, Sender: "kb"}
			}
			for len(ds) > 0 {
				n := min(len(ds), 1000)
				if _, err := p.ledger.Deposits(ctx, ds[:n]); err != nil {
					b.Fatal(err)
				}
				ds = ds[n:]
			}
			var entries []banksync.Entry
			for i := range accounts {
				es, err := p.coreStore.Entries(ctx, fmt.Sprintf("acc-%d", i), 0, 1<<20)
				if err != nil {
					b.Fatal(err)
				}
				entries = append(entries, es...)
			}
			cl, err := kgo.NewClient(kgo.SeedBrokers(p.brokers...), kgo.DefaultProduceTopic(banksync.TopicLedgerEntriesDLQ))
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close()
			records := make([]*kgo.Record, len(entries))
			for i, e := range entries {
				value, _ := json.Marshal(banksync.EventOf(e))
				records[i] = &kgo.Record{Key: []byte(e.AccountID), Value: value}
			}
			if err := cl.ProduceSync(ctx, records...).FirstErr(); err != nil {
				b.Fatal(err)
			}
			dls := mustDeadLetters(b, kafka.Brokers(p.brokers...), banksync.TopicLedgerEntriesDLQ)
			b.ResetTimer()
			switch mode {
			case "batched":
				res, err := dls.Replay(ctx, nil, p.apply, nil)
				if err != nil || res.Applied != len(entries) {
					b.Fatalf("replay = %+v, %v; want %d applied", res, err, len(entries))
				}
			case "one-by-one":
				for _, e := range entries {
					if err := p.apply.ApplyBatch(ctx, [][]banksync.Entry{{e}})[0]; err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			for i := range accounts {
				id := fmt.Sprintf("acc-%d", i)
				if st, _, err := p.history.Account(ctx, id); err != nil || st.SyncedSeq != int64((b.N-i+accounts-1)/accounts) {
					b.Fatalf("%s synced through %d (%v), want %d", id, st.SyncedSeq, err, (b.N-i+accounts-1)/accounts)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "letters/s")
		})
	}
}
