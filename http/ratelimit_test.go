package http_test

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"banksync"
	bhttp "banksync/http"
)

// TestChannelRateLimits floods the channel as one customer: they get 429
// with Retry-After, while another customer's reads keep succeeding at
// normal speed, and a transfer refused for the rate creates nothing.
func TestChannelRateLimits(t *testing.T) {
	s := newStack(t, stackOptions{
		transferLimit: bhttp.RateLimit{Rate: 1, Burst: 2},
		readLimit:     bhttp.RateLimit{Rate: 20, Burst: 20},
	})
	s.setup(t, []string{"a1:cust-a", "b1:cust-b"}, "a1=1000", "b1=1000")

	var (
		mu                sync.Mutex
		floodOK, limited  int
		badRetry, other   []string
		wg                sync.WaitGroup
		stop              = make(chan struct{})
		otherSlowest      time.Duration
		otherOK, otherAll int
	)
	floodStart := time.Now()
	for range 8 { // the flood
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				st, raw, h := s.do(t, "cust-a", "GET", "/v1/accounts", nil)
				mu.Lock()
				switch {
				case st == 200:
					floodOK++
				case st == 429:
					limited++
					if n, err := strconv.Atoi(h.Get("Retry-After")); err != nil || n < 1 || !strings.Contains(string(raw), banksync.ERATELIMITED) {
						badRetry = append(badRetry, fmt.Sprintf("Retry-After %q, body %s", h.Get("Retry-After"), raw))
					}
				default:
					other = append(other, fmt.Sprintf("%d %s", st, raw))
				}
				mu.Unlock()
			}
		})
	}
	for range 20 { // another customer, meanwhile
		start := time.Now()
		st, _, _ := s.do(t, "cust-b", "GET", "/v1/accounts", nil)
		otherSlowest = max(otherSlowest, time.Since(start))
		otherAll++
		if st == 200 {
			otherOK++
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	budget := 20 + int(20*time.Since(floodStart).Seconds()) + 1 // the burst, then 20/s
	if limited == 0 || floodOK > budget {
		t.Errorf("flooding customer: %d answered, %d limited; want at most %d answered", floodOK, limited, budget)
	}
	if len(badRetry) > 0 || len(other) > 0 {
		t.Errorf("429s without a good Retry-After or code: %v; other answers: %v", badRetry, other)
	}
	if otherOK != otherAll || otherSlowest > time.Second {
		t.Errorf("the other customer: %d of %d reads answered, slowest %v; want all, promptly", otherOK, otherAll, otherSlowest)
	}
	t.Logf("flood: %d answered, %d refused with 429; other customer: %d/%d, slowest %v", floodOK, limited, otherOK, otherAll, otherSlowest)

	// Transfers have their own budget: a burst of 2, then 429, and a
	// refused transfer is not created.
	var statuses []int
	for i := range 4 {
		st, _ := s.submit(t, "cust-a", fmt.Sprint("rate-", i), map[string]any{"from_account": "a1", "to_account": "b1", "amount": 10})
		statuses = append(statuses, st)
	}
	if statuses[0] != 200 || statuses[1] != 200 || statuses[2] != 429 || statuses[3] != 429 {
		t.Fatalf("four transfers at once = %v; want 200 200 429 429", statuses)
	}
	if st, m := s.core.call(t, "GET", "/core/v1/accounts/a1", nil); st != 200 || m["balance"] != float64(980) {
		t.Fatalf("a1 at core = %d %v; want 2 transfers of 10 taken, no more", st, m)
	}
}
