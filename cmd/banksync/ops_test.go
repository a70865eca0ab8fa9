package main

import (
	"io"
	"net/http"
	"path/filepath"
	"testing"

	"banksync"
)

// TestChannelOpsListener: with --ops-listen, metrics, the operator API and
// page are served there and nowhere on the customer listener; the probes
// and the app's assets answer on both; the customer API stays on the
// customer listener only.
func TestChannelOpsListener(t *testing.T) {
	n, err := startChannel(t.Context(), channelConfig{
		Listen: "127.0.0.1:0", OpsListen: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(t.TempDir(), "channel.db"),
		CoreURL: "http://127.0.0.1:1", ServiceToken: "ops-test-token", AdminToken: "ops-test-admin-token",
		JWTSecret: "ops-test-jwt-secret-of-32-bytes!!", AmountMax: banksync.AmountMaxDefault,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	customer, ops := "http://"+n.Addr(), "http://"+n.ops.Addr()
	get := func(url, token string) int {
		req, _ := http.NewRequest("GET", url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		base, path, token string
		want              int
	}{
		{ops, "/metrics", "", 200},
		{ops, "/healthz", "", 200},
		{ops, "/readyz", "", 200},
		{ops, "/ops/", "", 200},
		{ops, "/assets/common.js", "", 200},
		{ops, "/openapi.yaml", "", 200},
		{ops, "/admin/v1/dlq", "ops-test-admin-token", 503}, // no Kafka here; the route is served
		{ops, "/admin/v1/dlq", "", 401},
		{ops, "/v1/accounts", "", 404},
		{ops, "/app/", "", 404},
		{customer, "/healthz", "", 200},
		{customer, "/readyz", "", 200},
		{customer, "/app/", "", 200},
		{customer, "/assets/common.js", "", 200},
		{customer, "/openapi.yaml", "", 200},
		// Off the customer listener: the customer API's catch-all takes
		// them, and it wants a customer first.
		{customer, "/metrics", "", 401},
		{customer, "/ops/", "", 401},
		{customer, "/admin/v1/dlq", "ops-test-admin-token", 401},
		{customer, "/v1/accounts", "", 401},
	} {
		if got := get(c.base+c.path, c.token); got != c.want {
			where := "customer"
			if c.base == ops {
				where = "ops"
			}
			t.Errorf("GET %s on the %s listener = %d, want %d", c.path, where, got, c.want)
		}
	}
}
