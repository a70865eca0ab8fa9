package channel

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"banksync"
)

// History page sizes.
const (
	HistoryPageDefault = 20
	HistoryPageMax     = 100
	// HistoryScanMaxDefault is how many entries a filtered page examines
	// at most: a page's cost stays bounded however rare the matches are,
	// and no index that every insert would pay for is needed.
	HistoryScanMaxDefault = 2000
	// HistoryTextMax is the longest search text, in characters.
	HistoryTextMax = 50
)

// Directions a history can be filtered by.
const (
	DirectionAll = ""
	DirectionIn  = "in"  // money in: deposits and transfers received
	DirectionOut = "out" // money out: transfers sent
)

// HistoryFilter narrows a scroll of the history: by direction, and by text
// found in the counterparty or the memo (in lower case, Unicode NFC). The zero
// filter is the whole history.
type HistoryFilter struct {
	Direction string
	Text      string
}

// check refuses a filter the API must not take, and returns it normalised.
func (f HistoryFilter) check() (HistoryFilter, error) {
	switch f.Direction {
	case DirectionAll, DirectionIn, DirectionOut:
	default:
		return f, banksync.Errorf(banksync.EINVALID, "kind must be all, in or out")
	}
	if !utf8.ValidString(f.Text) || utf8.RuneCountInString(f.Text) > HistoryTextMax ||
		strings.ContainsFunc(f.Text, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }) {
		return f, banksync.Errorf(banksync.EINVALID, "q must be text of at most %d characters", HistoryTextMax)
	}
	f.Text = fold(strings.TrimSpace(f.Text))
	return f, nil
}

// fold is s as search compares it: NFC, lower case.
func fold(s string) string { return strings.ToLower(norm.NFC.String(s)) }

func (f HistoryFilter) all() bool { return f.Direction == DirectionAll && f.Text == "" }

func (f HistoryFilter) match(e banksync.Entry) bool {
	switch {
	case f.Direction == DirectionIn && e.Amount < 0, f.Direction == DirectionOut && e.Amount > 0:
		return false
	case f.Text == "":
		return true
	}
	return strings.Contains(fold(e.Counterparty), f.Text) || strings.Contains(fold(e.Memo), f.Text)
}

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
	return c.FilteredHistory(ctx, cs, customer, account, cursor, limit, HistoryFilter{})
}

// FilteredHistory is History with only the entries f matches. A filtered
// page examines at most HistoryScanMax entries below its cursor, so it may
// hold fewer than limit entries, even none, and still carry a next cursor:
// the scroll goes on below what it examined. Each page covers its own range
// of seqs, so a scroll shows every matching entry once.
func (c *Channel) FilteredHistory(ctx context.Context, cs Cursors, customer, account, cursor string, limit int, f HistoryFilter) (Page, error) {
	if limit < 1 || limit > HistoryPageMax {
		return Page{}, banksync.Errorf(banksync.EINVALID, "limit must be between 1 and %d", HistoryPageMax)
	}
	f, err := f.check()
	if err != nil {
		return Page{}, err
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
	page := Page{Account: st, Pending: pending}
	if page.Entries, page.NextCursor, err = c.historyPage(ctx, cs, account, before, limit, f); err != nil {
		return Page{}, err
	}
	if page.Entries == nil {
		page.Entries = []banksync.Entry{}
	}
	if page.Pending == nil {
		page.Pending = []Transfer{}
	}
	return page, nil
}

// historyPage reads the entries of a page below seq before, and the cursor
// of the next page, if any.
func (c *Channel) historyPage(ctx context.Context, cs Cursors, account string, before int64, limit int, f HistoryFilter) ([]banksync.Entry, string, error) {
	if f.all() {
		entries, err := c.store.History(ctx, account, before, limit+1)
		if err != nil {
			return nil, "", fmt.Errorf("read history: %w", err)
		}
		if len(entries) > limit {
			return entries[:limit], cs.encode(account, entries[limit-1].Seq), nil
		}
		return entries, "", nil
	}
	// Read in growing chunks, so a page that fills early reads little.
	var matches []banksync.Entry
	examined, chunk := 0, 4*(limit+1)
	for {
		chunk = min(chunk, c.cfg.HistoryScanMax-examined)
		es, err := c.store.History(ctx, account, before, chunk)
		if err != nil {
			return nil, "", fmt.Errorf("read history: %w", err)
		}
		for _, e := range es {
			if !f.match(e) {
				continue
			}
			if len(matches) == limit {
				// A match beyond this page: the next starts below the last shown.
				return matches, cs.encode(account, matches[limit-1].Seq), nil
			}
			matches = append(matches, e)
		}
		examined += len(es)
		switch {
		case len(es) < chunk:
			return matches, "", nil // the beginning of the history
		case examined == c.cfg.HistoryScanMax:
			// Older entries may follow what this page examined.
			return matches, cs.encode(account, es[len(es)-1].Seq), nil
		}
		before = es[len(es)-1].Seq
		chunk *= 4
	}
}

// ManualSync is the app's 불러오기 button: sync the customer's account with
// core now and return its state.
func (c *Channel) ManualSync(ctx context.Context, customer, account string) (AccountState, error) {
	if _, err := c.authorize(ctx, customer, account); err != nil {
		return AccountState{}, err
	}
	return c.Sync(ctx, account)
}
