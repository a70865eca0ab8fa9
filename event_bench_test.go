package banksync_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"banksync"
)

// BenchmarkDecodeLedgerEvent decodes payday-like records with the decoder
// before issue 18 (encoding/json) and with DecodeLedgerEvent, in one run so
// the two are measured on the same machine load. The records differ, as a
// drain's do, so no decoder gains from seeing one value over and over.
func BenchmarkDecodeLedgerEvent(b *testing.B) {
	values := paydayValues(b, 1024)
	for _, bm := range []struct {
		name   string
		decode func([]byte) (banksync.LedgerEvent, error)
	}{
		{"encoding-json", decodeLedgerEventV1},
		{"json-v2", banksync.DecodeLedgerEvent},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := bm.decode(values[i%len(values)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// paydayValues returns n record values as the relay publishes them during
// a payday: salaries from an employer into many accounts.
func paydayValues(tb testing.TB, n int) [][]byte {
	booked := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	values := make([][]byte, n)
	for i := range values {
		e := banksync.Entry{
			AccountID: fmt.Sprintf("payday-%06d", i*7919%100000), Seq: int64(i%50 + 1), Position: int64(1_000_000 + i),
			Kind: banksync.KindTransferIn, Amount: 3_250_000 + int64(i), BalanceAfter: 12_500_000 + 3*int64(i),
			Counterparty: "payday-employer-07", TransferID: fmt.Sprintf("payday-t-%08d", i*31),
			Memo: fmt.Sprintf("%d월 급여", i%12+1), BookedAt: banksync.Timestamp(booked.Add(time.Duration(i) * 1234567 * time.Microsecond)),
		}
		v, err := json.Marshal(banksync.EventOf(e))
		if err != nil {
			tb.Fatal(err)
		}
		values[i] = v
	}
	return values
}
