package channel_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"banksync"
	"banksync/channel"
)

// Unsafe.OutOfOrder is the only way past a hole, and only for the group
// commit: without it a delivery past a hole is filled from core first;
// with it the batch is written past the hole (what the chaos checker's own
// test needs to see P5 break), while Apply still fills holes in order.
func TestOutOfOrderOnlyWhenConfigured(t *testing.T) {
	for _, cs := range channelStores {
		t.Run(cs.name, func(t *testing.T) {
			ctx := context.Background()
			safe := newStack(t, cs.open(t), channel.Config{})
			t.Cleanup(safe.ch.Close)
			core := seed(t, safe, 4, "d-1")
			noErrs(t, safe.ch.ApplyBatch(ctx, [][]banksync.Entry{pick(core["d-1"], 3, 4)}), 1)
			checkSyncedThrough(t, safe, "d-1", 4)

			unsafe := newStack(t, cs.open(t), channel.Config{Deadline: 10 * time.Second, CoreTimeout: time.Second,
				ReconcileGrace: time.Second, Unsafe: channel.Unsafe{OutOfOrder: true}})
			t.Cleanup(unsafe.ch.Close)
			core = seed(t, unsafe, 4, "d-1", "d-2")
			noErrs(t, unsafe.ch.ApplyBatch(ctx, [][]banksync.Entry{pick(core["d-1"], 3, 4)}), 1)
			mine, err := unsafe.store.History(ctx, "d-1", 1<<62, 100)
			if err != nil {
				t.Fatal(err)
			}
			if want := pick(core["d-1"], 4, 3); fmt.Sprint(mine) != fmt.Sprint(want) {
				t.Fatalf("history of d-1 with OutOfOrder = %v, want %v: the batch written past the hole", mine, want)
			}
			if _, err := unsafe.ch.Apply(ctx, "d-2", pick(core["d-2"], 3, 4)); err != nil {
				t.Fatal(err)
			}
			checkSyncedThrough(t, unsafe, "d-2", 4)
		})
	}
}

// malformedStore refuses every write as a malformed run, as a store does
// when the sync engine hands it entries that are not a run.
type malformedStore struct {
	channel.Store
	applies, applyRuns atomic.Int64
}

func (m *malformedStore) Apply(ctx context.Context, account string, es []banksync.Entry, at time.Time) (channel.AccountState, error) {
	m.applies.Add(1)
	return channel.AccountState{}, fmt.Errorf("apply to %s: %w", account, channel.ErrMalformedRun)
}

func (m *malformedStore) ApplyRuns(ctx context.Context, runs []channel.Run, at time.Time) ([]channel.RunResult, error) {
	m.applyRuns.Add(1)
	return nil, fmt.Errorf("apply runs: %w", channel.ErrMalformedRun)
}

// A malformed run is the sync engine's own bug: it stops loudly (a panic,
// which no caller retries), after one try, without falling back to
// applying alone and without marking the account stale.
func TestMalformedRunStopsLoudly(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		call                  func(ctx context.Context, ch *channel.Channel, es []banksync.Entry)
		wantApplies, wantRuns int64
	}{
		{"Apply", func(ctx context.Context, ch *channel.Channel, es []banksync.Entry) {
			ch.Apply(ctx, "alice-1", es)
		}, 1, 0},
		{"Sync", func(ctx context.Context, ch *channel.Channel, _ []banksync.Entry) {
			ch.Sync(ctx, "alice-1")
		}, 1, 0},
		{"ApplyBatch", func(ctx context.Context, ch *channel.Channel, es []banksync.Entry) {
			ch.ApplyBatch(ctx, [][]banksync.Entry{es})
		}, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			ms := &malformedStore{Store: channelStores[0].open(t)}
			s := newStack(t, ms, channel.Config{})
			t.Cleanup(s.ch.Close)
			es, err := s.core.Entries(ctx, "alice-1", 0, 10)
			if err != nil || len(es) == 0 {
				t.Fatalf("core's entries of alice-1: %v, %v", es, err)
			}
			var stopped any
			func() {
				defer func() { stopped = recover() }()
				tc.call(ctx, s.ch, es)
			}()
			if stopped == nil {
				t.Fatalf("%s of a run the store refused as malformed returned; want a panic", tc.name)
			}
			if got, got2 := ms.applies.Load(), ms.applyRuns.Load(); got != tc.wantApplies || got2 != tc.wantRuns {
				t.Errorf("store called %d times Apply, %d ApplyRuns; want %d, %d (tried once, no fallback)", got, got2, tc.wantApplies, tc.wantRuns)
			}
			if st, _, err := s.store.Account(ctx, "alice-1"); err != nil || st.Stale {
				t.Errorf("alice-1 after the malformed run: %+v, %v; want not marked stale", st, err)
			}
		})
	}
}

// messages is a slog handler that keeps each record's message and
// attributes, for tests that check what was logged.
type messages struct {
	mu   sync.Mutex
	logs []string // "msg key=value …"
}

func (m *messages) Enabled(context.Context, slog.Level) bool { return true }

func (m *messages) Handle(_ context.Context, r slog.Record) error {
	line := r.Message
	r.Attrs(func(a slog.Attr) bool {
		line += " " + a.String()
		return true
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	m.logs = append(m.logs, line)
	return nil
}

func (m *messages) WithAttrs([]slog.Attr) slog.Handler { return m }
func (m *messages) WithGroup(string) slog.Handler      { return m }

// with returns the lines logged with message msg.
func (m *messages) with(msg string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, l := range m.logs {
		if strings.HasPrefix(l, msg+" ") {
			out = append(out, l)
		}
	}
	return out
}

// slowCore is core whose every page of entries takes a second of the
// channel's clock.
type slowCore struct {
	channel.Core
	clock *clock
}

func (c slowCore) Entries(ctx context.Context, account string, afterSeq int64, limit int) ([]banksync.Entry, error) {
	c.clock.Advance(time.Second)
	return c.Core.Entries(ctx, account, afterSeq, limit)
}

// A first sync of a big account, page after page from core, says how far
// it got every few seconds; a sync of a page or two says nothing.
func TestLongSyncSaysHowFarItGot(t *testing.T) {
	ctx := context.Background()
	log := &messages{}
	s := newStack(t, channelStores[0].open(t), channel.Config{})
	t.Cleanup(s.ch.Close)
	ch := channel.New(s.store, slowCore{s.coreAPI, s.clock}, channel.Config{Deadline: 10 * time.Second, CoreTimeout: time.Second,
		ReconcileGrace: time.Second, Now: s.clock.Now, Logger: slog.New(log)})
	t.Cleanup(ch.Close)
	seed(t, s, 4500, "big")
	seed(t, s, 10, "small")
	if _, err := ch.Sync(ctx, "small"); err != nil {
		t.Fatal(err)
	}
	if got := log.with("syncing account from core"); len(got) != 0 {
		t.Fatalf("a sync of one page logged %q, want nothing", got)
	}
	st, err := ch.Sync(ctx, "big")
	if err != nil {
		t.Fatal(err)
	}
	if st.SyncedSeq != 4500 {
		t.Fatalf("synced through %d, want 4500", st.SyncedSeq)
	}
	// Five pages of a second each and the empty one at the head: a line
	// after the third second.
	got := log.with("syncing account from core")
	if want := []string{"syncing account from core account=big synced_seq=3000 pages=3 took=3s"}; !slices.Equal(got, want) {
		t.Errorf("progress lines %q, want %q", got, want)
	}
}
