package http_test

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	bhttp "banksync/http"
)

// TestChannelStatement downloads a statement and checks it row by row
// against the history: the same entries oldest first, each with its balance
// after, the range's days in the customer's time zone, the seq the history
// is in step through, and a memo that would be a formula kept as text.
func TestChannelStatement(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		s := newStack(t, stackOptions{store: kind})
		s.setup(t, []string{"a1:cust-a", "a2:cust-a"}, "a1=1000", "a1=7")
		if st, m := s.submit(t, "cust-a", "k-1", map[string]any{"from_account": "a1", "to_account": "a2", "amount": 10, "memo": "=HYPERLINK(\"x\")"}); st != 201 && st != 200 {
			t.Fatalf("transfer = %d %v", st, m)
		}
		_, page := s.call(t, "cust-a", "GET", "/v1/accounts/a1/transactions", nil)
		history := transactions(t, page) // newest first
		if len(history) != 3 {
			t.Fatalf("history = %v, want 3 entries", history)
		}
		seoul, err := time.LoadLocation("Asia/Seoul")
		if err != nil {
			t.Fatal(err)
		}
		day := func(e map[string]any) string {
			at, err := time.Parse(time.RFC3339Nano, e["booked_at"].(string))
			if err != nil {
				t.Fatal(err)
			}
			return at.In(seoul).Format(time.DateOnly)
		}
		from, to := day(history[2]), day(history[0])

		st, raw, hdr := s.do(t, "cust-a", "GET", "/v1/accounts/a1/statement?from="+from+"&to="+to+"&tz=Asia/Seoul", nil)
		if st != 200 {
			t.Fatalf("statement = %d %s", st, raw)
		}
		if ct := hdr.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
			t.Errorf("Content-Type = %q", ct)
		}
		if cd, want := hdr.Get("Content-Disposition"), fmt.Sprintf(`attachment; filename="statement-a1-%s-%s.csv"`, from, to); cd != want {
			t.Errorf("Content-Disposition = %q, want %q", cd, want)
		}
		if got := hdr.Get(bhttp.HeaderSyncedSeq); got != "3" {
			t.Errorf("%s = %q, want 3", bhttp.HeaderSyncedSeq, got)
		}
		body, ok := bytes.CutPrefix(raw, []byte("\uFEFF"))
		if !ok {
			t.Fatalf("statement does not start with a byte order mark: %q", raw)
		}
		rows, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
		if err != nil {
			t.Fatalf("statement is not CSV: %v\n%s", err, body)
		}
		var want [][]string
		want = append(want, []string{"seq", "booked_at", "kind", "amount", "balance_after", "counterparty", "memo", "reference"})
		for i := len(history) - 1; i >= 0; i-- {
			e := history[i]
			at, _ := time.Parse(time.RFC3339Nano, e["booked_at"].(string))
			memo, ref := e["memo"].(string), e["external_ref"]
			if id, ok := e["transfer_id"]; ok {
				ref = id
			}
			if memo != "" && memo[0] == '=' {
				memo = "'" + memo
			}
			want = append(want, []string{strconv.Itoa(int(e["seq"].(float64))), at.In(seoul).Format(time.RFC3339), e["kind"].(string),
				strconv.Itoa(int(e["amount"].(float64))), strconv.Itoa(int(e["balance_after"].(float64))),
				e["counterparty"].(string), memo, ref.(string)})
		}
		if d := cmp.Diff(want, rows); d != "" {
			t.Fatalf("statement rows (-want +got):\n%s", d)
		}
		if rows[3][6] != `'=HYPERLINK("x")` {
			t.Errorf("the formula memo's cell = %q, want it kept as text", rows[3][6])
		}

		// A range before every entry holds the header alone.
		st, raw, _ = s.do(t, "cust-a", "GET", "/v1/accounts/a1/statement?from=2020-01-01&to=2020-12-31", nil)
		if rows, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(raw, []byte("\uFEFF")))).ReadAll(); st != 200 || err != nil || len(rows) != 1 {
			t.Fatalf("statement of 2020 = %d %q (%v), want the header row alone", st, raw, err)
		}
	})
}
