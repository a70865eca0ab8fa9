package http_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	bhttp "banksync/http"
)

// countingDLQ records replays; the dead-letter topic itself is tested in
// package kafka.
type countingDLQ struct{ replays []string }

func (c *countingDLQ) List(context.Context) ([]bhttp.DeadLetterView, error) { return nil, nil }

func (c *countingDLQ) Replay(_ context.Context, account string) (int, error) {
	c.replays = append(c.replays, account)
	return 0, nil
}

func TestAdminRefusesBadInput(t *testing.T) {
	dlq := &countingDLQ{}
	srv := httptest.NewServer(bhttp.NewAdminServer("svc-token", dlq, nil))
	defer srv.Close()
	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
	}{
		{"no token", "GET", "/admin/v1/dlq", "", "", 401},
		{"wrong token", "POST", "/admin/v1/dlq/replay", "nope", `{"all":true}`, 401},
		{"both all and account", "POST", "/admin/v1/dlq/replay", "svc-token", `{"all":true,"account":"a"}`, 400},
		{"neither", "POST", "/admin/v1/dlq/replay", "svc-token", `{}`, 400},
		{"bad account", "POST", "/admin/v1/dlq/replay", "svc-token", `{"account":"../x"}`, 400},
		{"unknown field", "POST", "/admin/v1/dlq/replay", "svc-token", `{"all":true,"force":true}`, 400},
		{"malformed", "POST", "/admin/v1/dlq/replay", "svc-token", `{"all":`, 400},
		{"unknown route", "GET", "/admin/v1/nothing", "svc-token", "", 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Authorization", "Bearer "+tc.token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
	if len(dlq.replays) != 0 {
		t.Fatalf("bad requests replayed: %q", dlq.replays)
	}
}
