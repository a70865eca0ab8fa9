package kafka_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"golang.org/x/text/unicode/norm"

	"banksync"
	"banksync/kafka"
)

// TestDepositorNamesReachTheHistory sends deposits whose depositors' names
// another bank composed in NFD (Hangul as jamo, accents as combining
// marks), and a transfer with a 50-character Korean memo, through core,
// its relay, Kafka and a consumer: the channel's history shows each name
// and the memo exactly as core recorded them, in NFC.
func TestDepositorNamesReachTheHistory(t *testing.T) {
	ctx := context.Background()
	p := newPipeline(t, nil)
	for _, id := range []string{"kim", "lee"} {
		if _, _, err := p.ledger.CreateAccount(ctx, id, "cust-"+id); err != nil {
			t.Fatal(err)
		}
	}
	names := []string{"김철수", "(주)토스 급여", "KB국민 홍길동", "José Müller"}
	for i, name := range names {
		d := banksync.DepositRequest{ExternalRef: "other-bank-" + string(rune('a'+i)), AccountID: "kim", Amount: 10_000, Sender: norm.NFD.String(name)}
		out, err := p.ledger.Deposit(ctx, d)
		if err != nil {
			t.Fatalf("deposit from %q: %v", name, err)
		}
		if got := out.Entry.Counterparty; got != name {
			t.Fatalf("deposit from %q booked with counterparty %q (%+q), want it in NFC", name, got, got)
		}
	}
	memo := strings.Repeat("점심값", 16) + "감사" // 50 characters, 150 bytes
	tr := banksync.TransferRequest{TransferID: "t-memo", FromAccount: "kim", ToAccount: "lee", Amount: 1_000,
		Deadline: time.Now().Add(time.Minute), Memo: norm.NFD.String(memo)}
	if out, err := p.ledger.Transfer(ctx, tr); err != nil || out.Status != banksync.StatusCompleted {
		t.Fatalf("transfer with a 50-character Korean memo = %+v, %v", out, err)
	}

	cfg := p.consumer("names")
	c, err := kafka.NewConsumer(cfg, p.apply)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); c.Run(runCtx) }()
	t.Cleanup(func() { cancel(); <-done })

	deadline := time.Now().Add(30 * time.Second)
	waitHistoryEqualsCore(t, p.coreStore, p.history, "kim", deadline)
	waitHistoryEqualsCore(t, p.coreStore, p.history, "lee", deadline)
	kim, err := p.history.History(ctx, "kim", 1<<62, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range kim { // newest first
		got = append(got, e.Counterparty)
	}
	want := []string{"lee", "José Müller", "KB국민 홍길동", "(주)토스 급여", "김철수"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("kim's history shows counterparties %q, want %q", got, want)
	}
	lee, err := p.history.History(ctx, "lee", 1<<62, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(lee) != 1 || lee[0].Memo != memo || lee[0].Counterparty != "kim" {
		t.Fatalf("lee's history is %+v, want one entry from kim with memo %q", lee, memo)
	}
}
