package kafka

import (
	"encoding/json"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"pgregory.net/rapid"
)

// TestReplayMarkProperty drives the replay mark through random replays of
// a growing dead-letter partition — each letter's outcome drawn (applied,
// parked, held, or the replay stopping), the partition's oldest letters now
// and then deleted by retention, and now and then a slower replica's older
// mark committed over a newer one — and checks after each that the mark
// never says a letter is done that no replay applied or parked, starts the
// next replay at or before every letter not done, counts each parked
// letter below Through at most once, holds at most replayHeldMax letters,
// and reads back from the commit as written.
func TestReplayMarkProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		// Outcomes come from a stream seeded by rapid: its own draws favour
		// small numbers, and the mark's limits need long runs to reach.
		rng := rand.New(rand.NewPCG(rapid.Uint64().Draw(rt, "seed"), 0))
		heldRate := rapid.Float64Range(0, 1).Draw(rt, "held rate")
		var (
			mark   replayMark
			older  []replayMark
			end    int64
			start  int64              // log start: letters below it are gone
			done   = map[int64]bool{} // some replay applied or parked it
			poison = map[int64]bool{} // it cannot be decoded: parked when done
		)
		for range rapid.IntRange(1, 12).Draw(rt, "replays") {
			for n := rapid.Int64Range(60, 400).Draw(rt, "new letters"); n > 0; n-- {
				poison[end] = rng.IntN(10) == 0
				end++
			}
			if rapid.IntRange(0, 9).Draw(rt, "retention") == 0 {
				start = rapid.Int64Range(start, end).Draw(rt, "log start")
			}
			read := mark.after(start)
			sc := newMarkScan(read)
			for o := read.commitAt(); o < end; o++ {
				if read.done(o) {
					continue
				}
				if rng.IntN(300) == 0 {
					break // the replay stops (letters failing in a row, ctx)
				}
				out := letterDone
				if rng.Float64() < heldRate {
					out = letterHeld
				}
				if out != letterHeld {
					out = letterDone
					if poison[o] {
						out = letterParked
					}
					done[o] = true
				}
				sc.record(o, out)
			}
			next := sc.finish()

			if !slices.IsSorted(next.Held) || len(slices.Compact(slices.Clone(next.Held))) != len(next.Held) {
				rt.Fatalf("held %v not ascending and unique", next.Held)
			}
			if len(next.Held) > replayHeldMax {
				rt.Fatalf("%d letters held, more than %d", len(next.Held), replayHeldMax)
			}
			// Parked counts the parked letters below Through: all those
			// still in the topic, and at most every one ever parked (the
			// count outlives retention).
			parkedKept, parkedEver := int64(0), int64(0)
			for o := int64(0); o < next.Through; o++ {
				if next.done(o) && o >= start && !done[o] {
					rt.Fatalf("letter %d is done by the mark %+v, but no replay applied or parked it", o, next)
				}
				if next.done(o) && done[o] && poison[o] {
					parkedEver++
					if o >= start {
						parkedKept++
					}
				}
			}
			for o := start; o < next.commitAt(); o++ {
				if !done[o] {
					rt.Fatalf("the next replay starts at %d, past letter %d that is not done", next.commitAt(), o)
				}
			}
			if next.Parked < parkedKept || next.Parked > parkedEver {
				rt.Fatalf("parked %d, want between %d and %d (mark %+v)", next.Parked, parkedKept, parkedEver, next)
			}
			meta, _ := json.Marshal(next)
			if got := markOf(kadm.OffsetResponse{Offset: kadm.Offset{At: next.commitAt(), Metadata: string(meta)}}); !got.equal(next) {
				rt.Fatalf("mark %+v reads back as %+v", next, got)
			}
			older = append(older, mark)
			mark = next
			if len(older) > 1 && rapid.IntRange(0, 4).Draw(rt, "late commit") == 0 {
				mark = older[len(older)-2] // a slower replica commits what it read earlier
			}
		}
	})
}
