package http_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"banksync/channel"
	bhttp "banksync/http"
	"banksync/kafka"
)

// countingDLQ records replays; the dead-letter topic itself is tested in
// package kafka.
type countingDLQ struct{ replays []string }

func (c *countingDLQ) List(context.Context) ([]bhttp.DeadLetterView, error) { return nil, nil }

func (c *countingDLQ) Replay(_ context.Context, account string) (kafka.ReplayResult, error) {
	c.replays = append(c.replays, account)
	return kafka.ReplayResult{}, nil
}

func TestAdminRefusesBadInput(t *testing.T) {
	dlq := &countingDLQ{}
	srv := httptest.NewServer(bhttp.NewAdminServer(bhttp.AdminConfig{Token: "svc-token", DeadLetters: dlq}))
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
	// Without a token the operator API is off: an empty bearer opens nothing.
	off := httptest.NewServer(bhttp.NewAdminServer(bhttp.AdminConfig{DeadLetters: dlq}))
	defer off.Close()
	for _, auth := range []string{"", "Bearer ", "Bearer x"} {
		req, _ := http.NewRequest("GET", off.URL+"/admin/v1/dlq", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("admin API without a token, Authorization %q = %d, want 401", auth, resp.StatusCode)
		}
	}
}

// fixedLag is a consumer whose lag is what the test says.
type fixedLag struct {
	lag kafka.GroupLag
	err error
}

func (f fixedLag) Lag(context.Context) (kafka.GroupLag, error) { return f.lag, f.err }

// TestAdminOverview reads the operations view over a real channel and core:
// a transfer core never answered is pending with its deadline, an account
// is stale; after the reconciler's round the transfer is fenced and failed,
// the account repaired, and both decisions are listed. A part that cannot
// be read (the lag) carries its error and the rest is still answered.
func TestAdminOverview(t *testing.T) {
	s := newStack(t, stackOptions{coreFront: hangingTransfers, channel: channel.Config{
		CoreTimeout: 100 * time.Millisecond, Deadline: 200 * time.Millisecond, ReconcileGrace: time.Millisecond,
	}})
	s.setup(t, []string{"a1:alice", "a2:bob", "b1:bob"}, "a1=1000", "b1=70")
	ctx := context.Background()
	if st, m := s.submit(t, "alice", "k1", map[string]any{"from_account": "a1", "to_account": "a2", "amount": 300}); st != 202 {
		t.Fatalf("submit = %d %v, want 202 pending", st, m)
	}
	if err := s.chStore.MarkStale(ctx, "b1", time.Now()); err != nil {
		t.Fatal(err)
	}
	lag := kafka.GroupLag{Group: "g", Topic: "t", Lag: 7, Partitions: []kafka.PartitionLag{{Partition: 0, Committed: 3, End: 10, Lag: 7}}}
	admin := httptest.NewServer(bhttp.NewAdminServer(bhttp.AdminConfig{
		Token: "svc-token", Channel: s.ch, Consumer: fixedLag{lag: lag},
		Core: bhttp.NewCoreClient(s.coreURL, token, nil),
	}))
	defer admin.Close()
	overview := func() bhttp.Overview {
		t.Helper()
		return readOverview(t, admin.URL)
	}
	o := overview()
	if o.Replica == "" {
		t.Errorf("the overview does not name the replica that answered")
	}
	if o.Consumer == nil || !cmp.Equal(o.Consumer.GroupLag, lag) || o.Consumer.Error != "" {
		t.Errorf("consumer = %+v, want %+v", o.Consumer, lag)
	}
	if o.Outbox.Backlog == nil || *o.Outbox.Backlog != 2 { // two deposits, no relay running
		t.Errorf("outbox = %+v, want a backlog of 2", o.Outbox)
	}
	if len(o.Pending) != 1 || o.Pending[0].FromAccount != "a1" || o.Pending[0].Deadline.IsZero() {
		t.Errorf("pending = %+v, want the one transfer from a1 with its deadline", o.Pending)
	}
	if len(o.Stale) != 1 || o.Stale[0].ID != "b1" || o.Stale[0].StaleSince.IsZero() {
		t.Errorf("stale = %+v, want b1 since a time", o.Stale)
	}
	if len(o.Decisions) != 0 {
		t.Errorf("decisions before any reconcile = %+v", o.Decisions)
	}
	pendingID := o.Pending[0].ID

	time.Sleep(250 * time.Millisecond) // past the deadline
	if _, err := s.ch.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	o = overview()
	if len(o.Pending) != 0 || len(o.Stale) != 0 {
		t.Errorf("after reconcile: pending %+v, stale %+v; want none", o.Pending, o.Stale)
	}
	var fenced, repaired bool
	for _, d := range o.Decisions {
		fenced = fenced || d.Action == channel.DecisionFenced && d.TransferID == pendingID && d.Outcome == channel.StateFailed
		repaired = repaired || d.Action == channel.DecisionRepaired && d.AccountID == "b1"
	}
	if !fenced || !repaired {
		t.Errorf("decisions = %+v, want the transfer fenced and failed, b1 repaired", o.Decisions)
	}
	if o.Applied.Total < 1 {
		t.Errorf("applied = %+v, want b1's deposit counted", o.Applied)
	}

	// The lag cannot be read and core is not configured: the overview says
	// why and shows the rest.
	broken := httptest.NewServer(bhttp.NewAdminServer(bhttp.AdminConfig{
		Token: "svc-token", Channel: s.ch, Consumer: fixedLag{err: errors.New("broker down")},
	}))
	defer broken.Close()
	o = readOverview(t, broken.URL)
	if o.Consumer == nil || o.Consumer.Error == "" || o.Outbox.Error == "" || o.Outbox.Backlog != nil || o.Pending == nil {
		t.Errorf("overview with the lag failing and no core = %+v", o)
	}
}

// readOverview reads GET /admin/v1/overview with the test's admin token.
func readOverview(t *testing.T, url string) bhttp.Overview {
	t.Helper()
	req, _ := http.NewRequest("GET", url+"/admin/v1/overview", nil)
	req.Header.Set("Authorization", "Bearer svc-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var o bhttp.Overview
	if err := json.NewDecoder(resp.Body).Decode(&o); resp.StatusCode != 200 || err != nil {
		t.Fatalf("overview = %d, %v", resp.StatusCode, err)
	}
	return o
}
