package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"banksync"
)

// bodySizeMax caps every request body but a batch's; the largest legitimate
// one is a transfer of a few hundred bytes. depositsBatchBodySizeMax fits a
// batch of ledger.DepositsBatchMax deposits of under 300 bytes each, with
// room for whitespace.
const (
	bodySizeMax              = 64 << 10
	depositsBatchBodySizeMax = 1 << 20
)

// decode reads exactly one JSON object into v: unknown fields, trailing data,
// a wrong content type and bodies over bodySizeMax are refused with a coded
// error. A number that does not fit an integer field is invalid_amount when
// the field is an amount.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	return decodeLimit(w, r, v, bodySizeMax)
}

// decodeLimit is decode with a body limit of sizeMax bytes, for the one
// endpoint whose bodies are larger.
func decodeLimit(w http.ResponseWriter, r *http.Request, v any, sizeMax int64) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return banksync.Errorf(eUnsupportedMediaType, "Content-Type must be application/json")
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, sizeMax))
	if err != nil {
		return decodeError(err)
	}
	if err := duplicateName(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if maxErr := (*http.MaxBytesError)(nil); errors.As(err, &maxErr) {
			return decodeError(err)
		}
		return banksync.Errorf(banksync.EINVALID, "request body must hold exactly one JSON object")
	}
	return nil
}

// duplicateName refuses a body naming one field twice in an object, which
// encoding/json would take silently (the last one wins), so a proxy and the
// server could read different requests. Other faults are left to decode,
// which words them.
func duplicateName(body []byte) error {
	_, err := jsontext.NewDecoder(bytes.NewReader(body)).ReadValue()
	var se *jsontext.SyntacticError
	if errors.Is(err, jsontext.ErrDuplicateName) && errors.As(err, &se) {
		return banksync.Errorf(banksync.EINVALID, "field %s appears twice", strings.TrimPrefix(string(se.JSONPointer), "/"))
	}
	return nil
}

func decodeError(err error) error {
	var (
		maxErr    *http.MaxBytesError
		typeErr   *json.UnmarshalTypeError
		syntaxErr *json.SyntaxError
	)
	switch {
	case errors.As(err, &maxErr):
		return banksync.Errorf(banksync.ETOOLARGE, "request body is larger than %d bytes", maxErr.Limit)
	case errors.As(err, &typeErr):
		// Field is the path from the root: "deposits.amount" in a batch.
		if typeErr.Field == "amount" || strings.HasSuffix(typeErr.Field, ".amount") {
			return banksync.Errorf(banksync.EINVALIDAMOUNT, "amount must be a whole number of won")
		}
		if typeErr.Field == "" {
			return banksync.Errorf(banksync.EINVALID, "request body must be a JSON object")
		}
		return banksync.Errorf(banksync.EINVALID, "field %s has the wrong type", typeErr.Field)
	case errors.As(err, &syntaxErr), errors.Is(err, io.ErrUnexpectedEOF):
		return banksync.Errorf(banksync.EINVALID, "request body is not valid JSON")
	case errors.Is(err, io.EOF):
		return banksync.Errorf(banksync.EINVALID, "request body is empty")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return banksync.Errorf(banksync.EINVALID, "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		return banksync.Errorf(banksync.EINVALID, "request body is not valid: %v", err)
	}
}

// required returns an EINVALID error naming the first missing field, given
// pairs of (name, present).
func required(fields ...any) error {
	for i := 0; i+1 < len(fields); i += 2 {
		if present, _ := fields[i+1].(bool); !present {
			return banksync.Errorf(banksync.EINVALID, "field %s is required", fields[i])
		}
	}
	return nil
}
