package channel

import (
	"slices"
	"testing"

	"banksync"
)

// The in-order rule, on the cases every path that writes history meets.
func TestPlan(t *testing.T) {
	es := func(seqs ...int64) []banksync.Entry {
		out := make([]banksync.Entry, len(seqs))
		for i, seq := range seqs {
			out[i] = banksync.Entry{AccountID: "a", Seq: seq}
		}
		return out
	}
	for _, tc := range []struct {
		name      string
		synced    int64
		entries   []banksync.Entry
		pastHoles bool
		next      []banksync.Entry
		gap       bool
	}{
		{"nothing", 3, nil, false, es(), false},
		{"the next run", 3, es(4, 5, 6), false, es(4, 5, 6), false},
		{"from zero", 0, es(1, 2), false, es(1, 2), false},
		{"repeats skipped", 3, es(2, 3, 4, 5), false, es(4, 5), false},
		{"repeats only", 3, es(1, 2, 3), false, es(), false},
		{"a hole before", 3, es(5, 6), false, es(), true},
		{"repeats, then a hole", 3, es(3, 5), false, es(), true},
		{"a hole inside", 3, es(4, 5, 7, 8), false, es(4, 5), true},
		{"a hole before, unsafe", 3, es(5, 6), true, es(5, 6), false},
		{"repeats skipped, unsafe", 3, es(2, 3, 6), true, es(6), false},
		{"the next run, unsafe", 3, es(4, 5), true, es(4, 5), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next, gap := plan(tc.synced, tc.entries, tc.pastHoles)
			if !slices.Equal(next, tc.next) || gap != tc.gap {
				t.Errorf("plan(%d, %v, %t) = %v, gap %t; want %v, gap %t", tc.synced, tc.entries, tc.pastHoles, next, gap, tc.next, tc.gap)
			}
		})
	}
}
