package http_test

import (
	"encoding/json"
	"testing"
)

// TestWrongMethods: a path the API has, asked with another method, is 405
// method_not_allowed naming the methods it takes in Allow; a path it does
// not have is 404 not_found.
func TestWrongMethods(t *testing.T) {
	s := newStack(t, stackOptions{})
	for _, c := range []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"DELETE", "/v1/accounts", 405, "method_not_allowed", "GET, HEAD"},
		{"GET", "/v1/transfers", 405, "method_not_allowed", "POST"},
		{"PUT", "/v1/transfers/t-1", 405, "method_not_allowed", "GET, HEAD"},
		{"GET", "/v1/accounts/a1/sync", 405, "method_not_allowed", "POST"},
		{"PATCH", "/v1/accounts/a1/transactions", 405, "method_not_allowed", "GET, HEAD"},
		{"GET", "/v1/nothing", 404, "not_found", ""},
		{"POST", "/v1/accounts/a1", 404, "not_found", ""},
	} {
		status, raw, hdr := s.do(t, "c1", c.method, c.path, nil)
		var body struct {
			Error struct{ Code string } `json:"error"`
		}
		json.Unmarshal(raw, &body)
		if status != c.status || body.Error.Code != c.code || hdr.Get("Allow") != c.allow {
			t.Errorf("%s %s = %d %q Allow %q, want %d %q Allow %q", c.method, c.path, status, body.Error.Code, hdr.Get("Allow"), c.status, c.code, c.allow)
		}
	}
}
