package http_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/text/unicode/norm"

	"banksync"
	"banksync/channel"
)

// TestDepositorNamesInHistory: on SQLite and PostgreSQL, deposits from
// depositors named as other banks send them (입금자명), composed in NFD,
// are booked, stored and shown to the customer in NFC, and so is a
// 50-character Korean memo (150 bytes, refused when memos were counted in
// bytes). The NFC and NFD forms of one request are the same request for
// idempotency; neither form is left anywhere in either database but NFC.
func TestDepositorNamesInHistory(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		s := newStack(t, stackOptions{store: kind})
		s.setup(t, []string{"a1:cust-a", "b1:cust-b"})
		names := []string{"김철수", "(주)토스 급여", "KB국민 홍길동", "José Müller"}
		deposit := func(ref, sender string) (int, map[string]any) {
			return s.core.call(t, "POST", "/core/v1/deposits", map[string]any{"external_ref": ref, "account_id": "a1", "amount": 10_000, "sender": sender})
		}
		for i, name := range names {
			ref := fmt.Sprintf("other-bank-%d", i)
			st, first := deposit(ref, norm.NFD.String(name))
			if got := first["entry"].(map[string]any)["counterparty"]; st != 200 || got != name {
				t.Fatalf("deposit from %q in NFD = %d %v, want 200 with counterparty %q", name, st, first, name)
			}
			if st, again := deposit(ref, name); st != 200 || !cmp.Equal(again, first) {
				t.Fatalf("the same deposit from %q in NFC = %d %v, want the first answer %v", name, st, again, first)
			}
		}
		if st, m := deposit("other-bank-0", "김철수 님"); st != 422 || errCode(m) != banksync.EIDEMPOTENCY {
			t.Fatalf("deposit other-bank-0 again from another name = %d %v, want 422 %s", st, m, banksync.EIDEMPOTENCY)
		}

		memo := strings.Repeat("점심값", 16) + "감사" // 50 characters, 150 bytes
		tr := map[string]any{"from_account": "a1", "to_account": "b1", "amount": 1_000, "memo": norm.NFD.String(memo)}
		st, done := s.submit(t, "cust-a", "k-memo", tr)
		if st != 200 || done["state"] != channel.StateCompleted || done["memo"] != memo {
			t.Fatalf("transfer with a 50-character Korean memo in NFD = %d %v, want 200 completed with the memo in NFC", st, done)
		}
		tr["memo"] = memo
		if st, again := s.submit(t, "cust-a", "k-memo", tr); st != 200 || !cmp.Equal(again, done) {
			t.Fatalf("the same transfer with the memo in NFC = %d %v, want the first answer %v", st, again, done)
		}

		st, page := s.call(t, "cust-a", "GET", "/v1/accounts/a1/transactions", nil)
		if st != 200 {
			t.Fatalf("history = %d %v", st, page)
		}
		var got []string
		for _, e := range transactions(t, page) {
			got = append(got, fmt.Sprint(e["counterparty"], " ", e["memo"]))
		}
		want := []string{"b1 " + memo, "José Müller ", "KB국민 홍길동 ", "(주)토스 급여 ", "김철수 "}
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("history's counterparties and memos (-want +got):\n%s", d)
		}

		for _, db := range []map[string][]string{s.dumpCore(t), s.dumpChannel(t)} {
			all := fmt.Sprint(db)
			for _, text := range append(names, memo) {
				if nfd := norm.NFD.String(text); nfd != text && strings.Contains(all, nfd) {
					t.Fatalf("a database holds %q in NFD: %v", text, db)
				}
			}
			if !strings.Contains(all, "김철수") {
				t.Fatalf("a database lacks the name 김철수: %v", db)
			}
		}
	})
}
