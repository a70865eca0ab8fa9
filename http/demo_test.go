package http_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	bhttp "banksync/http"
)

func TestDemoServerAnswersOnlyLoopback(t *testing.T) {
	srv := httptest.NewServer(bhttp.NewDemoServer([]bhttp.DemoCustomer{{ID: "alice", Name: "Alice", Accounts: []string{"a1", "a2"}}},
		func(c string) (string, error) { return "token-of-" + c, nil }, nil))
	defer srv.Close()
	get := func(path, host string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if host != "" {
			req.Host = host
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp.StatusCode, m
	}
	for _, host := range []string{"", "localhost:8080", "[::1]:8080", "127.0.0.1"} {
		st, m := get("/demo/v1/customers", host)
		cs, _ := m["customers"].([]any)
		ps, _ := m["payees"].([]any)
		if st != 200 || len(cs) != 1 || len(ps) != 2 || cs[0].(map[string]any)["token"] != "token-of-alice" {
			t.Errorf("Host %q: %d %v", host, st, m)
		}
	}
	for _, host := range []string{"bank.example:8080", "10.0.0.5", "evil.test"} {
		if st, m := get("/demo/v1/customers", host); st != 404 || m["customers"] != nil {
			t.Errorf("Host %q: %d %v; want 404 and no tokens", host, st, m)
		}
	}
	if st, _ := get("/demo/v1/other", ""); st != 404 {
		t.Errorf("unknown demo path = %d, want 404", st)
	}
}
