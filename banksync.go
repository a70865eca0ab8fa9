// Package banksync holds the domain types shared by the core ledger and the
// channel tier: accounts, ledger entries, transfers, deposits, the ledger
// event published on Kafka, and coded errors. It depends on nothing else in
// the module.
package banksync

import (
	"math"
	"time"
)

// idLengthMax limits identifiers. Ids are opaque to the ledger but bounded
// and plain so they are safe in URLs, Kafka keys and logs.
const idLengthMax = 64

// AmountMaxDefault is the default largest amount of one transfer or deposit
// (₩1,000,000,000). Core and channel must agree on the limit, so both
// default to this one value.
const AmountMaxDefault = 1_000_000_000

// ValidID reports whether s is an acceptable account, customer, transfer or
// external reference id: 1-64 letters, digits or ._:-, starting with a
// letter or digit. (A loop, not a regexp: every request checks several.)
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > idLengthMax {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case i > 0 && (b == '.' || b == '_' || b == ':' || b == '-'):
		default:
			return false
		}
	}
	return true
}

// ValidateAmount checks that an amount of whole won is positive and at most
// amountMax.
func ValidateAmount(amount, amountMax int64) error {
	if amount <= 0 || amount > amountMax {
		return Errorf(EINVALIDAMOUNT, "amount must be a whole number between 1 and %d", amountMax)
	}
	return nil
}

// AddAmount returns a+b and false if the sum overflows int64.
func AddAmount(a, b int64) (int64, bool) {
	if (b > 0 && a > math.MaxInt64-b) || (b < 0 && a < math.MinInt64-b) {
		return 0, false
	}
	return a + b, true
}

// Timestamps are kept at microsecond precision so every store round-trips
// them exactly.
func Timestamp(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }
