package channel

import (
	"context"
	"fmt"
	"iter"
	"time"

	"banksync"
)

// statementPage is how many rows a statement reads from the store at a
// time, so a long statement never holds one read open for its whole
// download.
const statementPage = 1000

// Statement is a statement (거래내역서) of one account: the entries booked
// in [From, To), oldest first, read from the channel's history alone. It
// holds exactly the entries through Account.SyncedSeq that fall in the
// range: the history is in step with core through that seq, and the
// statement says so.
type Statement struct {
	Account AccountState
	From    time.Time
	To      time.Time
	Entries iter.Seq2[banksync.Entry, error]
}

// Statement returns the customer's statement of account for [from, to). It
// authorises as a read does (another customer's account is not found) and
// never asks core for entries: a statement is what the channel holds. The
// entries are read a page at a time as Entries is ranged over; an error
// there ends the range, and the caller must not present what came before
// it as the whole statement.
func (c *Channel) Statement(ctx context.Context, customer, account string, from, to time.Time) (Statement, error) {
	if !from.Before(to) {
		return Statement{}, banksync.Errorf(banksync.EINVALID, "a statement's range must end after it starts")
	}
	st, err := c.authorize(ctx, customer, account)
	if err != nil {
		return Statement{}, err
	}
	through := st.SyncedSeq
	entries := func(yield func(banksync.Entry, error) bool) {
		after := int64(0)
		for {
			page, err := c.store.Statement(ctx, account, after, through, from, to, statementPage)
			if err != nil {
				yield(banksync.Entry{}, fmt.Errorf("read statement: %w", err))
				return
			}
			for _, e := range page {
				if !yield(e, nil) {
					return
				}
			}
			if len(page) < statementPage {
				return
			}
			after = page[len(page)-1].Seq
		}
	}
	return Statement{Account: st, From: from, To: to, Entries: entries}, nil
}
