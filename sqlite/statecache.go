package sqlite

import (
	"context"
	"database/sql"
	"sync/atomic"

	"banksync/channel"
)

// statesCachedMax bounds the sync states the group commit keeps between
// commits: about 100 bytes each, so at most some 25 MiB. Past it the cache
// starts again empty.
const statesCachedMax = 1 << 18

// stateCache keeps the sync states the group commit last read or wrote, so
// the next commit reads from the database only accounts it has not seen.
// It is trusted only while nothing else has written channel_accounts:
//
//   - another connection, of this process or another one sharing the file,
//     changes the database's data_version, which the commit reads inside its
//     write transaction, after BEGIN IMMEDIATE took the write lock;
//   - this store's other writes (Apply, AddAccount, MarkStale, ClearStale)
//     go through the same write connection, which data_version does not
//     count, so they bump gen before and after they write, and a commit uses
//     or fills the cache only if gen did not move since the cache was filled
//     and during the commit.
//
// The group commit uses it one ApplyRuns at a time (ChannelStore.runsMu),
// so the next one sees what the last one stored. A commit that fails
// empties the cache. The database stays the authority: a wrong cached
// state could only make a commit plan from an old synced seq, and the
// history's primary key refuses what that would write.
type stateCache struct {
	gen atomic.Int64

	states  map[string]channel.AccountState
	atGen   int64 // gen when states were last known good
	version int64 // data_version when states were last known good
}

// foreignWrite brackets a write to channel_accounts outside the group
// commit: call it before the write and once more after it.
func (c *stateCache) foreignWrite() { c.gen.Add(1) }

// begin checks, inside the write transaction tx, that nothing wrote since
// the cached states were stored, empties the cache if something did, and
// returns the gen to hand to commit.
func (c *stateCache) begin(ctx context.Context, tx *sql.Tx) (int64, error) {
	gen := c.gen.Load()
	var version int64
	if err := tx.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&version); err != nil {
		return 0, err
	}
	if c.states == nil || c.atGen != gen || c.version != version || len(c.states) > statesCachedMax {
		c.states, c.atGen, c.version = map[string]channel.AccountState{}, gen, version
	}
	return gen, nil
}

// lookup returns the cached states of ids and the ids it does not hold.
func (c *stateCache) lookup(ids []string) (known map[string]channel.AccountState, missing []string) {
	known = make(map[string]channel.AccountState, len(ids))
	for _, id := range ids {
		if st, ok := c.states[id]; ok {
			known[id] = st
		} else {
			missing = append(missing, id)
		}
	}
	return known, missing
}

// commit stores the states a committed transaction begun at gen left, unless
// another write of this store came in between. An account the table does
// not hold is stored as PlanRuns takes it, with only its ID.
func (c *stateCache) commit(gen int64, results []channel.RunResult) {
	if c.states == nil || c.gen.Load() != gen || c.atGen != gen {
		c.states = nil
		return
	}
	for _, r := range results {
		c.states[r.State.ID] = r.State
	}
}

// forget empties the cache after a failed commit.
func (c *stateCache) forget() {
	c.states = nil
}
