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
	relayStoreEveryDefault  = 100 * time.Millisecond
)

// RelayConfig tunes a Relay. Zero values take the defaults.
type RelayConfig struct {
	BatchMax int           // entries published per round at most
	Poll     time.Duration // how often to look for entries without a wake-up
	// StoreEvery is how often, while entries keep coming, the relay
	// stores how far it got; once they stop, it stores at once.
	StoreEvery time.Duration
	// Wake, when set, signals that new entries were committed (see
	// Ledger.Committed), so the relay need not wait for the poll.
	Wake   <-chan struct{}
	Logger *slog.Logger
	// Published, when set, is told of each round published: how many
	// entries, and how long the oldest of them waited since it was booked.
	Published func(entries int, lag time.Duration)
}

// Relay is the outbox relay: it publishes committed entries in commit order
// and records how far it got, so after a crash it resumes from the stored
// position. An entry published just before a crash may be published again,
// with the same event id and seq; the channel skips what it has.
//
// Storing the position is a write transaction with a disk sync on core's
// one writer, so under a steady stream the relay stores it once every
// StoreEvery rather than after every round, which at 10,000 deposits/s
// would double the writer's transactions. A crash then publishes again at
// most StoreEvery's worth of entries. A position moved by someone else (an
// operator replaying, the chaos run's duplicate delivery) is seen at the
// next round, which starts from it.
type Relay struct {
	store Store
	pub   Publisher
	cfg   RelayConfig

	// One round at a time (Run, or Once after Run has returned).
	published int64     // the last position published
	stored    int64     // the position last stored, or read at the start
	storedAt  time.Time // when stored was
	started   bool      // published and stored hold the store's position
}

// NewRelay returns a relay from store to pub.
func NewRelay(store Store, pub Publisher, cfg RelayConfig) *Relay {
	if cfg.BatchMax <= 0 {
		cfg.BatchMax = relayBatchMaxDefault
	}
	if cfg.Poll <= 0 {
		cfg.Poll = relayPollDefault
	}
	if cfg.StoreEvery <= 0 {
		cfg.StoreEvery = relayStoreEveryDefault
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
		wait := r.cfg.Poll
		if r.published != r.stored {
			wait = min(wait, r.cfg.StoreEvery) // then store it, if nothing came
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.cfg.Wake:
		case <-time.After(wait):
		}
	}
}

// Once publishes one round of at most BatchMax entries after the last
// position published and returns how many it published. It stores the
// position when the round finds nothing new, or StoreEvery after it last
// did.
func (r *Relay) Once(ctx context.Context) (int, error) {
	pos, err := r.store.RelayPosition(ctx)
	if err != nil {
		return 0, err
	}
	if !r.started || pos != r.stored {
		r.published, r.stored, r.storedAt, r.started = pos, pos, time.Now(), true
	}
	entries, err := r.store.EntriesAfter(ctx, r.published, r.cfg.BatchMax)
	if err != nil {
		return 0, err
	}
	if len(entries) == 0 {
		return 0, r.storePosition(ctx)
	}
	if err := r.pub.Publish(ctx, entries); err != nil {
		return 0, fmt.Errorf("publish %d entries after position %d: %w", len(entries), r.published, err)
	}
	r.published = entries[len(entries)-1].Position
	if r.cfg.Published != nil {
		r.cfg.Published(len(entries), time.Since(entries[0].BookedAt))
	}
	if time.Since(r.storedAt) >= r.cfg.StoreEvery {
		if err := r.storePosition(ctx); err != nil {
			return 0, err
		}
	}
	return len(entries), nil
}

// storePosition stores the last position published, if it moved.
func (r *Relay) storePosition(ctx context.Context) error {
	if r.published == r.stored {
		return nil
	}
	if err := r.store.SetRelayPosition(ctx, r.published); err != nil {
		return err
	}
	r.stored, r.storedAt = r.published, time.Now()
	return nil
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
