// Package http serves banksync's HTTP APIs. It decodes and validates
// requests, calls the domain, and maps error codes to statuses in one table.
package http

import (
	"encoding/json"
	"log/slog"
	"net/http"

	"banksync"
)

// HTTP-only error codes, beside the domain's.
const (
	eUnsupportedMediaType = "unsupported_media_type"
)

// statusOf is the one table from error code to HTTP status.
var statusOf = map[string]int{
	banksync.EINVALID:        http.StatusBadRequest,
	banksync.EINVALIDAMOUNT:  http.StatusUnprocessableEntity,
	banksync.ESAMEACCOUNT:    http.StatusUnprocessableEntity,
	banksync.EIDEMPOTENCY:    http.StatusUnprocessableEntity,
	banksync.EOVERFLOW:       http.StatusUnprocessableEntity,
	banksync.EINPROGRESS:     http.StatusConflict,
	banksync.ERATELIMITED:    http.StatusTooManyRequests,
	banksync.EFAILED:         http.StatusUnprocessableEntity,
	banksync.ENOTFOUND:       http.StatusNotFound,
	banksync.EACCOUNTMISSING: http.StatusNotFound,
	banksync.EACCOUNTEXISTS:  http.StatusConflict,
	banksync.EUNAUTHORIZED:   http.StatusUnauthorized,
	banksync.ETOOLARGE:       http.StatusRequestEntityTooLarge,
	banksync.EUNAVAILABLE:    http.StatusServiceUnavailable,
	banksync.EINTERNAL:       http.StatusInternalServerError,
	eUnsupportedMediaType:    http.StatusUnsupportedMediaType,
	eMethodNotAllowed:        http.StatusMethodNotAllowed,
}

// errorDetail is how the API shows an error: inside errorBody for a whole
// request, alone for one item of a batch.
type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type errorBody struct {
	Error errorDetail `json:"error"`
}

// writeError answers err as {"error":{"code","message"}}. Anything that is
// not a coded error is logged and shown only as "internal".
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	status, detail := describeError(r, log, err)
	writeJSON(w, status, errorBody{Error: detail})
}

// describeError is err's status and what the API shows of it. Server-side
// errors are logged with the request they failed and attrs, which name the
// item of a batch.
func describeError(r *http.Request, log *slog.Logger, err error, attrs ...any) (int, errorDetail) {
	code := banksync.ErrorCode(err)
	status, ok := statusOf[code]
	if !ok {
		status = http.StatusInternalServerError
	}
	if status >= 500 {
		log.ErrorContext(r.Context(), "request failed", append([]any{"method", r.Method, "path", r.URL.Path, "code", code, "err", err}, attrs...)...)
	}
	return status, errorDetail{Code: code, Message: banksync.ErrorMessage(err)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
