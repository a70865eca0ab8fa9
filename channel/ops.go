package channel

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// What the operations view shows at most.
const (
	opsPendingMax   = 100
	opsStaleMax     = 100
	decisionsMax    = 50
	meterWindowSecs = 5 // the applied rate is over the last whole seconds
)

// Decision is one thing the reconciler decided: a transfer it fenced and
// settled, or a stale account it repaired (or could not).
type Decision struct {
	At         time.Time `json:"at"`
	Action     string    `json:"action"` // fenced, repaired, repair_failed
	TransferID string    `json:"transfer_id,omitempty"`
	AccountID  string    `json:"account_id,omitempty"`
	Outcome    string    `json:"outcome,omitempty"` // a fenced transfer's state: completed or failed
	Detail     string    `json:"detail,omitempty"`
	Count      int       `json:"count"` // the same decision in a row (a repair failing each round), At the latest
}

// Decision actions.
const (
	DecisionFenced       = "fenced"
	DecisionRepaired     = "repaired"
	DecisionRepairFailed = "repair_failed"
)

// StaleAccount is an account whose history may be behind core's.
type StaleAccount struct {
	ID         string    `json:"account_id"`
	StaleSince time.Time `json:"stale_since"`
	SyncedSeq  int64     `json:"synced_through_seq"`
}

// Applied is how fast this process writes history.
type Applied struct {
	Total     int64   `json:"total"`      // entries written since the process started
	PerSecond float64 `json:"per_second"` // over the last few seconds
}

// Overview is the channel's side of the operations view. Applied and
// Decisions are this process's; the rest is read from the shared store.
type Overview struct {
	Applied   Applied        `json:"applied"`
	Pending   []Transfer     `json:"pending_transfers"` // soonest deadline first
	Stale     []StaleAccount `json:"stale_accounts"`    // stale longest first
	Decisions []Decision     `json:"reconciler"`        // newest first
}

// Overview reads what an operator watches: the pending transfers with
// their deadlines, the stale accounts, how fast history is written and the
// reconciler's recent decisions.
func (c *Channel) Overview(ctx context.Context) (Overview, error) {
	now := c.now()
	o := Overview{Decisions: c.decisions.recent()}
	o.Applied.Total, o.Applied.PerSecond = c.applied.read(now)
	var err error
	if o.Pending, err = c.pending(ctx, opsPendingMax); err != nil {
		return o, fmt.Errorf("list pending transfers: %w", err)
	}
	if o.Pending == nil {
		o.Pending = []Transfer{}
	}
	ids, err := c.store.StaleAccounts(ctx, opsStaleMax)
	if err != nil {
		return o, fmt.Errorf("list stale accounts: %w", err)
	}
	o.Stale = make([]StaleAccount, 0, len(ids))
	for _, id := range ids {
		st, ok, err := c.store.Account(ctx, id)
		if err != nil {
			return o, fmt.Errorf("read stale account %s: %w", id, err)
		}
		if ok && st.Stale { // it may have been repaired since the list was read
			o.Stale = append(o.Stale, StaleAccount{ID: id, StaleSince: st.StaleSince, SyncedSeq: st.SyncedSeq})
		}
	}
	return o, nil
}

// pending returns up to limit pending transfers, soonest deadline first,
// whatever their deadline.
func (c *Channel) pending(ctx context.Context, limit int) ([]Transfer, error) {
	return c.store.PendingBefore(ctx, c.now().AddDate(100, 0, 0), limit)
}

// noteApplied counts entries written to the history, for the operations
// view and the Observer.
func (c *Channel) noteApplied(n int64) {
	c.applied.add(c.now(), n)
	c.cfg.Observer.Applied(int(n))
}

// decide records one of the reconciler's decisions and logs it, once, with
// its reason.
func (c *Channel) decide(ctx context.Context, d Decision) {
	d.At = c.now()
	c.decisions.add(d)
	c.cfg.Observer.Decided(d)
	level := slog.LevelInfo
	if d.Action == DecisionRepairFailed {
		level = slog.LevelWarn
	}
	attrs := []slog.Attr{slog.String("action", d.Action), slog.String("account", d.AccountID)}
	if d.TransferID != "" {
		attrs = append(attrs, slog.String("transfer_id", d.TransferID), slog.String("outcome", d.Outcome))
	}
	c.cfg.Logger.LogAttrs(ctx, level, "reconciler decision", append(attrs, slog.String("reason", d.Detail))...)
}

// decisionLog keeps the latest decisions.
type decisionLog struct {
	mu   sync.Mutex
	ring [decisionsMax]Decision
	n    int // decisions ever added
}

// add records d, or counts it on the newest decision if it is the same, so
// one account failing round after round does not push the rest out.
func (l *decisionLog) add(d Decision) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n > 0 {
		last := &l.ring[(l.n-1)%decisionsMax]
		if last.Action == d.Action && last.AccountID == d.AccountID && last.TransferID == d.TransferID && last.Outcome == d.Outcome && last.Detail == d.Detail {
			last.At = d.At
			last.Count++
			return
		}
	}
	d.Count = 1
	l.ring[l.n%decisionsMax] = d
	l.n++
}

// recent returns the kept decisions, newest first.
func (l *decisionLog) recent() []Decision {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Decision, 0, min(l.n, decisionsMax))
	for i := l.n - 1; i >= 0 && i >= l.n-decisionsMax; i-- {
		out = append(out, l.ring[i%decisionsMax])
	}
	return out
}

// meter counts events per second over a short window.
type meter struct {
	mu      sync.Mutex
	total   int64
	seconds [meterWindowSecs + 1]struct{ unix, n int64 }
}

func (m *meter) add(now time.Time, n int64) {
	if n <= 0 {
		return
	}
	sec := now.Unix()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.total += n
	b := &m.seconds[sec%int64(len(m.seconds))]
	if b.unix != sec {
		b.unix, b.n = sec, 0
	}
	b.n += n
}

// read returns the total and the rate over the last meterWindowSecs whole
// seconds (the current second is still filling).
func (m *meter) read(now time.Time) (total int64, perSecond float64) {
	sec := now.Unix()
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for _, b := range m.seconds {
		if b.unix < sec && b.unix >= sec-meterWindowSecs {
			n += b.n
		}
	}
	return m.total, float64(n) / meterWindowSecs
}

// Backlog counts the pending transfers, with the oldest's creation time,
// and the stale accounts: one read of the store, whatever their number.
func (c *Channel) Backlog(ctx context.Context) (Backlog, error) {
	return c.store.Backlog(ctx)
}
