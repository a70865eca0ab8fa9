package channel

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"banksync"
	"banksync/internal/recent"
)

// Live-stream bounds.
const (
	// LiveStreamsPerCustomerMax is how many live streams one customer may
	// hold open on one replica.
	LiveStreamsPerCustomerMax = 5
	// LiveStreamsMax is how many live streams one replica holds open.
	LiveStreamsMax = 1000
	// liveCheckInterval re-reads the watched accounts even without a signal
	// from the store, so that a lost notification delays a stream, never
	// stalls it.
	liveCheckInterval = 5 * time.Second
	// liveReadsInterval spaces the watcher's reads of synced seqs: in a burst
	// of commits it reads at most this often.
	liveReadsInterval = 50 * time.Millisecond
	// liveBatchMax is how many entries one read of a stream returns.
	liveBatchMax = 100
)

// ErrStreamsStopped ends a stream's Next when the channel stops its live
// streams for a shutdown; the client reconnects to another replica.
var ErrStreamsStopped = errors.New("live streams stopped: the channel is shutting down")

// statementEnd is past every booking time: a stream reads its entries
// through Statement with no time bounds.
var statementEnd = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// Stream is one customer's live view of an account's history: Next
// returns the entries after the last it returned, in seq order, each once
// (P5 holds on the stream too), waiting for them to be applied.
type Stream struct {
	live     *live
	customer string
	account  string
	after    atomic.Int64 // the last seq returned
	wake     chan struct{}
	once     sync.Once
}

// live fans the store's change signals out to the open streams: one
// goroutine waits for the store's Changed, reads the synced seqs of every
// watched account in one query, and wakes the streams whose account moved.
type live struct {
	store   Store
	log     *slog.Logger
	stop    chan struct{} // closed by StopStreams
	stopped bool
	mu      sync.Mutex
	byAcct  map[string]map[*Stream]struct{}
	byCust  map[string]int
	n       int
	active  bool // the watcher goroutine runs
}

// OpenStream opens a live stream of the customer's account that starts
// after seq after; a negative after starts after what the history holds
// now. Authorisation is a read's: another customer's account is not found.
// A customer holding LiveStreamsPerCustomerMax streams on this replica is
// rate limited, and a replica holding LiveStreamsMax is unavailable. The
// caller must Close the stream.
func (c *Channel) OpenStream(ctx context.Context, customer, account string, after int64) (*Stream, error) {
	st, err := c.authorize(ctx, customer, account)
	if err != nil {
		return nil, err
	}
	switch {
	case after < 0:
		after = st.SyncedSeq
	case after > st.SyncedSeq:
		// The history only grows: a seq past it was never sent.
		return nil, banksync.Errorf(banksync.EINVALID, "the history holds entries through seq %d; a stream cannot start after seq %d", st.SyncedSeq, after)
	}
	s := &Stream{live: &c.live, customer: customer, account: account, wake: make(chan struct{}, 1)}
	s.after.Store(after)
	if err := c.live.add(s); err != nil {
		return nil, err
	}
	return s, nil
}

// Next waits until entries after the last it returned are in the history,
// and returns up to liveBatchMax of them, oldest first. It returns ctx's
// error when ctx ends first.
func (s *Stream) Next(ctx context.Context) ([]banksync.Entry, error) {
	for {
		after := s.after.Load()
		es, err := s.live.store.Statement(ctx, s.account, after, math.MaxInt64, time.Time{}, statementEnd, liveBatchMax)
		if err != nil {
			return nil, err
		}
		if len(es) > 0 {
			s.after.Store(es[len(es)-1].Seq)
			return es, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.live.stop:
			return nil, ErrStreamsStopped
		case <-s.wake:
		}
	}
}

// StopStreams ends every open live stream and refuses new ones, so a
// stopping replica's HTTP server is not held by them; their clients
// reconnect to another replica and resume where they were.
func (c *Channel) StopStreams() {
	c.live.mu.Lock()
	defer c.live.mu.Unlock()
	if !c.live.stopped {
		c.live.stopped = true
		close(c.live.stop)
	}
}

// Close ends the stream; it is safe to call more than once.
func (s *Stream) Close() {
	s.once.Do(func() { s.live.remove(s) })
}

// newLive returns the live streams' hub over store, with none open.
func newLive(store Store, log *slog.Logger) live {
	return live{store: store, log: log, stop: make(chan struct{}),
		byAcct: map[string]map[*Stream]struct{}{}, byCust: map[string]int{}}
}

func (l *live) add(s *Stream) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.stopped:
		return banksync.Errorf(banksync.EUNAVAILABLE, "this replica is shutting down; try again")
	case l.byCust[s.customer] >= LiveStreamsPerCustomerMax:
		return banksync.Errorf(banksync.ERATELIMITED, "at most %d live streams at once", LiveStreamsPerCustomerMax)
	case l.n >= LiveStreamsMax:
		return banksync.Errorf(banksync.EUNAVAILABLE, "this replica holds as many live streams as it may; try again")
	}
	if l.byAcct[s.account] == nil {
		l.byAcct[s.account] = map[*Stream]struct{}{}
	}
	l.byAcct[s.account][s] = struct{}{}
	l.byCust[s.customer]++
	l.n++
	if !l.active {
		l.active = true
		go l.watch()
	}
	return nil
}

func (l *live) remove(s *Stream) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.byAcct[s.account], s)
	if len(l.byAcct[s.account]) == 0 {
		delete(l.byAcct, s.account)
	}
	if l.byCust[s.customer]--; l.byCust[s.customer] == 0 {
		delete(l.byCust, s.customer)
	}
	l.n--
}

