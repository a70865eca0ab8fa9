package postgres_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"banksync"
	"banksync/ledger"
)

// benchAccounts is large enough that a batch of transfers touches mostly
// distinct accounts, as a bank's traffic does.
const benchAccounts = 10_000

// BenchmarkCommit measures group commits of transfers: per transfer two
// entries, one transfer record and up to two account updates. The ledger
// needs ≥ 5,000 transfers/s; the 500-transfer batch is the headline figure.
func BenchmarkCommit(b *testing.B) {
	for _, size := range []int{1, 100, 500, 2000} {
		b.Run(fmt.Sprintf("transfers=%d", size), func(b *testing.B) {
			benchmarkCommit(b, size)
		})
	}
}

func benchmarkCommit(b *testing.B, transfersPerBatch int) {
	ctx := context.Background()
	s, _ := mustOpenLedger(b)
	m := newBenchModel()
	mustCommit(b, s, m.openAccounts())

	batches := make([]*ledger.Batch, b.N)
	for i := range batches {
		batches[i] = m.transfers(transfersPerBatch)
	}
	b.ResetTimer()
	for i := range b.N {
		if err := s.Commit(ctx, batches[i]); err != nil {
			b.Fatalf("Commit: %v", err)
		}
	}
	b.StopTimer()
	elapsed := b.Elapsed().Seconds()
	transfers := float64(b.N * transfersPerBatch)
	b.ReportMetric(transfers/elapsed, "transfers/s")
	b.ReportMetric(2*transfers/elapsed, "entries/s")
}

// benchModel tracks balances and sequence numbers as the ledger would, so
// every generated batch is one the store must accept.
type benchModel struct {
	rng      *rand.Rand
	accounts []banksync.Account
	position int64
	transfer int
}

func newBenchModel() *benchModel {
	m := &benchModel{rng: rand.New(rand.NewPCG(1, 2))}
	now := banksync.Timestamp(time.Now())
	for i := range benchAccounts {
		m.accounts = append(m.accounts, banksync.Account{
			ID: "acct-" + strconv.Itoa(i), Owner: "owner-" + strconv.Itoa(i), CreatedAt: now,
		})
	}
	return m
}

// openAccounts creates every account with a deposit large enough for any
// number of one-won transfers out of it.
func (m *benchModel) openAccounts() *ledger.Batch {
	const opening = 1_000_000_000
	now := banksync.Timestamp(time.Now())
	b := &ledger.Batch{}
	for i := range m.accounts {
		a := &m.accounts[i]
		m.position++
		a.Balance, a.LastSeq = opening, 1
		ref := "open-" + a.ID
		b.Entries = append(b.Entries, banksync.Entry{AccountID: a.ID, Seq: 1, Position: m.position,
			Kind: banksync.KindDeposit, Amount: opening, BalanceAfter: opening,
			Counterparty: "Other Bank", ExternalRef: ref, Memo: "opening", BookedAt: now})
		b.Deposits = append(b.Deposits, ledger.DepositRecord{ExternalRef: ref, BodyHash: "h",
			AccountID: a.ID, Amount: opening, Seq: 1, BookedAt: now})
		b.NewAccounts = append(b.NewAccounts, *a)
	}
	return b
}

func (m *benchModel) transfers(n int) *ledger.Batch {
	now := banksync.Timestamp(time.Now())
	b := &ledger.Batch{}
	touched := make(map[int]bool)
	for range n {
		from := m.rng.IntN(len(m.accounts))
		to := (from + 1 + m.rng.IntN(len(m.accounts)-1)) % len(m.accounts)
		src, dst := &m.accounts[from], &m.accounts[to]
		m.transfer++
		id := "t-" + strconv.Itoa(m.transfer)
		const amount = 1
		src.Balance -= amount
		src.LastSeq++
		dst.Balance += amount
		dst.LastSeq++
		m.position += 2
		b.Entries = append(b.Entries,
			banksync.Entry{AccountID: src.ID, Seq: src.LastSeq, Position: m.position - 1,
				Kind: banksync.KindTransferOut, Amount: -amount, BalanceAfter: src.Balance,
				Counterparty: dst.ID, TransferID: id, Memo: "benchmark", BookedAt: now},
			banksync.Entry{AccountID: dst.ID, Seq: dst.LastSeq, Position: m.position,
				Kind: banksync.KindTransferIn, Amount: amount, BalanceAfter: dst.Balance,
				Counterparty: src.ID, TransferID: id, Memo: "benchmark", BookedAt: now})
		b.Transfers = append(b.Transfers, ledger.TransferRecord{ID: id, BodyHash: "h-" + id,
			Status: banksync.StatusCompleted, FromAccount: src.ID, ToAccount: dst.ID,
			Amount: amount, FromSeq: src.LastSeq, ToSeq: dst.LastSeq, DecidedAt: now})
		touched[from], touched[to] = true, true
	}
	for i := range touched {
		b.Accounts = append(b.Accounts, m.accounts[i])
	}
	return b
}
