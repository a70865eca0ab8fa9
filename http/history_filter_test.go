package http_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestChannelFilteredHistory: kind and q reach the history through the API.
func TestChannelFilteredHistory(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		s := newStack(t, stackOptions{store: kind})
		s.setup(t, []string{"a1:cust-a", "a2:cust-a"}, "a1=1000", "a1=7")
		if st, m := s.submit(t, "cust-a", "k-1", map[string]any{"from_account": "a1", "to_account": "a2", "amount": 10, "memo": "Rent 월세"}); st != 201 && st != 200 {
			t.Fatalf("transfer = %d %v", st, m)
		}
		for _, tc := range []struct {
			query string
			want  []float64
		}{
			{"", []float64{3, 2, 1}},
			{"?kind=all", []float64{3, 2, 1}},
			{"?kind=out", []float64{3}},
			{"?kind=in", []float64{2, 1}},
			{"?q=%EC%9B%94%EC%84%B8", []float64{3}}, // 월세
			{"?q=RENT&kind=in", nil},
			{"?q=kb-bank", []float64{2, 1}},
			{"?kind=in&limit=1", []float64{2}},
		} {
			st, page := s.call(t, "cust-a", "GET", "/v1/accounts/a1/transactions"+tc.query, nil)
			if got := seqs(transactions(t, page)); st != 200 || !cmp.Equal(got, tc.want) {
				t.Errorf("%s = %d %v, want %v", tc.query, st, got, tc.want)
			}
		}
	})
}
