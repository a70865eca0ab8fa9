package banksync

import "time"

// Transfer statuses as core reports them.
const (
	StatusCompleted = "completed"
	StatusRejected  = "rejected"
	StatusUnknown   = "unknown" // core has never seen the id (read-only lookups only)
)

// Reasons a transfer is rejected. Each rejection is recorded, so the same
// transfer id always answers the same outcome.
const (
	ReasonInsufficientFunds = "insufficient_funds"
	ReasonAccountNotFound   = "account_not_found"
	ReasonExpired           = "expired"          // arrived after its deadline
	ReasonFenced            = "fenced"           // the id was fenced before it arrived
	ReasonBalanceOverflow   = "balance_overflow" // the credit would overflow
)

// TransferRequest asks core to move Amount from FromAccount to ToAccount.
// TransferID is the idempotency key; core refuses to execute after Deadline.
type TransferRequest struct {
	TransferID  string
	FromAccount string
	ToAccount   string
	Amount      int64
	Deadline    time.Time
	Memo        string
}

// TransferOutcome is core's decision on a transfer id. Entries holds the debit
// and the credit of a completed transfer, in that order.
type TransferOutcome struct {
	TransferID string  `json:"transfer_id"`
	Status     string  `json:"status"`
	Reason     string  `json:"reason,omitempty"`
	Entries    []Entry `json:"entries,omitempty"`
}

// DepositRequest is money arriving from another bank, idempotent by
// ExternalRef.
type DepositRequest struct {
	ExternalRef string
	AccountID   string
	Amount      int64
	Sender      string
}

// DepositOutcome is the recorded result of a deposit.
type DepositOutcome struct {
	ExternalRef string `json:"external_ref"`
	Status      string `json:"status"`
	Entry       Entry  `json:"entry"`
}
