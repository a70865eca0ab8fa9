package node

import (
	"context"
	"fmt"
	"log/slog"

	"banksync"
	"banksync/channel"
	bhttp "banksync/http"
	"banksync/kafka"
)

// dlqOps serves the admin API's dead-letter operations from Kafka, applying
// through the channel's sync engine.
type dlqOps struct {
	letters  *kafka.DeadLetters
	sync     kafka.Syncer
	history  channel.Store // to tell which letters' entries are in the history
	replayed func(n int)   // counts letters a replay applied
	log      *slog.Logger  // each letter replayed is logged
}

func (o dlqOps) List(ctx context.Context) ([]bhttp.DeadLetterView, error) {
	letters, err := o.letters.List(ctx)
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
	res, err := o.letters.Replay(ctx, AccountMatch(account), o.sync, o.log)
	if o.replayed != nil {
		o.replayed(res.Applied)
	}
	return res, err
}

// AccountMatch picks one account's letters for a replay; "" picks every
// letter (a nil match).
func AccountMatch(account string) func(banksync.LedgerEvent) bool {
	if account == "" {
		return nil
	}
	return func(ev banksync.LedgerEvent) bool { return ev.AccountID == account }
}
