package channel_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"banksync"
	"banksync/channel"
	"banksync/sqlite"
)

// filterFixture is an account of 230 entries: every third money out,
// depositors' names and memos in Korean and Latin letters.
func filterFixture(t *testing.T, scanMax int) (*stack, []banksync.Entry) {
	t.Helper()
	ctx := context.Background()
	store, err := sqlite.OpenChannel(ctx, filepath.Join(t.TempDir(), "channel.db"))
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, store, channel.Config{Deadline: 10 * time.Second, CoreTimeout: time.Second, HistoryScanMax: scanMax})
	if err := store.AddAccount(ctx, "zed-1", "zed"); err != nil {
		t.Fatal(err)
	}
	var es []banksync.Entry
	balance := int64(1_000_000)
	for seq := int64(1); seq <= 230; seq++ {
		e := banksync.Entry{AccountID: "zed-1", Seq: seq, Position: seq, Kind: banksync.KindDeposit, Amount: seq,
			Counterparty: "Toss", BookedAt: time.Now()}
		switch {
		case seq%3 == 0:
			e.Kind, e.Amount, e.Counterparty, e.TransferID, e.Memo = banksync.KindTransferOut, -seq, "amy-1", fmt.Sprintf("t-%d", seq), "월세 rent"
		case seq%5 == 0:
			e.Counterparty, e.ExternalRef = "KB국민 홍길동", fmt.Sprintf("kb-%d", seq)
		case seq%7 == 0:
			e.Memo, e.ExternalRef = "Salary for "+fmt.Sprint(seq), fmt.Sprintf("sal-%d", seq)
		default:
			e.ExternalRef = fmt.Sprintf("toss-%d", seq)
		}
		balance += e.Amount
		e.BalanceAfter = balance
		es = append(es, e)
	}
	if _, err := store.Apply(ctx, "zed-1", es, time.Now()); err != nil {
		t.Fatal(err)
	}
	return s, es
}

// TestFilteredHistoryScroll scrolls filtered histories to their end and
// checks P5 on them: every matching entry once, newest first, none that
// does not match, whatever the page size and however few entries a page may
// examine (pages with none and a cursor among them).
func TestFilteredHistoryScroll(t *testing.T) {
	for _, scanMax := range []int{7, 64, 0} {
		s, all := filterFixture(t, scanMax)
		cs := channel.NewCursors([]byte("filter-test"))
		for _, tc := range []struct {
			name  string
			f     channel.HistoryFilter
			match func(banksync.Entry) bool
		}{
			{"money out", channel.HistoryFilter{Direction: channel.DirectionOut}, func(e banksync.Entry) bool { return e.Amount < 0 }},
			{"money in", channel.HistoryFilter{Direction: channel.DirectionIn}, func(e banksync.Entry) bool { return e.Amount > 0 }},
			{"a depositor's name", channel.HistoryFilter{Text: "홍길동"}, func(e banksync.Entry) bool { return e.Counterparty == "KB국민 홍길동" }},
			{"a memo, in another case", channel.HistoryFilter{Text: " SALARY "}, func(e banksync.Entry) bool { return e.Memo != "" && e.Memo[0] == 'S' }},
			{"a memo in Korean, money out", channel.HistoryFilter{Direction: channel.DirectionOut, Text: "월세"}, func(e banksync.Entry) bool { return e.Amount < 0 }},
			{"money in from toss", channel.HistoryFilter{Direction: channel.DirectionIn, Text: "toss"}, func(e banksync.Entry) bool { return e.Counterparty == "Toss" }},
			{"nothing matches", channel.HistoryFilter{Text: "nobody"}, func(banksync.Entry) bool { return false }},
			{"everything", channel.HistoryFilter{}, func(banksync.Entry) bool { return true }},
		} {
			for _, limit := range []int{1, 4, 100} {
				t.Run(fmt.Sprintf("scan %d, %s, pages of %d", scanMax, tc.name, limit), func(t *testing.T) {
					var want []int64
					for _, e := range slices.Backward(all) {
						if tc.match(e) {
							want = append(want, e.Seq)
						}
					}
					var got []int64
					cursor := ""
					for pages := 0; ; pages++ {
						if pages > len(all)+1 {
							t.Fatalf("no end after %d pages", pages)
						}
						p, err := s.ch.FilteredHistory(context.Background(), cs, "zed", "zed-1", cursor, limit, tc.f)
						if err != nil {
							t.Fatal(err)
						}
						if len(p.Entries) > limit {
							t.Fatalf("page of %d entries, limit %d", len(p.Entries), limit)
						}
						for _, e := range p.Entries {
							got = append(got, e.Seq)
						}
						if cursor = p.NextCursor; cursor == "" {
							break
						}
					}
					if !slices.Equal(got, want) {
						t.Fatalf("scroll = %v\nwant     %v", got, want)
					}
				})
			}
		}
	}
}

func TestFilteredHistoryRefusesBadFilters(t *testing.T) {
	s, _ := filterFixture(t, 0)
	cs := channel.NewCursors([]byte("filter-test"))
	long := ""
	for range channel.HistoryTextMax + 1 {
		long += "가"
	}
	for _, f := range []channel.HistoryFilter{
		{Direction: "sideways"},
		{Direction: "IN"},
		{Text: long},
		{Text: "a\x00b"},
		{Text: "a\u200bb"},
		{Text: "\xff"},
	} {
		if _, err := s.ch.FilteredHistory(context.Background(), cs, "zed", "zed-1", "", 20, f); banksync.ErrorCode(err) != banksync.EINVALID {
			t.Errorf("filter %+q = %v, want %s", f, err, banksync.EINVALID)
		}
	}
	// At the limit, in characters, not bytes.
	if _, err := s.ch.FilteredHistory(context.Background(), cs, "zed", "zed-1", "", 20, channel.HistoryFilter{Text: long[len("가"):]}); err != nil {
		t.Errorf("%d characters = %v, want accepted", channel.HistoryTextMax, err)
	}
}
