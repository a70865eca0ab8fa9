package kafka

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"
)

func TestOffsetsCommittable(t *testing.T) {
	var o offsetTracker
	if got := o.Committable(); len(got) != 0 {
		t.Fatalf("Committable() before any dispatch = %v, want empty", got)
	}
	mustDispatch(t, &o, 0, 10, 11, 15) // 12–14: compacted away
	mustDispatch(t, &o, 1, 0)

	steps := []struct {
		partition int32
		offset    int64
		want      map[int32]int64
	}{
		{0, 11, map[int32]int64{0: 10, 1: 0}},
		{1, 0, map[int32]int64{0: 10, 1: 1}},
		{0, 10, map[int32]int64{0: 15, 1: 1}},
		{0, 15, map[int32]int64{0: 16, 1: 1}},
	}
	for _, s := range steps {
		if err := o.Complete(s.partition, s.offset); err != nil {
			t.Fatalf("Complete(%d, %d): %v", s.partition, s.offset, err)
		}
		if diff := cmp.Diff(s.want, o.Committable()); diff != "" {
			t.Fatalf("after Complete(%d, %d), Committable() (-want +got):\n%s", s.partition, s.offset, diff)
		}
	}
	if got := o.InFlight(0); got != 0 {
		t.Errorf("InFlight(0) = %d, want 0", got)
	}

	o.Revoke(0, 7)
	if diff := cmp.Diff(map[int32]int64{1: 1}, o.Committable()); diff != "" {
		t.Errorf("after Revoke(0), Committable() (-want +got):\n%s", diff)
	}
	// The next owner's re-delivery starts wherever the commit was.
	mustDispatch(t, &o, 0, 3)
	if diff := cmp.Diff(map[int32]int64{0: 3, 1: 1}, o.Committable()); diff != "" {
		t.Errorf("after re-dispatch, Committable() (-want +got):\n%s", diff)
	}
}

func TestOffsetsRefusesBugs(t *testing.T) {
	var o offsetTracker
	mustDispatch(t, &o, 0, 5, 7)
	if err := o.Complete(0, 5); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"complete twice", func() error { return o.Complete(0, 5) }},
		{"complete a gap", func() error { return o.Complete(0, 6) }},
		{"complete past the last", func() error { return o.Complete(0, 8) }},
		{"complete an unknown partition", func() error { return o.Complete(3, 5) }},
		{"dispatch the same offset", func() error { return o.Dispatch(0, 7) }},
		{"dispatch backwards", func() error { return o.Dispatch(0, 6) }},
		{"dispatch a negative offset", func() error { return o.Dispatch(1, -1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); err == nil {
				t.Error("got no error")
			}
			if diff := cmp.Diff(map[int32]int64{0: 7}, o.Committable()); diff != "" {
				t.Errorf("the refused call changed Committable() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOffsetsInFlightMax(t *testing.T) {
	o := offsetTracker{inFlightMax: 3}
	mustDispatch(t, &o, 0, 1, 2, 3)
	if err := o.Dispatch(0, 4); !errors.Is(err, errInFlightFull) {
		t.Fatalf("Dispatch past the maximum: got %v, want errInFlightFull", err)
	}
	// Other partitions have their own bound.
	mustDispatch(t, &o, 1, 1)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := o.WaitRoom(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitRoom(cancelled) on a full partition: got %v, want context.Canceled", err)
	}

	waited := make(chan error, 1)
	go func() { waited <- o.WaitRoom(t.Context(), 0) }()
	// Completing a record behind the commit point frees nothing.
	if err := o.Complete(0, 3); err != nil {
		t.Fatal(err)
	}
	if got := o.InFlight(0); got != 3 {
		t.Errorf("InFlight(0) after completing the last record = %d, want 3", got)
	}
	select {
	case err := <-waited:
		t.Fatalf("WaitRoom returned %v while the partition was still full", err)
	case <-time.After(20 * time.Millisecond):
	}
	if err := o.Complete(0, 1); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Fatalf("WaitRoom after a slot freed: %v", err)
	}
	mustDispatch(t, &o, 0, 4)

	// Revoking a full partition releases its waiters.
	mustDispatch(t, &o, 1, 2, 3)
	go func() { waited <- o.WaitRoom(t.Context(), 1) }()
	o.Revoke(1)
	if err := <-waited; err != nil {
		t.Fatalf("WaitRoom after Revoke: %v", err)
	}
}

// A long run with the default bound: the ring grows and wraps, completion order
// is random, and the commit point is always the lowest record not completed.
func TestOffsetsLongRandomRun(t *testing.T) {
	var o offsetTracker
	rng := rand.New(rand.NewPCG(1, 2))
	const n = 20_000
	var offsets []int64
	var next int64
	var inFlight []int64 // dispatched, not completed; order irrelevant
	done := make(map[int64]bool)
	low := 0 // index in offsets of the lowest record not completed
	for len(offsets) < n || len(inFlight) > 0 {
		if len(offsets) < n && (len(inFlight) == 0 || rng.IntN(2) == 0) {
			next += 1 + int64(rng.IntN(3))
			if err := o.Dispatch(0, next); err != nil {
				t.Fatal(err)
			}
			offsets = append(offsets, next)
			inFlight = append(inFlight, next)
			continue
		}
		i := rng.IntN(len(inFlight))
		off := inFlight[i]
		inFlight[i] = inFlight[len(inFlight)-1]
		inFlight = inFlight[:len(inFlight)-1]
		if err := o.Complete(0, off); err != nil {
			t.Fatal(err)
		}
		done[off] = true
		for low < len(offsets) && done[offsets[low]] {
			low++
		}
		want := next + 1
		if low < len(offsets) {
			want = offsets[low]
		}
		if got := o.Committable()[0]; got != want {
			t.Fatalf("after %d records, Committable()[0] = %d, want %d", len(offsets), got, want)
		}
		if got, want := o.InFlight(0), len(offsets)-low; got != want {
			t.Fatalf("InFlight(0) = %d, want %d", got, want)
		}
	}
}

// The poll loop dispatches and commits while many goroutines complete.
func TestOffsetsConcurrent(t *testing.T) {
	o := offsetTracker{inFlightMax: 64}
	const partitions, perPartition, workers = 4, 2000, 8
	work := make(chan [2]int64, 128)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for r := range work {
				if err := o.Complete(int32(r[0]), r[1]); err != nil {
					t.Error(err)
				}
			}
		})
	}
	last := make(map[int32]int64)
	for i := range perPartition {
		for p := range int32(partitions) {
			off := int64(2 * i)
			for {
				err := o.Dispatch(p, off)
				if err == nil {
					break
				}
				if !errors.Is(err, errInFlightFull) {
					t.Fatal(err)
				}
				if err := o.WaitRoom(t.Context(), p); err != nil {
					t.Fatal(err)
				}
			}
			work <- [2]int64{int64(p), off}
		}
		for p, c := range o.Committable() {
			if c < last[p] {
				t.Fatalf("partition %d: commit went back from %d to %d", p, last[p], c)
			}
			last[p] = c
		}
	}
	close(work)
	wg.Wait()
	want := map[int32]int64{0: 2*perPartition - 1, 1: 2*perPartition - 1, 2: 2*perPartition - 1, 3: 2*perPartition - 1}
	if diff := cmp.Diff(want, o.Committable()); diff != "" {
		t.Errorf("Committable() after all completed (-want +got):\n%s", diff)
	}
}

