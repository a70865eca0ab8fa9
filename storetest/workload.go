package storetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"banksync"
	"banksync/ledger"
)

// Book opens accounts named acc-0 … and makes ops deposits and transfers
// among them from eight goroutines, then returns every committed entry in
// position order: an outbox with interleaved accounts for relay tests.
func Book(tb testing.TB, l *ledger.Ledger, accounts, ops int) []banksync.Entry {
	tb.Helper()
	ctx := context.Background()
	for i := 0; i < accounts; i++ {
		if _, _, err := l.CreateAccount(ctx, fmt.Sprintf("acc-%d", i), "c"); err != nil {
			tb.Fatal(err)
		}
	}
	const workers = 8
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < ops; i += workers {
				a := fmt.Sprintf("acc-%d", i%accounts)
				var err error
				if i%4 == 0 {
					_, err = l.Transfer(ctx, banksync.TransferRequest{TransferID: fmt.Sprint("t-", i), FromAccount: a,
						ToAccount: fmt.Sprintf("acc-%d", (i+1)%accounts), Amount: 5, Deadline: time.Now().Add(time.Minute)})
				} else {
					_, err = l.Deposit(ctx, banksync.DepositRequest{ExternalRef: fmt.Sprint("d-", i), AccountID: a, Amount: 100, Sender: "kb"})
				}
				if err != nil {
					tb.Error(err)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	all, err := l.Store().EntriesAfter(ctx, 0, 1<<30)
	if err != nil {
		tb.Fatal(err)
	}
	return all
}
