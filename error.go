package banksync

import (
	"errors"
	"fmt"
)

// Error codes are stable, machine-readable and part of the API. The HTTP layer
// maps each to a status in one table; domain code only ever returns codes.
const (
	// Bad input (4xx): nothing was written.
	EINVALID        = "invalid_request"        // malformed or missing field
	EINVALIDAMOUNT  = "invalid_amount"         // not a positive integer within the limit
	ESAMEACCOUNT    = "same_account"           // transfer to the source account itself
	EIDEMPOTENCY    = "idempotency_key_reused" // same key, different body
	ENOTFOUND       = "not_found"              // no such object (or not yours)
	EACCOUNTMISSING = "account_not_found"      // an account named in the request does not exist
	EACCOUNTEXISTS  = "account_exists"         // account id taken by another owner
	EUNAUTHORIZED   = "unauthorized"           // missing or bad credentials
	ETOOLARGE       = "request_too_large"      // body over its limit
	EOVERFLOW       = "balance_overflow"       // the credit would overflow int64
	EINPROGRESS     = "transfer_in_progress"   // the account already has a pending transfer
	EFAILED         = "transfer_failed"        // core refused the transfer; the reason says why
	ERATELIMITED    = "rate_limited"           // too many requests from this customer; Retry-After says when to try again

	// Server side (5xx).
	EUNAVAILABLE = "unavailable" // a dependency failed; safe to retry with the same key
	EINTERNAL    = "internal"    // a bug; logged, never shown raw
)

// Error is the one error type that crosses package boundaries with a code.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("banksync error: code=%s message=%s", e.Code, e.Message)
}

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err: the code of an *Error in its chain,
// EINTERNAL for any other error, and "" for nil.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	default:
		return EINTERNAL
	}
}

// ErrorMessage returns the human message of an *Error, or a generic text for
// anything else so internal details never reach a customer.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}