// offsetsModel is what the tracker must agree with: per partition, every
// offset dispatched since the last revoke and whether it completed.
type offsetsModel struct {
	inFlightMax int
	dispatched  map[int32][]int64
	done        map[int32]map[int64]bool
	// seen is the last Committable() value per partition, reset by Revoke:
	// commits must not go backwards in between.
	seen map[int32]int64
	// resume is where the partition's next owner starts re-delivering.
	resume map[int32]int64
}

// held is how many records of p are past its commit point.
func (m *offsetsModel) held(p int32) int {
	offs := m.dispatched[p]
	for i, off := range offs {
		if !m.done[p][off] {
			return len(offs) - i
		}
	}
	return 0
}

func (m *offsetsModel) notDone(p int32) []int64 {
	var out []int64
	for _, off := range m.dispatched[p] {
		if !m.done[p][off] {
			out = append(out, off)
		}
	}
	return out
}

const offsetsModelPartitions = 4

var partitionGen = rapid.Int32Range(0, offsetsModelPartitions-1)

func TestOffsetsProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		m := &offsetsModel{
			inFlightMax: rapid.IntRange(1, 8).Draw(rt, "inFlightMax"),
			dispatched:  make(map[int32][]int64),
			done:        make(map[int32]map[int64]bool),
			seen:        make(map[int32]int64),
			resume:      make(map[int32]int64),
		}
		o := &offsetTracker{inFlightMax: m.inFlightMax}

		actions := map[string]func(*rapid.T){
			"dispatch": func(rt *rapid.T) {
				p := partitionGen.Draw(rt, "partition")
				offs := m.dispatched[p]
				var off int64
				if len(offs) == 0 {
					off = m.resume[p] // re-delivery starts at the commit point
				} else {
					gap := rapid.OneOf(rapid.Just[int64](0), rapid.Int64Range(1, 4), rapid.Int64Range(5, 1<<40)).Draw(rt, "gap")
					off = offs[len(offs)-1] + 1 + gap
				}
				err := o.Dispatch(p, off)
				if m.held(p) >= m.inFlightMax {
					if !errors.Is(err, errInFlightFull) {
						rt.Fatalf("Dispatch(%d, %d) with %d held: got %v, want errInFlightFull", p, off, m.held(p), err)
					}
					return
				}
				if err != nil {
					rt.Fatalf("Dispatch(%d, %d): %v", p, off, err)
				}
				m.dispatched[p] = append(offs, off)
				if m.done[p] == nil {
					m.done[p] = make(map[int64]bool)
				}
			},
			"dispatchNotIncreasing": func(rt *rapid.T) {
				p := partitionGen.Draw(rt, "partition")
				offs := m.dispatched[p]
				if len(offs) == 0 {
					rt.Skip("nothing dispatched")
				}
				off := offs[len(offs)-1] - rapid.Int64Range(0, 3).Draw(rt, "back")
				if err := o.Dispatch(p, off); err == nil {
					rt.Fatalf("Dispatch(%d, %d) after %d: got no error", p, off, offs[len(offs)-1])
				}
			},
			"complete": func(rt *rapid.T) {
				p := partitionGen.Draw(rt, "partition")
				pending := m.notDone(p)
				if len(pending) == 0 {
					rt.Skip("nothing in flight")
				}
				off := rapid.SampledFrom(pending).Draw(rt, "offset")
				if err := o.Complete(p, off); err != nil {
					rt.Fatalf("Complete(%d, %d): %v", p, off, err)
				}
				m.done[p][off] = true
			},
			"completeNotInFlight": func(rt *rapid.T) {
				p := partitionGen.Draw(rt, "partition")
				offs := m.dispatched[p]
				var off int64
				if len(offs) > 0 && rapid.Bool().Draw(rt, "near") {
					off = offs[0] + rapid.Int64Range(-1, offs[len(offs)-1]-offs[0]+1).Draw(rt, "near offset")
				} else {
					off = rapid.Int64Range(0, 1<<41).Draw(rt, "offset")
				}
				if slices.Contains(offs, off) && !m.done[p][off] {
					rt.Skip("offset in flight")
				}
				if err := o.Complete(p, off); err == nil {
					rt.Fatalf("Complete(%d, %d) of an offset not in flight: got no error", p, off)
				}
			},
			"revoke": func(rt *rapid.T) {
				ps := rapid.SliceOfDistinct(partitionGen, rapid.ID[int32]).Draw(rt, "partitions")
				o.Revoke(ps...)
				for _, p := range ps {
					if c, ok := m.seen[p]; ok {
						m.resume[p] = c
					}
					delete(m.dispatched, p)
					delete(m.done, p)
					delete(m.seen, p)
				}
			},
			"": func(rt *rapid.T) { checkOffsets(rt, o, m) },
		}
		// Longer histories than rapid's 30 steps, so partitions fill up,
		// rings wrap and revokes land mid-flight.
		for range 5 {
			rt.Repeat(actions)
		}
	})
}

