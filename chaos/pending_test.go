package chaos

import (
	"context"
	"testing"
	"time"

	"banksync/channel"
)

// transfersOnly is a history database holding only transfer records.
type transfersOnly struct {
	historyReader
	ts map[string]channel.Transfer
}

func (h transfersOnly) Transfer(_ context.Context, id string) (channel.Transfer, bool, error) {
	t, ok := h.ts[id]
	return t, ok, nil
}

// An intent executed twice breaks P1 only if its transfers were pending at
// the channel together; a re-send after the first completed is a new
// transfer.
func TestPendingTogether(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	const spread = 400 * time.Millisecond
	for _, tc := range []struct {
		name   string
		second channel.Transfer // the first: created at 0, settled at 1000 ms
		want   bool
	}{
		{"sent again after the first completed", channel.Transfer{CreatedAt: at(1500), SettledAt: at(1600)}, false},
		{"sent again while the first was pending", channel.Transfer{CreatedAt: at(200), SettledAt: at(3000)}, true},
		{"within the replicas' clock spread", channel.Transfer{CreatedAt: at(700), SettledAt: at(800)}, false},
		{"the other created first, settled after", channel.Transfer{CreatedAt: at(-2000), SettledAt: at(1500)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := transfersOnly{ts: map[string]channel.Transfer{"a": {CreatedAt: at(0), SettledAt: at(1000)}, "b": tc.second}}
			if got := pendingTogether(t.Context(), h, []string{"a", "b"}, spread); got != tc.want {
				t.Errorf("pendingTogether = %v, want %v", got, tc.want)
			}
		})
	}
	if !pendingTogether(t.Context(), transfersOnly{ts: map[string]channel.Transfer{"a": {CreatedAt: at(0)}}}, []string{"a", "b"}, spread) {
		t.Error("a transfer core executed that the channel has no record of must count")
	}
}
