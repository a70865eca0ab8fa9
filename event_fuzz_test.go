package banksync_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"banksync"
)

// FuzzDecodeLedgerEvent feeds record values a broker could hand the
// consumer. DecodeLedgerEvent must never panic, and an event it accepts
// must survive being published again: encoded, it decodes to the same event
// and encodes to the same bytes, so a dead letter replays as it arrived.
func FuzzDecodeLedgerEvent(f *testing.F) {
	addLedgerEventSeeds(f)
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

// FuzzDecodeLedgerEventDifferential holds DecodeLedgerEvent to the decoder
// it replaced (issue 18): encoding/json and the same checks, plus the rules
// docs/events.md adds, which decodeLedgerEventOracle spells out. Both must
// accept the same values and decode them to identical events, booking
// times down to their zone.
func FuzzDecodeLedgerEventDifferential(f *testing.F) {
	addLedgerEventSeeds(f)
	f.Fuzz(func(t *testing.T, value []byte) {
		got, err := banksync.DecodeLedgerEvent(value)
		want, wantErr := decodeLedgerEventOracle(value)
		switch {
		case err != nil && wantErr != nil:
		case err != nil:
			t.Fatalf("%q: refused (%v), want %+v", value, err, want)
		case wantErr != nil:
			t.Fatalf("%q: accepted as %+v, want refused: %v", value, got, wantErr)
		default:
			if d := cmp.Diff(want, got, exactTime); d != "" {
				t.Fatalf("%q: decoded differently (-want +got):\n%s", value, d)
			}
		}
	})
}

// exactTime compares times by instant, offset and location name: an event
// decoded again must book its entry at the very same wall time.
var exactTime = cmp.Comparer(func(a, b time.Time) bool {
	return a.Equal(b) && a.Format(time.RFC3339Nano) == b.Format(time.RFC3339Nano) &&
		a.Location().String() == b.Location().String()
})

// addLedgerEventSeeds adds events as the relay publishes them and the
// inputs where JSON decoders are known to differ.
func addLedgerEventSeeds(f *testing.F) {
	booked := time.Date(2026, 3, 1, 9, 30, 0, 123456789, time.UTC)
	for _, e := range []banksync.Entry{
		{AccountID: "a1", Seq: 1, Position: 1, Kind: banksync.KindDeposit,
			Amount: 500, BalanceAfter: 500, Counterparty: "kb-bank", ExternalRef: "kb-1", BookedAt: booked},
		{AccountID: "a1", Seq: 2, Position: 7, Kind: banksync.KindTransferOut,
			Amount: -200, BalanceAfter: 300, Counterparty: "b1", TransferID: "t1", Memo: "점심", BookedAt: booked.In(time.FixedZone("KST", 9*3600))},
		{AccountID: "payday-000123", Seq: math.MaxInt64, Position: math.MaxInt64, Kind: banksync.KindTransferIn,
			Amount: math.MaxInt64, BalanceAfter: math.MaxInt64, Counterparty: "payday-employer", TransferID: "payday-t-1",
			Memo: "월급 <salary> & \"bonus\" \\ 🎉\u2028", BookedAt: banksync.Timestamp(booked)},
		{AccountID: "Z", Seq: 1, Position: 1, Kind: banksync.KindTransferOut, Amount: math.MinInt64},
		{AccountID: "a1", Seq: 4, Position: 12, Kind: banksync.KindDeposit, Amount: 3_000_000, BalanceAfter: 3_000_300,
			Counterparty: "(주)토스 급여", ExternalRef: "toss-2026-03", BookedAt: booked},
		{AccountID: "a1", Seq: 5, Position: 13, Kind: banksync.KindDeposit, Amount: 1, BalanceAfter: 3_000_301,
			Counterparty: "김철수", ExternalRef: "kb-9", Memo: strings.Repeat("가", banksync.MemoLengthMax), BookedAt: booked},
		{AccountID: "a.b_c:d-e", Seq: 3, Position: 9, Kind: "kind-from-the-future", Memo: "tab\there", BookedAt: booked.In(time.FixedZone("", -(23*3600 + 59*60)))},
	} {
		value, err := json.Marshal(banksync.EventOf(e))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(value)
	}
	const head = `{"version":1,"type":"ledger.entry","event_id":1,"account_id":"a1","seq":1`
	for _, value := range []string{
		``,
		`null`,
		`[]`,
		`1`,
		head + `}`,
		head + `}{}`,
		head + `} `,
		" \t\r\n" + head + "}\n",
		head + `,"unknown":{"x":[1,2,{"y":null}]}}`,
		head + `,"amount":null,"memo":null,"booked_at":null}`,
		`{"version":2,"type":"ledger.entry","event_id":1,"account_id":"a1","seq":1}`,
		`{"version":1,"type":"ledger.entry","event_id":1,"account_id":"../a1","seq":1}`,
		`{"version":1,"type":"ledger.entry","event_id":0,"account_id":"a1","seq":1}`,
		`{"version":1,"type":"ledger.entry","event_id":1,"account_id":"a1","seq":9223372036854775808}`,
		head + `,"amount":-0}`,
		head + `,"amount":1.0}`,
		head + `,"amount":1e2}`,
		head + `,"amount":"1"}`,
		head + `,"kind":1}`,
		head + `,"booked_at":"9999-12-31T23:59:59.999999999-23:59"}`,
		head + `,"booked_at":"0001-01-01T00:00:00Z"}`,
		head + `,"booked_at":"2026-03-01T09:30:00.123456+09:00"}`,
		head + `,"booked_at":"2026-03-01t09:30:00z"}`,
		head + `,"booked_at":"2026-03-01 09:30:00Z"}`,
		head + `,"booked_at":"2026-03-01T09:30:00,5Z"}`,
		head + `,"booked_at":"2026-03-01T24:00:00Z"}`,
		head + `,"booked_at":"yesterday"}`,
		head + `,"booked_at":1}`,
		`{"VERSION":1,"Type":"ledger.entry","event_id":1,"account_id":"a1","seq":1,"seq":2,"memo":"\u0000\ud800"}`,
		head + `,"SEQ":2}`,
		head + `,"seq":2}`,
		head + `,"s\u0065q":2}`,
		head + `,"x":{"a":1,"a":2}}`,
		head + `,"memo":"\ud83c\udf89 \u00e9"}`,
		head + `,"memo":"\udf89"}`,
		head + `,"memo":"\\ud800"}`,
		head + ",\"memo\":\"\xff\"}",
		head + ",\"memo\":\"\x01\"}",
		head + `,"memo":"\u2028<&>"}`,
		head + `,"counterparty":"\u1100\u1175\u11b7\u110e\u1165\u11af\u1109\u116e","memo":"\u200b\u202e"}`,
		head + `,"counterparty":"KB국민 홍길동","memo":"🧑\u200d💻"}`,
	} {
		f.Add([]byte(value))
	}
}

// decodeLedgerEventOracle is the decoder before issue 18 (encoding/json
// and DecodeLedgerEvent's checks) with the rules docs/events.md adds for
// input core never produces: the value is valid UTF-8, unpaired surrogate
// escapes included; no object names a member twice; and a field name
// matches only exactly, any other name being an unknown field; and
// booked_at separates fractional seconds with a full stop, never the comma
// time.Parse also takes.
func decodeLedgerEventOracle(b []byte) (banksync.LedgerEvent, error) {
	if !utf8.Valid(b) || unpairedSurrogate(b) {
		return banksync.LedgerEvent{}, errors.New("invalid UTF-8")
	}
	if name, ok := duplicateName(b); ok {
		return banksync.LedgerEvent{}, fmt.Errorf("duplicate name %q", name)
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(b, &members); err != nil {
		return banksync.LedgerEvent{}, err
	}
	fields := make(map[string]json.RawMessage)
	for _, f := range reflect.VisibleFields(reflect.TypeFor[banksync.LedgerEvent]()) {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if v, ok := members[name]; ok {
			fields[name] = v
		}
	}
	var booked string
	if json.Unmarshal(fields["booked_at"], &booked) == nil && strings.Contains(booked, ",") {
		return banksync.LedgerEvent{}, errors.New("booked_at separates fractional seconds with a comma")
	}
	exact, err := json.Marshal(fields)
	if err != nil {
		return banksync.LedgerEvent{}, err
	}
	return decodeLedgerEventV1(exact)
}

// decodeLedgerEventV1 is DecodeLedgerEvent as it was before issue 18.
func decodeLedgerEventV1(b []byte) (banksync.LedgerEvent, error) {
	var ev banksync.LedgerEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		return ev, fmt.Errorf("decode ledger event: %w", err)
	}
	switch {
	case ev.Version != banksync.EventSchemaVersion || ev.Type != banksync.EventType:
		return ev, fmt.Errorf("decode ledger event: unsupported version %d type %q", ev.Version, ev.Type)
	case !banksync.ValidID(ev.AccountID) || ev.Seq < 1 || ev.EventID < 1:
		return ev, fmt.Errorf("decode ledger event: bad account %q, seq %d or event id %d", ev.AccountID, ev.Seq, ev.EventID)
	}
	return ev, nil
}

// duplicateName reports the first name an object of b holds twice,
// compared unescaped. It reports nothing for a value that is not JSON.
func duplicateName(b []byte) (string, bool) {
	type object struct {
		names    map[string]bool
		wantName bool
	}
	var stack []*object // nil for an array
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		var top *object
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if name, ok := tok.(string); ok && top != nil && top.wantName {
			if top.names[name] {
				return name, true
			}
			top.names[name], top.wantName = true, false
			continue
		}
		switch tok {
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
			continue
		}
		if top != nil {
			top.wantName = true // tok begins the value of a member
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &object{names: make(map[string]bool), wantName: true})
		case json.Delim('['):
			stack = append(stack, nil)
		}
	}
}

// unpairedSurrogate reports whether a string in b escapes half a UTF-16
// surrogate pair, which encoding/json decodes to U+FFFD.
func unpairedSurrogate(b []byte) bool {
	inString := false
	for i := 0; i < len(b); i++ {
		switch {
		case !inString:
			inString = b[i] == '"'
		case b[i] == '"':
			inString = false
		case b[i] == '\\' && i+1 < len(b) && b[i+1] == 'u':
			r := hexRune(b[i+2:])
			switch {
			case 0xd800 <= r && r < 0xdc00:
				if len(b) < i+12 || b[i+6] != '\\' || b[i+7] != 'u' {
					return true
				}
				if r2 := hexRune(b[i+8:]); r2 < 0xdc00 || r2 >= 0xe000 {
					return true
				}
				i += 11
			case 0xdc00 <= r && r < 0xe000:
				return true
			default:
				i += 5
			}
		case b[i] == '\\':
			i++
		}
	}
	return false
}

// hexRune returns the rune of four hex digits at the start of b, or -1.
func hexRune(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	r, err := strconv.ParseUint(string(b[:4]), 16, 16)
	if err != nil {
		return -1
	}
	return rune(r)
}