// checkOffsets checks the promises of Committable against the model.
func checkOffsets(rt *rapid.T, o *offsetTracker, m *offsetsModel) {
	got := o.Committable()
	for p, c := range got {
		if len(m.dispatched[p]) == 0 {
			rt.Fatalf("partition %d: Committable() = %d with nothing dispatched since its revoke", p, c)
		}
	}
	for p, offs := range m.dispatched {
		if len(offs) == 0 {
			continue
		}
		c, ok := got[p]
		if !ok {
			rt.Fatalf("partition %d: absent from Committable() with %d records dispatched", p, len(offs))
		}
		// The promise: every offset below the commit is completed (or was
		// never dispatched).
		for _, off := range offs {
			if off < c && !m.done[p][off] {
				rt.Fatalf("partition %d: commit %d passes offset %d, dispatched and not completed", p, c, off)
			}
		}
		if prev, ok := m.seen[p]; ok && c < prev {
			rt.Fatalf("partition %d: commit went back from %d to %d without a revoke", p, prev, c)
		}
		m.seen[p] = c
		last := offs[len(offs)-1]
		pending := m.notDone(p)
		if len(pending) == 0 && c != last+1 {
			rt.Fatalf("partition %d: all complete up to %d, commit %d, want %d", p, last, c, last+1)
		}
		// And it is not lazy: nothing but the lowest record in flight holds it back.
		if len(pending) > 0 && c != pending[0] {
			rt.Fatalf("partition %d: commit %d, want the lowest offset in flight %d", p, c, pending[0])
		}
	}
	for p := range int32(offsetsModelPartitions) {
		if got, want := o.InFlight(p), m.held(p); got != want {
			rt.Fatalf("InFlight(%d) = %d, want %d", p, got, want)
		}
	}
}

func mustDispatch(tb testing.TB, o *offsetTracker, partition int32, offsets ...int64) {
	tb.Helper()
	for _, off := range offsets {
		if err := o.Dispatch(partition, off); err != nil {
			tb.Fatalf("Dispatch(%d, %d): %v", partition, off, err)
		}
	}
}
