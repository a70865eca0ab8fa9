package banksync_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"banksync"
)

// FuzzDecodeLedgerEvent feeds record values a broker could hand the
// consumer. DecodeLedgerEvent must never panic, and an event it accepts
// must survive being published again: encoded, it decodes to the same event
// and encodes to the same bytes, so a dead letter replays as it arrived.
func FuzzDecodeLedgerEvent(f *testing.F) {
	booked := time.Date(2026, 3, 1, 9, 30, 0, 123456789, time.UTC)
	for _, ev := range []banksync.LedgerEvent{
		banksync.EventOf(banksync.Entry{AccountID: "a1", Seq: 1, Position: 1, Kind: banksync.KindDeposit,
			Amount: 500, BalanceAfter: 500, Counterparty: "kb-bank", ExternalRef: "kb-1", BookedAt: booked}),
		banksync.EventOf(banksync.Entry{AccountID: "a1", Seq: 2, Position: 7, Kind: banksync.KindTransferOut,
			Amount: -200, BalanceAfter: 300, Counterparty: "b1", TransferID: "t1", Memo: "점심", BookedAt: booked.In(time.FixedZone("KST", 9*3600))}),
	} {
		value, err := json.Marshal(ev)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(value)
	}
	for _, value := range []string{
		``,
		`null`,
		`[]`,
		`{"version":1,"type":"ledger.entry","event_id":1,"account_id":"a1","seq":1}`,
		`{"version":2,"type":"ledger.entry","event_id":1,"account_id":"a1","seq":1}`,
		`{"version":1,"type":"ledger.entry","event_id":1,"account_id":"../a1","seq":1}`,
		`{"version":1,"type":"ledger.entry","event_id":0,"account_id":"a1","seq":1}`,
		`{"version":1,"type":"ledger.entry","event_id":1,"account_id":"a1","seq":9223372036854775808}`,
		`{"version":1,"type":"ledger.entry","event_id":1,"account_id":"a1","seq":1,"booked_at":"9999-12-31T23:59:59.999999999-23:59"}`,
		`{"version":1,"type":"ledger.entry","event_id":1,"account_id":"a1","seq":1,"booked_at":"yesterday"}`,
		`{"VERSION":1,"Type":"ledger.entry","event_id":1,"account_id":"a1","seq":1,"seq":2,"memo":"\u0000\ud800"}`,
	} {
		f.Add([]byte(value))
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		ev, err := banksync.DecodeLedgerEvent(value)
		if err != nil {
			return
		}
		again, err := json.Marshal(ev)
		if err != nil {
			t.Fatalf("accepted %q, but it does not encode: %v", value, err)
		}
		ev2, err := banksync.DecodeLedgerEvent(again)
		if err != nil {
			t.Fatalf("accepted %q, but not its encoding %s: %v", value, again, err)
		}
		if d := cmp.Diff(ev, ev2); d != "" {
			t.Fatalf("%q decoded, encoded and decoded again changed (-first +second):\n%s", value, d)
		}
		if third, err := json.Marshal(ev2); err != nil || string(third) != string(again) {
			t.Fatalf("%q encodes as %s, then as %s (%v)", value, again, third, err)
		}
	})
}
