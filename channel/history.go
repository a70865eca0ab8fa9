package channel

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"

	"banksync"
)

// History page sizes.
const (
	HistoryPageDefault = 20
	HistoryPageMax     = 100
)

// Page is one page of an account's history, newest first.
type Page struct {
	Account    AccountState     `json:"account"`
	Entries    []banksync.Entry `json:"transactions"`
	NextCursor string           `json:"next_cursor,omitempty"` // older entries follow
	Pending    []Transfer       `json:"pending_transfers"`
}

// Cursors is the key that makes history cursors opaque and tamper-evident.
type Cursors struct{ key []byte }

// NewCursors derives the cursor key from a secret shared by all replicas.
func NewCursors(secret []byte) Cursors {
	k := sha256.Sum256(append([]byte("banksync history cursor v1\x00"), secret...))
	return Cursors{key: k[:]}
}

const cursorMACLength = 16

// encode binds a seq to an account: a cursor works only for the account it
// was issued for.
func (cs Cursors) encode(account string, beforeSeq int64) string {
	buf := binary.BigEndian.AppendUint64(nil, uint64(beforeSeq))
	return base64.RawURLEncoding.EncodeToString(append(buf, cs.mac(account, buf)...))
}

func (cs Cursors) decode(account, cursor string) (int64, error) {
	bad := banksync.Errorf(banksync.EINVALID, "cursor is not valid for this account")
	raw, err := base64.RawURLEncoding.Strict().DecodeString(cursor)
	if err != nil || len(raw) != 8+cursorMACLength || base64.RawURLEncoding.EncodeToString(raw) != cursor {
		return 0, bad // only the one spelling the channel made: the decoder skips CR and LF
	}
	if !hmac.Equal(raw[8:], cs.mac(account, raw[:8])) {
		return 0, bad
	}
	seq := int64(binary.BigEndian.Uint64(raw[:8]))
	if seq < 1 {
		return 0, bad
	}
	return seq, nil
}

func (cs Cursors) mac(account string, seq []byte) []byte {
	m := hmac.New(sha256.New, cs.key)
	m.Write([]byte(account))
	m.Write([]byte{0})
	m.Write(seq)
	return m.Sum(nil)[:cursorMACLength]
}

// History returns a page of the customer's account history, newest first.
// If the account has a pending transfer or is stale, it first syncs with
// core for at most ReadSyncTimeout; if core is slow or down the page is
// answered from what the channel has, flagged stale — a read never fails
// because of core.
func (c *Channel) History(ctx context.Context, cs Cursors, customer, account, cursor string, limit int) (Page, error) {
	if limit < 1 || limit > HistoryPageMax {
		return Page{}, banksync.Errorf(banksync.EINVALID, "limit must be between 1 and %d", HistoryPageMax)
	}
	st, err := c.authorize(ctx, customer, account)
	if err != nil {
		return Page{}, err
	}
	before := int64(math.MaxInt64)
	if cursor != "" {
		if before, err = cs.decode(account, cursor); err != nil {
			return Page{}, err
		}
	}
	pending, err := c.store.PendingOf(ctx, account)
	if err != nil {
		return Page{}, fmt.Errorf("read pending transfers: %w", err)
	}
	if cursor == "" && (st.Stale || len(pending) > 0) {
		sctx, cancel := context.WithTimeout(ctx, c.cfg.ReadSyncTimeout)
		synced, err := c.Sync(sctx, account)
		cancel()
		if err == nil {
			st = synced
		} else {
			st.Stale = true
		}
	}
	entries, err := c.store.History(ctx, account, before, limit+1)
	if err != nil {
		return Page{}, fmt.Errorf("read history: %w", err)
	}
	page := Page{Account: st, Entries: entries, Pending: pending}
	if len(entries) > limit {
		page.Entries = entries[:limit]
		page.NextCursor = cs.encode(account, entries[limit-1].Seq)
	}
	if page.Entries == nil {
		page.Entries = []banksync.Entry{}
	}
	if page.Pending == nil {
		page.Pending = []Transfer{}
	}
	return page, nil
}

// ManualSync is the app's 불러오기 button: sync the customer's account with
// core now and return its state.
func (c *Channel) ManualSync(ctx context.Context, customer, account string) (AccountState, error) {
	if _, err := c.authorize(ctx, customer, account); err != nil {
		return AccountState{}, err
	}
	return c.Sync(ctx, account)
}
