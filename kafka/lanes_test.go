package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"pgregory.net/rapid"
)

// notYet is how long a test waits to see that something blocked does not
// happen. Too short only lets a bug through; it never fails a correct run.
const notYet = 20 * time.Millisecond

func mustNewLanes(tb testing.TB, n, queueMax int) *laneSet {
	tb.Helper()
	l := newLanes(n, queueMax)
	tb.Cleanup(l.Close)
	return l
}

// Many keys dispatched from many goroutines: each key's jobs run in its
// dispatch order, one at a time. The per-key logs are written without a lock,
// so under -race two jobs of one key running at once would also fail.
func TestLanesKeyOrder(t *testing.T) {
	l := mustNewLanes(t, 16, 4)
	const dispatchers, keysPerDispatcher, jobsPerKey = 8, 25, 40
	logs := make([][]int, dispatchers*keysPerDispatcher)
	var wg sync.WaitGroup
	for d := range dispatchers {
		wg.Go(func() {
			for j := range jobsPerKey {
				for k := d * keysPerDispatcher; k < (d+1)*keysPerDispatcher; k++ {
					err := l.Dispatch(t.Context(), fmt.Sprintf("account-%d", k), func(context.Context) {
						logs[k] = append(logs[k], j)
						if j%8 == 0 {
							runtime.Gosched()
						}
					})
					if err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	l.Close()
	for k, log := range logs {
		if len(log) != jobsPerKey || !slices.IsSorted(log) {
			t.Fatalf("key %d ran %v, want 0..%d in order", k, log, jobsPerKey-1)
		}
	}
}

// A lane runs one job at a time, and a key always lands on the same lane.
func TestLanesOneJobPerLane(t *testing.T) {
	l := mustNewLanes(t, 4, 8)
	running := make([]atomic.Int32, l.Len())
	var overlaps, ran atomic.Int32
	for i := range 2000 {
		key := fmt.Sprint(i % 37)
		lane := l.Lane(key)
		if lane != l.Lane(key) {
			t.Fatalf("lane(%q) is not stable", key)
		}
		err := l.Dispatch(t.Context(), key, func(context.Context) {
			if running[lane].Add(1) != 1 {
				overlaps.Add(1)
			}
			runtime.Gosched()
			running[lane].Add(-1)
			ran.Add(1)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	if got := overlaps.Load(); got != 0 {
		t.Errorf("%d jobs started while their lane was busy", got)
	}
	if got := ran.Load(); got != 2000 {
		t.Errorf("%d jobs ran, want 2000", got)
	}
}

// blockLane occupies the lane of key with a job that runs until release is
// called, and returns once that job is running. A failing test releases it
// too, so its Close does not hang.
func blockLane(t *testing.T, l *laneSet, key string) (release func()) {
	t.Helper()
	started, unblock := make(chan struct{}), make(chan struct{})
	if err := l.Dispatch(t.Context(), key, func(context.Context) { close(started); <-unblock }); err != nil {
		t.Fatal(err)
	}
	<-started
	release = sync.OnceFunc(func() { close(unblock) })
	t.Cleanup(release)
	return release
}

func TestLanesBackpressure(t *testing.T) {
	l := mustNewLanes(t, 1, 2)
	release := blockLane(t, l, "a")
	for range 2 {
		if err := l.Dispatch(t.Context(), "a", func(context.Context) {}); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithTimeout(t.Context(), notYet)
	defer cancel()
	if err := l.Dispatch(ctx, "a", func(context.Context) {}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dispatch on a full lane: got %v, want context.DeadlineExceeded", err)
	}

	dispatched := make(chan error, 1)
	go func() { dispatched <- l.Dispatch(t.Context(), "a", func(context.Context) {}) }()
	select {
	case err := <-dispatched:
		t.Fatalf("Dispatch on a full lane returned %v without waiting", err)
	case <-time.After(notYet):
	}
	release()
	if err := <-dispatched; err != nil {
		t.Fatalf("Dispatch once the lane drained: %v", err)
	}

	done, cancel := context.WithCancel(t.Context())
	cancel()
	if err := l.Dispatch(done, "a", func(context.Context) { t.Error("a job dispatched with a done context ran") }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Dispatch with a done context: got %v, want context.Canceled", err)
	}
}

func TestLanesAbandon(t *testing.T) {
	l := mustNewLanes(t, 2, 8)
	release := blockLane(t, l, "a")
	var dropped atomic.Int32
	for _, key := range []string{"a", "a", "a"} {
		if err := l.Dispatch(t.Context(), key, func(context.Context) { dropped.Add(1) }); err != nil {
			t.Fatal(err)
		}
	}

	abandoned := make(chan struct{})
	go func() { l.Abandon(); close(abandoned) }()
	select {
	case <-abandoned:
		t.Fatal("Abandon returned while a job was running")
	case <-time.After(notYet):
	}
	release()
	<-abandoned

	// The lanes go on with new work, and the abandoned jobs never run.
	var ran atomic.Bool
	if err := l.Dispatch(t.Context(), "a", func(context.Context) { ran.Store(true) }); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if got := dropped.Load(); got != 0 {
		t.Errorf("%d abandoned jobs ran", got)
	}
	if !ran.Load() {
		t.Error("a job dispatched after Abandon did not run")
	}
}

// A running job sees its context end at Abandon, so a lane retrying a
// failing record does not hold up a rebalance; jobs dispatched afterwards
// get a live context.
func TestLanesAbandonEndsRunningJob(t *testing.T) {
	l := mustNewLanes(t, 2, 8)
	started := make(chan struct{})
	if err := l.Dispatch(t.Context(), "a", func(ctx context.Context) {
		close(started)
		select {
		case <-ctx.Done():
		case <-time.After(time.Minute):
			t.Error("the running job's context did not end at Abandon")
		}
	}); err != nil {
		t.Fatal(err)
	}
	<-started
	start := time.Now()
	l.Abandon()
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Abandon took %s", took)
	}
	live := make(chan error, 1)
	if err := l.Dispatch(t.Context(), "a", func(ctx context.Context) { live <- ctx.Err() }); err != nil {
		t.Fatal(err)
	}
	if err := <-live; err != nil {
		t.Fatalf("a job dispatched after Abandon got a done context: %v", err)
	}
}

func TestLanesCloseDrains(t *testing.T) {
	l := newLanes(3, 16)
	var ran atomic.Int32
	for i := range 200 {
		err := l.Dispatch(t.Context(), fmt.Sprint(i), func(context.Context) {
			if i%10 == 0 {
				time.Sleep(100 * time.Microsecond)
			}
			ran.Add(1)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	if got := ran.Load(); got != 200 {
		t.Errorf("after Close, %d of 200 jobs ran", got)
	}
	if err := l.Dispatch(t.Context(), "x", func(context.Context) {}); !errors.Is(err, errLanesClosed) {
		t.Errorf("Dispatch after Close: got %v, want errLanesClosed", err)
	}
	l.Close() // twice is fine
}

func TestLanesDefault(t *testing.T) {
	l := newLaneSet(0)
	defer l.Close()
	if got := l.Len(); got != lanesDefault {
		t.Errorf("newLaneSet(0).Len() = %d, want %d", got, lanesDefault)
	}
}

// consumedRecord is one record of the combined property test.
type consumedRecord struct {
	rec     *kgo.Record
	delay   int // 0: none, 1: yield, 2: sleep
	applied atomic.Int32
}

// The consumer's promise, end to end, through the code the consumer runs:
// each poll's records go through the router (tracked in offsetTracker, batched
// per lane, flushed to the lanes before waiting for room), a lane job
// applies its batch — some keys' records only after the others, as the
// consumer's retry path does — completing each record after applying it,
// the poll loop commits what Committable says, and at any time nothing below
// a committable offset is unapplied. Rebalances abandon the lanes, revoke
// every partition and re-deliver from the last commit, as the next owner
// would: nothing is lost, and one key's records are applied in offset order.
func TestLanesOffsetsProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		partitions := rapid.Int32Range(1, 3).Draw(rt, "partitions")
		keysPerPartition := rapid.IntRange(1, 4).Draw(rt, "keysPerPartition")
		records := make([][]*consumedRecord, partitions)
		byRecord := make(map[*kgo.Record]*consumedRecord)
		for p := range partitions {
			n := rapid.IntRange(0, 60).Draw(rt, "records")
			off := rapid.Int64Range(0, 5).Draw(rt, "firstOffset")
			for range n {
				// A key lives on one partition, as with Kafka's key hashing.
				key := fmt.Sprintf("p%d-k%d", p, rapid.IntRange(0, keysPerPartition-1).Draw(rt, "key"))
				cr := &consumedRecord{rec: &kgo.Record{Partition: p, Offset: off, Key: []byte(key)}, delay: rapid.IntRange(0, 2).Draw(rt, "delay")}
				records[p] = append(records[p], cr)
				byRecord[cr.rec] = cr
				off += 1 + rapid.Int64Range(0, 2).Draw(rt, "gap")
			}
		}
		offsets := &offsetTracker{inFlightMax: rapid.IntRange(1, 12).Draw(rt, "inFlightMax")}
		lanes := newLanes(rapid.IntRange(1, 5).Draw(rt, "lanes"), rapid.IntRange(1, 4).Draw(rt, "laneQueueMax"))
		defer lanes.Close()

		var (
			failMu   sync.Mutex
			failures []string
		)
		fail := func(format string, args ...any) {
			failMu.Lock()
			failures = append(failures, fmt.Sprintf(format, args...))
			failMu.Unlock()
		}
		// check is the promise: every record below a committable offset has
		// been applied (at least once). Jobs apply before they complete.
		check := func() map[int32]int64 {
			c := offsets.Committable()
			for p, commit := range c {
				for _, r := range records[p] {
					if r.rec.Offset < commit && r.applied.Load() == 0 {
						fail("partition %d: committable %d passes unapplied offset %d", p, commit, r.rec.Offset)
					}
				}
			}
			return c
		}
		// A checker at random times, beside the poll loop's own checks.
		stop := make(chan struct{})
		var checker sync.WaitGroup
		checker.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					check()
					runtime.Gosched()
				}
			}
		})

		var generation atomic.Int32
		// keyLogs[key] lists the offsets applied for key in the current
		// generation. The map is fixed before any job runs; each slice is
		// written without a lock by its key's lane, so under -race two jobs
		// of one key running at once would fail too.
		keyLogs := make(map[string]*[]int64)
		for p := range records {
			for _, r := range records[p] {
				keyLogs[string(r.rec.Key)] = new([]int64)
			}
		}
		// Which keys of a batch the lane applies last (as after a failed
		// batch); drawn up front, since rapid's draws are not for lanes.
		late := make(map[string]bool)
		for key := range keyLogs {
			late[key] = rapid.Bool().Draw(rt, "late")
		}
		apply := func(r *consumedRecord, gen int32) {
			if generation.Load() != gen {
				fail("partition %d offset %d: a job of generation %d ran after it was abandoned", r.rec.Partition, r.rec.Offset, gen)
			}
			switch r.delay {
			case 1:
				runtime.Gosched()
			case 2:
				time.Sleep(20 * time.Microsecond)
			}
			key := string(r.rec.Key)
			log := keyLogs[key]
			if n := len(*log); n > 0 && (*log)[n-1] >= r.rec.Offset {
				fail("key %s: offset %d applied after %d", key, r.rec.Offset, (*log)[n-1])
			}
			*log = append(*log, r.rec.Offset)
			r.applied.Add(1)
			if err := offsets.Complete(r.rec.Partition, r.rec.Offset); err != nil {
				fail("%v", err)
			}
		}
		handle := func(_ context.Context, recs []*kgo.Record) {
			gen := generation.Load()
			for _, lateRound := range []bool{false, true} {
				for _, rec := range recs {
					if late[string(rec.Key)] == lateRound {
						apply(byRecord[rec], gen)
					}
				}
			}
		}
		var commitsWhenFull atomic.Int32
		route := newRouter(offsets, lanes, funcHandler{handle, func(context.Context) { commitsWhenFull.Add(1); check() }}, slog.New(slog.DiscardHandler))

		ctx := t.Context()
		next := make([]int, partitions) // poll position per partition
		seen := make(map[int32]int64)   // last commit per partition
		rebalances := 0
		for {
			var open []int32
			for p := range partitions {
				if next[p] < len(records[p]) {
					open = append(open, p)
				}
			}
			if len(open) == 0 {
				break
			}
			if rebalances < 2 && rapid.IntRange(0, 15).Draw(rt, "rebalance") == 0 {
				rebalances++
				commits := check()
				for p, c := range commits {
					seen[p] = c
				}
				lanes.Abandon()
				route.reset()
				all := make([]int32, partitions)
				for p := range all {
					all[p] = int32(p)
				}
				offsets.Revoke(all...)
				// No job runs after Abandon: re-delivery starts a new order.
				generation.Add(1)
				for _, log := range keyLogs {
					*log = nil
				}
				// The next owner resumes every partition at its commit.
				for p := range partitions {
					if c, ok := commits[p]; ok {
						next[p] = slices.IndexFunc(records[p], func(r *consumedRecord) bool { return r.rec.Offset >= c })
						if next[p] < 0 {
							next[p] = len(records[p])
						}
					}
				}
				continue
			}
			// One poll: up to a few records of each partition, partitions
			// interleaved, each partition's in offset order.
			for n := rapid.IntRange(1, 12).Draw(rt, "pollSize"); n > 0 && len(open) > 0; n-- {
				i := rapid.IntRange(0, len(open)-1).Draw(rt, "poll")
				p := open[i]
				route.add(ctx, records[p][next[p]].rec)
				if next[p]++; next[p] == len(records[p]) {
					open = slices.Delete(open, i, i+1)
				}
			}
			route.flush(ctx)
			if rapid.IntRange(0, 3).Draw(rt, "commit") == 0 {
				for p, c := range check() {
					if prev, ok := seen[p]; ok && c < prev {
						fail("partition %d: commit went back from %d to %d without a rebalance", p, prev, c)
					}
					seen[p] = c
				}
			}
		}

		lanes.Close()
		close(stop)
		checker.Wait()
		final := check()
		for p := range partitions {
			if len(records[p]) == 0 {
				continue
			}
			want := records[p][len(records[p])-1].rec.Offset + 1
			got, ok := final[p]
			if !ok {
				got = seen[p] // fully committed before the last rebalance
			}
			if got != want {
				fail("partition %d: final commit %d, want %d", p, got, want)
			}
			for _, r := range records[p] {
				if r.applied.Load() == 0 {
					fail("partition %d offset %d: never applied", p, r.rec.Offset)
				}
			}
		}
		if len(failures) > 0 {
			rt.Fatalf("%d failures, first: %s", len(failures), failures[0])
		}
	})
}

// funcHandler is the router's batchHandler as two functions.
type funcHandler struct {
	handle func(context.Context, []*kgo.Record)
	full   func(context.Context)
}

func (h funcHandler) handleBatch(ctx context.Context, recs []*kgo.Record) { h.handle(ctx, recs) }
func (h funcHandler) commit(ctx context.Context)                          { h.full(ctx) }
