package kafka_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"banksync"
	"banksync/kafka"
)

// One DeadLetters used for every call, as a channel replica uses it: each
// list, depth and replay sees the topic and ReplayGroup's marks as they
// are at that call, never as an earlier call on the same value left them.
// A kept consumer would list nothing after a replay (its position at the
// end); cached marks would list replayed letters as waiting or count them
// in the depth; a replay starting from a stale place would apply a letter
// twice or miss the new ones.
func TestDeadLettersCallsSeeTheTopicAsItIsNow(t *testing.T) {
	eachDLQ(t, 2, func(t *testing.T, q dlqTopic) {
		// Bounded: a read from a stale position waits for letters that
		// never come.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		q.produce(t, 0, "acc-1", mustEvent(t, "acc-1", 1))
		q.produce(t, 0, "acc-1", mustEvent(t, "acc-1", 2))
		q.produce(t, 1, "acc-2", mustEvent(t, "acc-2", 1))
		var applied []string
		sync := applyOnly(func(_ context.Context, e banksync.Entry) error {
			applied = append(applied, fmt.Sprintf("%s/%d", e.AccountID, e.Seq))
			return nil
		})
		w, r := kafka.LetterWaiting, kafka.LetterReplayed
		wantLetters := func(when string, want map[string]int, depth kafka.Depth) {
			t.Helper()
			letters, err := q.dls.List(ctx)
			if got := countStates(letters); err != nil || !maps.Equal(got, want) {
				t.Fatalf("%s: List = %v, %v; want %v", when, got, err, want)
			}
			if d, err := q.dls.Depth(ctx); err != nil || d != depth {
				t.Fatalf("%s: Depth = %+v, %v; want %+v", when, d, err, depth)
			}
		}
		wantLetters("before any replay", map[string]int{w: 3}, kafka.Depth{Waiting: 3})
		if res, err := q.dls.Replay(ctx, nil, sync, nil); err != nil || res != (kafka.ReplayResult{Applied: 3}) {
			t.Fatalf("first replay = %+v, %v; want 3 applied", res, err)
		}
		wantLetters("after the replay", map[string]int{r: 3}, kafka.Depth{})

		q.produce(t, 0, "acc-1", mustEvent(t, "acc-1", 3))
		q.produce(t, 1, "acc-2", mustEvent(t, "acc-2", 2))
		wantLetters("after two more letters", map[string]int{r: 3, w: 2}, kafka.Depth{Waiting: 2})
		applied = nil
		if res, err := q.dls.Replay(ctx, nil, sync, nil); err != nil || res != (kafka.ReplayResult{Applied: 2}) {
			t.Fatalf("second replay = %+v, %v; want the 2 new letters applied", res, err)
		}
		slices.Sort(applied)
		if want := []string{"acc-1/3", "acc-2/2"}; !slices.Equal(applied, want) {
			t.Fatalf("the second replay applied %v, want %v", applied, want)
		}
		wantLetters("after the second replay", map[string]int{r: 5}, kafka.Depth{})
	})
}

// A channel replica's repair, admin API and depth gauge share one
// DeadLetters: lists, depths and replays on it at once all succeed (under
// -race, without a data race), every letter is applied, and once they are
// done the marks say so.
func TestDeadLettersConcurrentUse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	eachDLQ(t, 2, func(t *testing.T, q dlqTopic) {
		const letters = 20
		for i := int64(1); i <= letters/2; i++ {
			q.produce(t, 0, "acc-1", mustEvent(t, "acc-1", i))
			q.produce(t, 1, "acc-2", mustEvent(t, "acc-2", i))
		}
		var mu sync.Mutex
		applied := map[string]bool{}
		syncer := applyOnly(func(_ context.Context, e banksync.Entry) error {
			mu.Lock()
			defer mu.Unlock()
			applied[fmt.Sprintf("%s/%d", e.AccountID, e.Seq)] = true
			return nil
		})
		var wg sync.WaitGroup
		errs := make(chan error, 6)
		for range 2 {
			wg.Go(func() {
				_, err := q.dls.Replay(ctx, nil, syncer, nil)
				errs <- err
			})
			wg.Go(func() {
				_, err := q.dls.List(ctx)
				errs <- err
			})
			wg.Go(func() {
				_, err := q.dls.Depth(ctx)
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("a call at the same time as others: %v", err)
			}
		}
		if len(applied) != letters {
			t.Fatalf("the replays applied %d of the %d letters", len(applied), letters)
		}
		if d, err := q.dls.Depth(ctx); err != nil || d != (kafka.Depth{}) {
			t.Fatalf("depth after the replays = %+v, %v; want 0", d, err)
		}
	})
}

// A closed DeadLetters refuses calls at once rather than hanging on a
// client that is gone.
func TestDeadLettersClosed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := mustStartCluster(t, kafka.ClusterConfig{Partitions: 1})
	dls, err := kafka.NewDeadLetters(kafka.Brokers(c.Addrs()...), "")
	if err != nil {
		t.Fatal(err)
	}
	if dls.Topic() != banksync.TopicLedgerEntriesDLQ {
		t.Fatalf("Topic() = %q, want the default %q", dls.Topic(), banksync.TopicLedgerEntriesDLQ)
	}
	dls.Close()
	if _, err := dls.List(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("List after Close = %v (ctx %v); want an error at once", err, ctx.Err())
	}
	if _, err := dls.Depth(ctx); err == nil || ctx.Err() != nil {
		t.Fatalf("Depth after Close = %v (ctx %v); want an error at once", err, ctx.Err())
	}
}