// watch runs while streams are open: at each change signal, or every
// liveCheckInterval, it wakes the streams whose account's history moved past
// what they returned. A failed read is retried at the next signal or
// check; the streams meanwhile wait, and lose nothing.
func (l *live) watch() {
	check := time.NewTicker(liveCheckInterval)
	defer check.Stop()
	for {
		select {
		case <-l.store.Changed():
		case <-check.C:
		}
		l.mu.Lock()
		if l.n == 0 {
			l.active = false
			l.mu.Unlock()
			return
		}
		accounts := make([]string, 0, len(l.byAcct))
		for a := range l.byAcct {
			accounts = append(accounts, a)
		}
		l.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), liveCheckInterval)
		seqs, err := l.store.SyncedSeqs(ctx, accounts)
		cancel()
		if err != nil {
			// The streams wait and lose nothing; the next signal or
			// check reads again.
			l.log.Warn("live streams: reading synced seqs failed", "accounts", len(accounts), "err", err)
		} else {
			l.wakeBehind(seqs)
		}
		time.Sleep(liveReadsInterval)
	}
}

// wakeBehind wakes every stream whose account's synced seq is past what it
// returned.
func (l *live) wakeBehind(seqs map[string]int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for account, seq := range seqs {
		for s := range l.byAcct[account] {
			if s.after.Load() < seq {
				select {
				case s.wake <- struct{}{}:
				default:
				}
			}
		}
	}
}

// StreamTicket returns a ticket for the customer's live stream of account,
// and when it expires; authorised as a read.
func (c *Channel) StreamTicket(ctx context.Context, cs Cursors, customer, account string) (string, time.Time, error) {
	if _, err := c.authorize(ctx, customer, account); err != nil {
		return "", time.Time{}, err
	}
	exp := c.cfg.Now().Add(StreamTicketTTL).Truncate(time.Second)
	return cs.StreamTicket(customer, account, exp), exp, nil
}

// StreamTicketTTL is how long a stream ticket opens a stream for. A stream
// opened with it runs on (at most its lifetime); a reconnect after the
// ticket expired needs a new one.
const StreamTicketTTL = 5 * time.Minute

// StreamTicket returns a ticket that lets customer open a live stream of
// account until exp: what an EventSource, which cannot send a header,
// carries in its URL instead of the customer's bearer token. It is signed
// with the cursor key, so any replica takes it, and it opens nothing else.
func (cs Cursors) StreamTicket(customer, account string, exp time.Time) string {
	payload := binary.BigEndian.AppendUint64(nil, uint64(exp.Unix()))
	payload = append(payload, customer...)
	return base64.RawURLEncoding.EncodeToString(append(payload, cs.ticketMAC(account, payload)...))
}

// CheckStreamTicket returns the customer a ticket was made for, if it is
// one of StreamTicket's for account and has not expired at now.
func (cs Cursors) CheckStreamTicket(ticket, account string, now time.Time) (string, error) {
	bad := banksync.Errorf(banksync.EUNAUTHORIZED, "the stream ticket is not valid for this account, or has expired")
	raw, err := base64.RawURLEncoding.Strict().DecodeString(ticket)
	if err != nil || len(raw) <= 8+cursorMACLength {
		return "", bad
	}
	payload, mac := raw[:len(raw)-cursorMACLength], raw[len(raw)-cursorMACLength:]
	if !hmac.Equal(mac, cs.ticketMAC(account, payload)) {
		return "", bad
	}
	if !now.Before(time.Unix(int64(binary.BigEndian.Uint64(payload[:8])), 0)) {
		return "", bad
	}
	customer := string(payload[8:])
	if !banksync.ValidID(customer) {
		return "", bad
	}
	return customer, nil
}

func (cs Cursors) ticketMAC(account string, payload []byte) []byte {
	m := hmac.New(sha256.New, cs.key)
	m.Write([]byte("stream ticket\x00"))
	m.Write([]byte(account))
	m.Write([]byte{0})
	m.Write(payload)
	return m.Sum(nil)[:cursorMACLength]
}

// tracesMax bounds how many applied entries' traces the channel keeps for
// their live push; the oldest are forgotten first.
const tracesMax = 65_536

// entryTraces remembers the trace each applied entry came with, by account
// and seq, so its live push joins that trace. The zero value is ready to
// use.
type entryTraces struct {
	mu sync.Mutex
	by *recent.Map[entryKey, trace.SpanContext]
}

type entryKey struct {
	account string
	seq     int64
}

// NoteTrace remembers that the entry account/seq was applied within the
// trace of sc (the consumer's apply span), for its live push.
func (c *Channel) NoteTrace(account string, seq int64, sc trace.SpanContext) {
	if !sc.IsValid() {
		return
	}
	t := &c.traces
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.by == nil {
		t.by = recent.New[entryKey, trace.SpanContext](tracesMax)
	}
	t.by.Put(entryKey{account, seq}, sc)
}

// TraceOf is the trace the entry account/seq was applied within, if the
// channel remembers one.
func (c *Channel) TraceOf(account string, seq int64) (trace.SpanContext, bool) {
	c.traces.mu.Lock()
	defer c.traces.mu.Unlock()
	if c.traces.by == nil {
		return trace.SpanContext{}, false
	}
	return c.traces.by.Get(entryKey{account, seq})
}
