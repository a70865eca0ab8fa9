package storetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"banksync"
	"banksync/ledger"
)

// testConcurrent hammers the ledger from many goroutines with transfers,
// deposits, retries of the same transfer id and fences, then checks the
// promises: money conserved (P6), no negative balance, every account's seq
// 1..n without holes, and every transfer executed at most once (P1).
func testConcurrent(t *testing.T, h LedgerHarness) {
	const (
		accountsCount = 20
		workersCount  = 16
		opsPerWorker  = 150
	)
	ctx := context.Background()
	f := openFixture(t, h, ledger.Config{Now: time.Now, BatchSizeMax: 64})
	ids := make([]string, accountsCount)
	for i := range ids {
		ids[i] = fmt.Sprintf("acc-%02d", i)
		f.mustAccount(t, ids[i], 0)
	}

	var (
		mu        sync.Mutex
		completed = map[string]bool{} // transfer ids core said completed
		deposited int64
	)
	var wg sync.WaitGroup
	for w := 0; w < workersCount; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for i := 0; i < opsPerWorker; i++ {
				switch op := rng.IntN(10); {
				case op < 3:
					amount := rng.Int64N(1000) + 1
					ref := fmt.Sprintf("dep-%d-%d", w, i)
					d := banksync.DepositRequest{ExternalRef: ref, AccountID: ids[rng.IntN(accountsCount)], Amount: amount, Sender: "kb"}
					if _, err := f.Deposit(ctx, d); err != nil {
						t.Errorf("deposit: %v", err)
						return
					}
					if _, err := f.Deposit(ctx, d); err != nil { // the other bank retries
						t.Errorf("deposit replay: %v", err)
						return
					}
					mu.Lock()
					deposited += amount
					mu.Unlock()
				case op < 9:
					from := rng.IntN(accountsCount)
					to := (from + 1 + rng.IntN(accountsCount-1)) % accountsCount
					// Ids shared between workers: concurrent duplicate submits
					// of one transfer, some with a conflicting body.
					id := fmt.Sprintf("t-%d", rng.IntN(workersCount*opsPerWorker/2))
					req := banksync.TransferRequest{TransferID: id, FromAccount: ids[from], ToAccount: ids[to],
						Amount: rng.Int64N(500) + 1, Deadline: time.Now().Add(time.Minute)}
					out, err := f.Transfer(ctx, req)
					if err != nil && banksync.ErrorCode(err) != banksync.EIDEMPOTENCY {
						t.Errorf("transfer: %v", err)
						return
					}
					if err == nil && out.Status == banksync.StatusCompleted {
						mu.Lock()
						completed[id] = true
						mu.Unlock()
					}
				default:
					if _, err := f.Fence(ctx, fmt.Sprintf("t-%d", rng.IntN(workersCount*opsPerWorker/2))); err != nil {
						t.Errorf("fence: %v", err)
						return
					}
				}
			}
		}(w)
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	tot, err := f.store.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tot.Balances != deposited || tot.Deposits != deposited || tot.NegativeAccounts != 0 {
		t.Fatalf("totals = %+v; want balances = deposits = %d and no negative account", tot, deposited)
	}
	legs := map[string]int{} // transfer id -> entries booked
	for _, id := range ids {
		for _, e := range CheckAccountChain(t, f.store, id) {
			if e.TransferID != "" {
				legs[e.TransferID]++
			}
		}
	}
	for id, n := range legs {
		if n != 2 {
			t.Errorf("transfer %s booked %d entries, want 2 (at most once)", id, n)
		}
		if !completed[id] {
			t.Errorf("transfer %s executed but no caller was told completed", id)
		}
	}
	for id := range completed {
		if legs[id] != 2 {
			t.Errorf("transfer %s reported completed but booked %d entries", id, legs[id])
		}
	}
	t.Logf("%d transfers executed, %d won deposited", len(legs), deposited)
}
