package http

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
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
	return decodeBody(body, v)
}

// decodeBody decodes body into v. The strict decoder takes the requests a
// client sends in one pass; it refuses more than the careful one, which
// then decides and words the refusal, so a refused body reads the same
// either way.
func decodeBody(body []byte, v any) error {
	if jsonv2.Unmarshal(body, v, strictDecoding) == nil {
		return nil
	}
	reflect.ValueOf(v).Elem().SetZero() // what the strict decoder filled before it stopped
	return decodeCareful(body, v)
}

// decodeCareful is decodeBody's second pass: encoding/json, which words
// its refusals field by field, after duplicateName.
func decodeCareful(body []byte, v any) error {
	if err := duplicateName(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return banksync.Errorf(banksync.EINVALID, "request body must hold exactly one JSON object")
	}
	return nil
}

// strictDecoding accepts a subset of what decodeCareful accepts, with the
// same values: names matched exactly (the careful path also folds case),
// no unknown or repeated names, valid UTF-8 only, one value and nothing
// after it but whitespace; integers are digits in both.
// A time in a request must be a timeJSON, whose parse is the careful
// path's own. FuzzStrictDecoding holds the two paths together.
var strictDecoding = jsonv2.RejectUnknownMembers(true)

// timeJSON is a time in a request body: both decoders hand its raw value
// to time.Time's UnmarshalJSON, so they accept the same times (the strict
// decoder's own time parse reads escaped strings the careful path refuses).
type timeJSON time.Time

func (t *timeJSON) UnmarshalJSON(b []byte) error { return (*time.Time)(t).UnmarshalJSON(b) }

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
