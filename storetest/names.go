package storetest

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/unicode/norm"

	"banksync"
	"banksync/ledger"
)

// Text people type, as a store must keep it: depositors' names other banks
// send (입금자명) and a memo of the longest length, in Korean and emoji, each
// 3 or 4 bytes a character.
var (
	depositorNames = []string{"김철수", "(주)토스 급여", "KB국민 홍길동", "José Müller", "㈜" + strings.Repeat("가", banksync.SenderLengthMax-1)}
	longestMemo    = strings.Repeat("가", banksync.MemoLengthMax-6) + "🎉❤️🧑‍💻" // 1 + 2 + 3 code points
)

// testDepositorNames: deposits from depositors' names sent in NFD, and a
// transfer with the longest memo, are booked in NFC; the store gives them
// back byte for byte after a restart; and the NFC form of a deposit is the
// same deposit for idempotency.
func testDepositorNames(t *testing.T, h LedgerHarness) {
	ctx := context.Background()
	f := openFixture(t, h, ledger.Config{})
	f.mustAccount(t, "a", 0)
	f.mustAccount(t, "b", 0)
	var want []banksync.Entry
	for i, name := range depositorNames {
		d := banksync.DepositRequest{ExternalRef: "other-bank-" + string(rune('a'+i)), AccountID: "a", Amount: 100, Sender: norm.NFD.String(name)}
		out, err := f.Deposit(ctx, d)
		if err != nil {
			t.Fatalf("deposit from %q: %v", name, err)
		}
		if out.Entry.Counterparty != name {
			t.Fatalf("deposit from %q booked with counterparty %+q, want it in NFC", name, out.Entry.Counterparty)
		}
		d.Sender = name
		replay, err := f.Deposit(ctx, d)
		if err != nil {
			t.Fatalf("the same deposit from %q in NFC: %v", name, err)
		}
		diff(t, "deposit replayed in NFC", replay, out)
		want = append(want, out.Entry)
	}
	tr := banksync.TransferRequest{TransferID: "t-memo", FromAccount: "a", ToAccount: "b", Amount: 1,
		Deadline: f.clock.now.Add(time.Minute), Memo: norm.NFD.String(longestMemo)}
	out, err := f.Transfer(ctx, tr)
	if err != nil || out.Status != banksync.StatusCompleted {
		t.Fatalf("transfer with the longest memo = %+v, %v", out, err)
	}
	if got := out.Entries[0].Memo; got != longestMemo {
		t.Fatalf("transfer booked with memo %+q, want %+q", got, longestMemo)
	}
	want = append(want, out.Entries[0])

	f.close()
	f = reopen(t, h, f.where, ledger.Config{})
	got, err := f.store.Entries(ctx, "a", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	diff(t, "entries after a restart", got, want)
}

// testChannelNames: the history keeps counterparties and memos byte for
// byte, whatever their script.
func testChannelNames(t *testing.T, h ChannelHarness) {
	s, _ := openChannel(t, h)
	all := ledgerEntries("acc-1", 1, int64(len(depositorNames)+1))
	for i, name := range depositorNames {
		all[i].Counterparty = name
	}
	all[len(depositorNames)].Memo = longestMemo
	mustApply(t, s, "acc-1", all, channelT0)
	diff(t, "history", mustHistory(t, s, "acc-1", math.MaxInt64, 100), reversed(all))
}
