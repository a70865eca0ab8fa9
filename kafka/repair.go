package kafka

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Timing of the dead-letter repair.
const (
	// repairIntervalDefault is how often a channel replica looks for dead
	// letters to replay. With repairBackoffMax it bounds how long a letter
	// waits after the history database answers again.
	repairIntervalDefault = 2 * time.Second
	// repairBackoffMax caps the wait after a replay that ended early (the
	// history database or core still down).
	repairBackoffMax = 5 * time.Second
	// repairRoundTimeout bounds one look and its replay, Kafka's part
	// included (a broker that stops answering mid-fetch): what the replay
	// did by then is committed, and the next round goes on from there.
	repairRoundTimeout = 2 * time.Minute
)

// RepairConfig configures DeadLetters.RunRepair. Zero values take the
// defaults.
type RepairConfig struct {
	Interval time.Duration // how often to look for letters
	Logger   *slog.Logger
	// Replayed, if set, is told what each replay did (for metrics).
	Replayed func(ReplayResult)
}

// RunRepair replays the dead letters through sync until ctx is done:
// the dead-letter topic is the channel's durable repair queue. The
// consumer moves past a record it could not apply only once the record is
// in that topic, so an entry lost to a history-database outage is applied
// here, without an operator, once the database answers again; a letter
// that cannot be decoded is parked and its account synced from core.
// Every channel replica runs one: replays by several replicas at once are
// harmless (the sync engine skips what it has; the marks they commit each
// describe a state that is true), and any one of them suffices. It leaves
// q open: a replica's admin API and depth gauge use the same one.
func (q *DeadLetters) RunRepair(ctx context.Context, cfg RepairConfig, sync Syncer) error {
	if cfg.Interval <= 0 {
		cfg.Interval = repairIntervalDefault
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	wait := cfg.Interval
	for {
		// Jitter, so replicas started together do not replay in step.
		jittered := wait/2 + rand.N(wait/2+1)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(jittered):
		}
		wait = cfg.Interval
		if !q.repairRound(ctx, cfg, sync) {
			wait = min(2*cfg.Interval, repairBackoffMax)
		}
	}
}

// repairRound replays the dead letters if any wait, and reports whether
// the round went through (nothing to do counts). With none waiting the
// replay reads the topic's positions and stops there: the same reads a
// look at the depth would make.
func (q *DeadLetters) repairRound(parent context.Context, cfg RepairConfig, sync Syncer) bool {
	ctx, cancel := context.WithTimeout(parent, repairRoundTimeout)
	defer cancel()
	res, err := q.Replay(ctx, nil, sync, cfg.Logger)
	if cfg.Replayed != nil {
		cfg.Replayed(res)
	}
	if err != nil {
		if parent.Err() != nil {
			return false // stopping
		}
		cfg.Logger.WarnContext(ctx, "dead-letter repair incomplete; trying again", "applied", res.Applied,
			"parked", res.Parked, "held", res.Held, "err", err)
		return false
	}
	return true
}
