package ledger

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"banksync"
)

// Publisher delivers ledger entries to the event stream in the order given,
// returning only once every one is durably acknowledged.
type Publisher interface {
	Publish(ctx context.Context, entries []banksync.Entry) error
}

// Relay defaults.
const (
	relayBatchMaxDefault    = 5000
	relayPollDefault        = 500 * time.Millisecond
	relayBackoffMaxDefault  = 5 * time.Second
	relayBackoffInitDefault = 50 * time.Millisecond
)

// RelayConfig tunes a Relay. Zero values take the defaults.
type RelayConfig struct {
	BatchMax int           // entries published per round at most
	Poll     time.Duration // how often to look for entries without a wake-up
	// Wake, when set, signals that new entries were committed (see
	// Ledger.Committed), so the relay need not wait for the poll.
	Wake   <-chan struct{}
	Logger *slog.Logger
	// Published, when set, is told of each round published: how many
	// entries, and how long the oldest of them waited since it was booked.
	Published func(entries int, lag time.Duration)
	// Traces, when set, gives the traceparents of traced requests'
	// entries, which the publisher puts in their records (the Ledger).
	Traces interface {
		TraceParents(entries []banksync.Entry) map[int64]string
		ForgetTraceParents(entries []banksync.Entry)
	}
}

// Relay is the outbox relay: it publishes committed entries in commit order
// and records how far it got, so after a crash it resumes from the stored
// position. An entry published just before a crash may be published again,
// with the same event id and seq; the channel skips what it has.
type Relay struct {
	store Store
	pub   Publisher
	cfg   RelayConfig
}

// NewRelay returns a relay from store to pub.
func NewRelay(store Store, pub Publisher, cfg RelayConfig) *Relay {
	if cfg.BatchMax <= 0 {
		cfg.BatchMax = relayBatchMaxDefault
	}
	if cfg.Poll <= 0 {
		cfg.Poll = relayPollDefault
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Relay{store: store, pub: pub, cfg: cfg}
}

// Run publishes until ctx is done. Failures are retried with capped
// exponential backoff from the last stored position; Run returns only
// ctx's error.
func (r *Relay) Run(ctx context.Context) error {
	backoff := relayBackoffInitDefault
	for {
		n, err := r.Once(ctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			r.cfg.Logger.Warn("outbox relay failed; retrying", "err", err, "backoff", backoff)
			if !sleep(ctx, backoff) {
				return ctx.Err()
			}
			backoff = min(2*backoff, relayBackoffMaxDefault)
			continue
		}
		backoff = relayBackoffInitDefault
		if n == r.cfg.BatchMax {
			continue // more is waiting
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.cfg.Wake:
		case <-time.After(r.cfg.Poll):
		}
	}
}

// Once publishes one round of at most BatchMax entries after the stored
// position and stores the new position; it returns how many it published.
func (r *Relay) Once(ctx context.Context) (int, error) {
	pos, err := r.store.RelayPosition(ctx)
	if err != nil {
		return 0, err
	}
	entries, err := r.store.EntriesAfter(ctx, pos, r.cfg.BatchMax)
	if err != nil || len(entries) == 0 {
		return 0, err
	}
	pctx := ctx
	if r.cfg.Traces != nil {
		pctx = banksync.WithEntryTraces(ctx, r.cfg.Traces.TraceParents(entries))
	}
	if err := r.pub.Publish(pctx, entries); err != nil {
		return 0, fmt.Errorf("publish %d entries after position %d: %w", len(entries), pos, err)
	}
	if r.cfg.Traces != nil {
		r.cfg.Traces.ForgetTraceParents(entries)
	}
	last := entries[len(entries)-1].Position
	if err := r.store.SetRelayPosition(ctx, last); err != nil {
		return 0, err
	}
	if r.cfg.Published != nil {
		r.cfg.Published(len(entries), time.Since(entries[0].BookedAt))
	}
	return len(entries), nil
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
