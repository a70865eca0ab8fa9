package bench

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Reading history pages after the drain.
const (
	historyPageReads = 2000 // pages read of each kind
	historyPageSize  = 20   // entries a page, as the app asks
)

// readHistoryPages reads, one at a time, the newest page of random accounts
// and a page at a random depth of random accounts, through the channel's
// store as the history API does (keyset: seq below a cursor), and reports
// each kind's p50 and p99: what a customer's scroll costs on a table of
// the size the run left.
func (rig *paydayRig) readHistoryPages(ctx context.Context, res *PaydayResult) error {
	end := rig.step(fmt.Sprintf("history pages: reading %d pages, one at a time", 2*historyPageReads), nil)
	defer end()
	rng := rand.New(rand.NewPCG(uint64(len(rig.ids)), 18))
	read := func(deep bool) ([]time.Duration, error) {
		lat := make([]time.Duration, 0, historyPageReads)
		for range historyPageReads {
			id := rig.ids[rng.IntN(len(rig.ids))]
			before := int64(math.MaxInt64)
			if deep {
				st, ok, err := rig.chStore.Account(ctx, id)
				if err != nil || !ok {
					return nil, fmt.Errorf("history pages: state of %s: known %v, %v", id, ok, err)
				}
				before = 1 + rng.Int64N(st.SyncedSeq+1)
			}
			start := time.Now()
			if _, err := rig.chStore.History(ctx, id, before, historyPageSize); err != nil {
				return nil, err
			}
			lat = append(lat, time.Since(start))
		}
		slices.Sort(lat)
		return lat, nil
	}
	newest, err := read(false)
	if err != nil {
		return err
	}
	deep, err := read(true)
	if err != nil {
		return err
	}
	end()
	res.PageNewestP99ms, res.PageDeepP99ms = percentileMs(newest, 0.99), percentileMs(deep, 0.99)
	fmt.Fprintf(rig.cfg.Out, "history pages:       %d rows in the table; a page of %d, one reader: newest p50 %.2f ms, p99 %.2f ms; at a random depth p50 %.2f ms, p99 %.2f ms\n",
		rig.historyRows(), historyPageSize, percentileMs(newest, 0.5), res.PageNewestP99ms, percentileMs(deep, 0.5), res.PageDeepP99ms)
	return nil
}

// historyRows is how many rows the rig's history holds after the drain.
func (rig *paydayRig) historyRows() int64 {
	rows := int64(rig.cfg.Deposits)
	if rig.prefill != nil {
		rows += rig.prefill.rows
	}
	return rows
}
