package banksync

import "time"

// Account is a core ledger account. Balance is whole won and never negative;
// LastSeq is the sequence number of the account's newest entry (0 when none).
type Account struct {
	ID        string    `json:"account_id"`
	Owner     string    `json:"owner"`
	Balance   int64     `json:"balance"`
	LastSeq   int64     `json:"last_seq"`
	CreatedAt time.Time `json:"created_at"`
}
