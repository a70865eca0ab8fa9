package http

import (
	"reflect"
	"strings"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"

	"banksync"
)

// requestShapes are the bodies the handlers decode, a fresh value of each.
// The channel's and the admin API's are declared in their handlers; these
// have the same fields.
var requestShapes = map[string]func() any{
	"transfer": func() any { return new(transferJSON) },
	"deposit":  func() any { return new(depositJSON) },
	"deposits batch": func() any {
		return new(struct {
			Deposits *[]depositJSON `json:"deposits"`
		})
	},
	"account": func() any {
		return new(struct {
			Owner     *string `json:"owner"`
			AccountID string  `json:"account_id"`
		})
	},
	"channel transfer": func() any {
		return new(struct {
			FromAccount *string `json:"from_account"`
			ToAccount   *string `json:"to_account"`
			Amount      *int64  `json:"amount"`
			Memo        string  `json:"memo"`
		})
	},
	"replay": func() any {
		return new(struct {
			All     bool   `json:"all"`
			Account string `json:"account"`
		})
	},
}

// FuzzStrictDecoding holds decodeBody's one-pass decoder to what makes it
// safe: any body it accepts, the careful decoder accepts too, with the
// same value, for every request shape. A body it refuses goes to the
// careful decoder anyway, so refusals are decodeCareful's alone.
func FuzzStrictDecoding(f *testing.F) {
	for _, seed := range []string{
		`{"transfer_id":"t1","from_account":"a","to_account":"b","amount":100,"deadline":"2026-01-02T03:04:05.123456789Z","memo":"lunch"}`,
		`{"transfer_id":"t1","deadline":"2026-01-02T03:04:05+09:00","amount":1}`,
		`{"deadline":"2026\u002d01-02T03:04:05Z"}`,
		`{"deadline":"2026-01-02T3:04:05Z"}`,
		`{"deadline":"2026-01-02T03:04:05,5Z"}`,
		`{"deadline":null,"amount":null,"memo":null}`,
		`{"Amount":1}`,
		`{"amount":1,"amount":2}`,
		`{"amount":1.0}`, `{"amount":1e3}`, `{"amount":-0}`, `{"amount":"1"}`, `{"amount":9223372036854775808}`,
		`{"memo":"a\ud800b"}`, "{\"memo\":\"\xff\"}",
		`{"external_ref":"kb-1","account_id":"a","amount":5,"sender":"kb"}`,
		`{"deposits":[{"external_ref":"kb-1","account_id":"a","amount":5,"sender":"kb"}]}`,
		`{"deposits":null}`, `{"deposits":[null]}`,
		`{"owner":"c1","account_id":"a"}`,
		`{"all":true}`, `{"all":"true"}`,
		`null`, ` {} `, `{}{}`, `[]`, ``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for name, shape := range requestShapes {
			strict := shape()
			if jsonv2.Unmarshal(body, strict, strictDecoding) != nil {
				continue
			}
			careful := shape()
			if err := decodeCareful(body, careful); err != nil {
				t.Fatalf("%s: %q: the strict decoder took it, the careful one refused it: %v", name, body, err)
			}
			if !reflect.DeepEqual(strict, careful) {
				t.Fatalf("%s: %q: the decoders read different values:\nstrict  %+v\ncareful %+v", name, body, strict, careful)
			}
		}
	})
}

// TestDecodeBodyFallsBack checks bodies the strict decoder refuses: those
// encoding/json takes are still taken, with its values, and the others
// are refused in its words (the time's message is time's, cut short).
func TestDecodeBodyFallsBack(t *testing.T) {
	str := func(s string) *string { return &s }
	for _, tc := range []struct {
		body    string
		want    transferJSON
		wantErr string
	}{
		{body: `{"Transfer_ID":"t1","memo":"x"}`, want: transferJSON{TransferID: str("t1"), Memo: "x"}},
		{body: "{\"memo\":\"a\xffb\"}", want: transferJSON{Memo: "a\ufffdb"}},
		{body: `{"memo":"x","MEMO":null}`, want: transferJSON{Memo: "x"}},
		{body: `{"memo":"x","fee":1}`, wantErr: "unknown field \"fee\""},
		{body: `{"memo":"x","memo":"y"}`, wantErr: "field memo appears twice"},
		{body: `{"amount":1.5}`, wantErr: "amount must be a whole number of won"},
		{body: `{"deadline":"2026\u002d01-02T03:04:05Z"}`, wantErr: "request body is not valid: parsing time "},
	} {
		var got transferJSON
		err := decodeBody([]byte(tc.body), &got)
		switch {
		case tc.wantErr != "" && (err == nil || !strings.HasPrefix(banksync.ErrorMessage(err), tc.wantErr)):
			t.Errorf("%s: error %v, want one starting %q", tc.body, err, tc.wantErr)
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.body, err)
		case tc.wantErr == "" && !reflect.DeepEqual(got, tc.want):
			t.Errorf("%s: got %+v, want %+v", tc.body, got, tc.want)
		}
	}
}
