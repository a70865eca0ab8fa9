package kafka

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"banksync"
)

// FuzzDeadLetterOf feeds dead-letter records: any value, and any headers
// the original record carried (rawHeaders, one "key:value" a line). The
// parser must never panic nor fail; it decodes exactly the values
// DecodeLedgerEvent accepts, as that event, and marks the others undecodable; and the headers Consumer.deadLetter appends
// after the original ones are read back as written, whatever came before.
func FuzzDeadLetterOf(f *testing.F) {
	event := []byte(`{"version":1,"type":"ledger.entry","event_id":9,"account_id":"a1","seq":3,"kind":"deposit","amount":500,` +
		`"balance_after":900,"counterparty":"kb-bank","external_ref":"kb-1","memo":"","booked_at":"2026-03-01T09:30:00.123Z"}`)
	at := time.Date(2026, 3, 1, 9, 31, 0, 5, time.UTC).UnixNano()
	f.Add(event, []byte(""), "apply: account a1 expects seq 2", 8, int32(3), int64(1041), at)
	f.Add(event, []byte("traceparent:00-abc-01\n"+HeaderDLQAttempts+":99\n"+HeaderDLQAt+":yesterday"), "", 1, int32(0), int64(0), at)
	f.Add(event, []byte(HeaderDLQPartition+":2147483648\n"+HeaderDLQOffset+":-1\n"+HeaderDLQReason), "\x00\xff", -1, int32(-1), int64(-1), int64(0))
	f.Add([]byte(`{"version":1}`), []byte(HeaderDLQReason+":x"), "x", 0, int32(1), int64(1), at)
	f.Add([]byte(""), []byte(""), "", 0, int32(0), int64(0), int64(0))
	f.Fuzz(func(t *testing.T, value, rawHeaders []byte, reason string, attempts int, partition int32, offset, atNanos int64) {
		ev, evErr := banksync.DecodeLedgerEvent(value)
		// Keyed as the consumer keys it; a key naming another account is
		// tried on the seed whose event is for a1.
		r := &kgo.Record{Key: []byte(ev.AccountID), Value: value, Headers: headersOf(rawHeaders), Partition: 5, Offset: 77}
		if ev.AccountID == "a1" && attempts%2 == 1 {
			r.Key = []byte("a2")
			if d := deadLetterOf(r); d.Undecodable == "" || d.Account() != "a2" {
				t.Fatalf("a letter of a1 keyed a2 reads as %+v; want undecodable, of a2", d)
			}
			r.Key = []byte("a1")
		}
		d := deadLetterOf(r)
		switch {
		case (d.Undecodable == "") != (evErr == nil):
			t.Fatalf("deadLetterOf(%q) undecodable %q, DecodeLedgerEvent error %v", value, d.Undecodable, evErr)
		case d.Partition != 5 || d.Offset != 77:
			t.Fatalf("letter at %d/%d, want 5/77", d.Partition, d.Offset)
		case evErr != nil:
			if d.Event != (banksync.LedgerEvent{}) {
				t.Fatalf("undecodable letter carries event %+v", d.Event)
			}
			return
		}
		if dd := cmp.Diff(ev, d.Event); dd != "" {
			t.Fatalf("letter's event differs from the value's (-value +letter):\n%s", dd)
		}

		// As Consumer.deadLetter writes them.
		when := time.Unix(0, atNanos).UTC()
		r.Headers = append(r.Headers,
			kgo.RecordHeader{Key: HeaderDLQReason, Value: []byte(reason)},
			kgo.RecordHeader{Key: HeaderDLQAttempts, Value: []byte(strconv.Itoa(attempts))},
			kgo.RecordHeader{Key: HeaderDLQPartition, Value: []byte(strconv.Itoa(int(partition)))},
			kgo.RecordHeader{Key: HeaderDLQOffset, Value: []byte(strconv.FormatInt(offset, 10))},
			kgo.RecordHeader{Key: HeaderDLQAt, Value: []byte(when.Format(time.RFC3339Nano))},
		)
		d = deadLetterOf(r)
		want := DeadLetter{Event: ev, Key: string(r.Key), Headers: r.Headers, Reason: reason, Attempts: attempts, FromPartition: partition,
			FromOffset: offset, At: when, Partition: 5, Offset: 77}
		if dd := cmp.Diff(want, d); dd != "" {
			t.Fatalf("letter read back differs from what was written (-written +read):\n%s", dd)
		}
	})
}

// headersOf splits raw into record headers, one "key:value" a line; a line
// without a colon is a key with a nil value.
func headersOf(raw []byte) []kgo.RecordHeader {
	if len(raw) == 0 {
		return nil
	}
	var hs []kgo.RecordHeader
	for _, line := range bytes.Split(raw, []byte("\n")) {
		k, v, _ := bytes.Cut(line, []byte(":"))
		hs = append(hs, kgo.RecordHeader{Key: string(k), Value: v})
	}
	return hs
}

// TestDLQTopicOf: the default ledger topic keeps the default dead-letter
// topic; any other has its own beside it, which the publisher creates and
// the consumer writes to.
func TestDLQTopicOf(t *testing.T) {
	for topic, want := range map[string]string{
		"":                          banksync.TopicLedgerEntriesDLQ,
		banksync.TopicLedgerEntries: banksync.TopicLedgerEntriesDLQ,
		"bench.payday.1":            "bench.payday.1.dlq",
	} {
		if got := DLQTopicOf(topic); got != want {
			t.Errorf("DLQTopicOf(%q) = %q, want %q", topic, got, want)
		}
	}
}
