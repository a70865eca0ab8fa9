package banksync

import "time"

// EntryKind says why an entry moved money.
type EntryKind string

const (
	KindDeposit     EntryKind = "deposit"      // money from another bank
	KindTransferOut EntryKind = "transfer_out" // debit of an internal transfer
	KindTransferIn  EntryKind = "transfer_in"  // credit of an internal transfer
)

// Entry is one line of an account's ledger. Seq numbers an account's entries
// 1, 2, 3 … without holes; Position is the global commit order across all
// accounts and doubles as the entry's id and the outbox position.
type Entry struct {
	AccountID    string    `json:"account_id"`
	Seq          int64     `json:"seq"`
	Position     int64     `json:"entry_id"`
	Kind         EntryKind `json:"kind"`
	Amount       int64     `json:"amount"` // signed: negative for transfer_out
	BalanceAfter int64     `json:"balance_after"`
	Counterparty string    `json:"counterparty"` // other account, or the sending bank's name
	TransferID   string    `json:"transfer_id,omitempty"`
	ExternalRef  string    `json:"external_ref,omitempty"`
	Memo         string    `json:"memo"`
	BookedAt     time.Time `json:"booked_at"`
}

// Equal reports whether e and o are the same entry, field by field, their
// booking times as instants (whatever their time zone).
func (e Entry) Equal(o Entry) bool {
	et, ot := e.BookedAt, o.BookedAt
	e.BookedAt, o.BookedAt = time.Time{}, time.Time{}
	return e == o && et.Equal(ot)
}
