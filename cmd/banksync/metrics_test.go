package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"banksync"
	"banksync/chaos"
	"banksync/demo"
	bhttp "banksync/http"
	"banksync/internal/testkit"
)

// scrapeInterval is how often a test waiting on /metrics or /readyz asks
// again: each answer asks Kafka and the database.
const scrapeInterval = 100 * time.Millisecond

// scrape reads url's /metrics as Prometheus would.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics = %d %s", resp.StatusCode, b)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return families
}

// value is the metric name{labels} of a scrape: a counter's, gauge's, or a
// histogram's count; -1 when absent.
func value(t *testing.T, m map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	f, ok := m[name]
	if !ok {
		return -1
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, s := range f.GetMetric() {
		match := true
		for k, v := range want {
			found := false
			for _, l := range s.GetLabel() {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case s.Counter != nil:
			return s.Counter.GetValue()
		case s.Gauge != nil:
			return s.Gauge.GetValue()
		case s.Histogram != nil:
			return float64(s.Histogram.GetSampleCount())
		}
	}
	return -1
}

// sum adds every series of a metric.
func sum(m map[string]*dto.MetricFamily, name string) float64 {
	total := 0.0
	if f, ok := m[name]; ok {
		for _, s := range f.GetMetric() {
			total += s.GetGauge().GetValue() + s.GetCounter().GetValue()
		}
	}
	return total
}

// TestMetricsAndLogsAfterAWorkload runs core and the channel (the demo's
// wiring), sends a scripted workload — transfers that complete, fail, stay
// pending and are refused; a dead-lettered deposit and its replay — and
// finds each metric on /metrics with the value the workload implies, and
// each decision in the JSON log once, with its reason and the request's
// attributes.
func TestMetricsAndLogsAfterAWorkload(t *testing.T) {
	ctx := context.Background()
	logs := &testkit.SyncBuffer{}
	// Without the channel's own dead-letter repair, which would race the
	// gap fill below; the operator's replay applies the letter instead.
	d, toCore, history := hookedDemo(t, 4*time.Second, slog.New(bhttp.LogHandler(slog.NewJSONHandler(logs, nil))), true)
	coreURL, chURL := d.CoreURL(), d.URL()
	sent := map[string]string{} // request id -> transfer id
	transfer := func(customer, from, to string, amount int64) int {
		t.Helper()
		req, _ := http.NewRequest("POST", chURL+"/v1/transfers", strings.NewReader(
			fmt.Sprintf(`{"from_account":%q,"to_account":%q,"amount":%d}`, from, to, amount)))
		req.Header.Set("Authorization", "Bearer "+d.Token(customer))
		req.Header.Set("Idempotency-Key", fmt.Sprintf("metrics-%d", time.Now().UnixNano()))
		reqID := fmt.Sprintf("workload-%d", len(sent)+1)
		req.Header.Set(bhttp.HeaderRequestID, reqID)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if got := resp.Header.Get(bhttp.HeaderRequestID); got != reqID {
			t.Errorf("answer's %s = %q, want the request's %q", bhttp.HeaderRequestID, got, reqID)
		}
		var body struct {
			ID       string `json:"transfer_id"`
			Transfer struct {
				ID string `json:"transfer_id"`
			} `json:"transfer"`
		}
		json.NewDecoder(resp.Body).Decode(&body)
		sent[reqID] = body.ID + body.Transfer.ID // "" when refused
		return resp.StatusCode
	}
	for range 3 {
		if st := transfer("bob", "demo-bob", "demo-carol", 1_000); st != 200 {
			t.Fatalf("transfer = %d, want 200", st)
		}
	}
	for range 2 { // more than carol has
		if st := transfer("carol", "demo-carol", "demo-bob", 900_000_000); st != 422 {
			t.Fatalf("transfer = %d, want 422 failed", st)
		}
	}
	toCore.Plan("POST", "/core/v1/transfers", chaos.DelayRequest) // never released: fenced, failed
	if st := transfer("dave", "demo-dave", "demo-bob", 1_000); st != 202 {
		t.Fatalf("held transfer = %d, want 202 pending", st)
	}
	if st := transfer("dave", "demo-dave", "demo-bob", 2_000); st != 409 {
		t.Fatalf("transfer while one is pending = %d, want 409", st)
	}
	ch := scrape(t, chURL)
	if n, age := value(t, ch, "banksync_pending_transfers"), value(t, ch, "banksync_pending_transfer_oldest_age_seconds"); n != 1 || age <= 0 {
		t.Errorf("pending = %v, oldest age %v; want 1 and its age", n, age)
	}

	// Dave's history store fails: his next entry is dead-lettered.
	history.on.Store(true)
	if _, err := d.Core().Ledger().Deposit(ctx, banksync.DepositRequest{ExternalRef: "metrics-dlq", AccountID: "demo-dave", Amount: 5, Sender: "woori"}); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyEvery(t, 30*time.Second, scrapeInterval, "the dead letter counted", func() error {
		if n := value(t, scrape(t, chURL), "banksync_dlq_depth"); n != 1 {
			return fmt.Errorf("banksync_dlq_depth %v, want 1", n)
		}
		return nil
	})
	if n := value(t, scrape(t, chURL), "banksync_stale_accounts"); n != 1 {
		t.Errorf("stale accounts = %v, want dave's", n)
	}
	history.on.Store(false)
	// His next entry arrives behind the hole: the sync engine fills it from core.
	if _, err := d.Core().Ledger().Deposit(ctx, banksync.DepositRequest{ExternalRef: "metrics-gap", AccountID: "demo-dave", Amount: 5, Sender: "woori"}); err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyEvery(t, 30*time.Second, scrapeInterval, "the gap filled", func() error {
		if n := value(t, scrape(t, chURL), "banksync_sync_gap_fills_total"); n < 1 {
			return fmt.Errorf("banksync_sync_gap_fills_total %v, want at least 1", n)
		}
		return nil
	})
	req, _ := http.NewRequest("POST", chURL+"/admin/v1/dlq/replay", strings.NewReader(`{"all":true}`))
	req.Header.Set("Authorization", "Bearer "+d.Secrets().AdminToken)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(bhttp.HeaderRequestID, "workload-replay")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("replay = %v, %v", resp, err)
	}
	// The held transfer passes its deadline; the reconciler fences it.
	testkit.EventuallyEvery(t, 30*time.Second, scrapeInterval, "the fence counted", func() error {
		if n := value(t, scrape(t, chURL), "banksync_reconciler_decisions_total", "action", "fenced", "outcome", "failed"); n != 1 {
			return fmt.Errorf("fenced and failed decisions %v, want 1", n)
		}
		return nil
	})
	entries, err := d.Core().Store().LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	testkit.EventuallyEvery(t, 30*time.Second, scrapeInterval, "the history caught up", func() error {
		m := scrape(t, chURL)
		if lag, stale := sum(m, "banksync_consumer_lag_records"), value(t, m, "banksync_stale_accounts"); lag != 0 || stale != 0 {
			return fmt.Errorf("lag %v records, %v stale accounts; want 0 and 0", lag, stale)
		}
		return nil
	})

	ch, co := scrape(t, chURL), scrape(t, coreURL)
	for _, c := range []struct {
		what string
		got  float64
		want float64
	}{
		{"transfers completed", value(t, ch, "banksync_transfers_total", "outcome", "completed"), 3},
		{"transfers failed", value(t, ch, "banksync_transfers_total", "outcome", "failed"), 2},
		{"transfers pending", value(t, ch, "banksync_transfers_total", "outcome", "pending"), 1},
		{"transfers refused", value(t, ch, "banksync_transfers_total", "outcome", "refused"), 1},
		{"completed transfers timed", value(t, ch, "banksync_transfer_duration_seconds", "outcome", "completed"), 3},
		{"HTTP 200 transfers", value(t, ch, "banksync_http_requests_total", "route", "POST /v1/transfers", "code", "200"), 3},
		{"HTTP 422 transfers", value(t, ch, "banksync_http_requests_total", "route", "POST /v1/transfers", "code", "422"), 2},
		{"HTTP 202 transfers", value(t, ch, "banksync_http_requests_total", "route", "POST /v1/transfers", "code", "202"), 1},
		{"HTTP 409 transfers", value(t, ch, "banksync_http_requests_total", "route", "POST /v1/transfers", "code", "409"), 1},
		{"dead letters waiting", value(t, ch, "banksync_dlq_depth"), 0},
		{"dead letters parked", value(t, ch, "banksync_dlq_parked"), 0},
		{"dead letters replayed", value(t, ch, "banksync_dlq_replayed_total"), 1},
		{"pending after the fence", value(t, ch, "banksync_pending_transfers"), 0},
		{"history entries applied", value(t, ch, "banksync_history_entries_applied_total"), float64(entries)},
		{"core entries", value(t, co, "banksync_core_entries_total"), float64(entries)},
		{"entries published", value(t, co, "banksync_outbox_published_total"), float64(entries)},
		{"outbox backlog", value(t, co, "banksync_outbox_backlog"), 0},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	for _, c := range []struct {
		what string
		got  float64
	}{
		{"gap fill entries", value(t, ch, "banksync_sync_gap_fill_entries_total")},
		{"core commits", value(t, co, "banksync_core_commits_total")},
		{"commit durations", value(t, co, "banksync_core_commit_duration_seconds")},
		{"commit batch sizes", value(t, co, "banksync_core_commit_requests")},
		{"publish lags", value(t, co, "banksync_outbox_publish_lag_seconds")},
		{"core HTTP requests", value(t, co, "banksync_http_requests_total", "route", "POST /core/v1/transfers", "code", "200")},
	} {
		if c.got <= 0 {
			t.Errorf("%s = %v, want some", c.what, c.got)
		}
	}
	checkWorkloadLogs(t, logs.JSONLines(t), sent)
}

// checkWorkloadLogs checks the log of the metrics workload: every decision
// logged once, with its reason, carrying the request's id and attributes —
// the channel's request id followed into core's lines.
func checkWorkloadLogs(t *testing.T, lines []map[string]any, sent map[string]string) {
	t.Helper()
	find := func(msg string, attrs ...string) []map[string]any {
		var out []map[string]any
	next:
		for _, l := range lines {
			if l["msg"] != msg {
				continue
			}
			for i := 0; i+1 < len(attrs); i += 2 {
				if fmt.Sprint(l[attrs[i]]) != attrs[i+1] {
					continue next
				}
			}
			out = append(out, l)
		}
		return out
	}
	one := func(msg string, attrs ...string) map[string]any {
		t.Helper()
		found := find(msg, attrs...)
		if len(found) != 1 {
			t.Errorf("%d log lines %q %v, want exactly one", len(found), msg, attrs)
			return map[string]any{}
		}
		return found[0]
	}
	// The customer's requests: an access line each, with customer, account
	// and transfer id; the channel's request id on core's lines too.
	var completed, failed, held int
	for reqID, id := range sent {
		access := one("request", "request_id", reqID, "route", "POST /v1/transfers")
		if access["customer"] == nil || access["account"] == nil {
			t.Errorf("access line %v lacks customer or account", access)
		}
		if id == "" { // refused: nothing reached core
			r := one("transfer refused", "request_id", reqID)
			if r["reason"] != "account has a transfer in progress" || r["customer"] != "dave" {
				t.Errorf("refusal logged as %v", r)
			}
			continue
		}
		if access["transfer_id"] != id {
			t.Errorf("access line %v, want transfer_id %s", access, id)
		}
		if access["status"] == float64(http.StatusAccepted) {
			held++
			// Core never got it; the reconciler fenced it.
			one("transfer fenced", "transfer_id", id, "reason", banksync.ReasonFenced)
			one("reconciler decision", "transfer_id", id, "action", "fenced", "outcome", "failed", "reason", "core: rejected (fenced)")
			one("transfer settled", "transfer_id", id, "state", "failed", "reason", banksync.ReasonFenced)
			continue
		}
		decided := one("transfer decided", "transfer_id", id, "request_id", reqID)
		one("request", "request_id", reqID, "route", "POST /core/v1/transfers", "transfer_id", id)
		switch decided["status"] {
		case banksync.StatusCompleted:
			completed++
			one("transfer settled", "transfer_id", id, "request_id", reqID, "state", "completed")
		case banksync.StatusRejected:
			failed++
			if decided["reason"] != banksync.ReasonInsufficientFunds {
				t.Errorf("decision %v, want reason %s", decided, banksync.ReasonInsufficientFunds)
			}
			one("transfer settled", "transfer_id", id, "request_id", reqID, "state", "failed", "reason", banksync.ReasonInsufficientFunds)
		}
	}
	if completed != 3 || failed != 2 || held != 1 {
		t.Errorf("logged decisions: %d completed, %d failed, %d held; want 3, 2, 1", completed, failed, held)
	}
	// The dead letter: written once, with the history's error; replayed
	// once, under the operator's request.
	dead := one("ledger event dead-lettered; the dead-letter repair applies it", "account", "demo-dave")
	reason, _ := dead["reason"].(string)
	if reason == "" {
		t.Errorf("dead letter logged without a reason: %v", dead)
	}
	one("dead letter replayed", "account", "demo-dave", "request_id", "workload-replay", "reason", reason)
	one("request", "request_id", "workload-replay", "route", "POST /admin/v1/dlq/replay", "status", "200")
}

// TestHealthAndReadiness: /healthz answers while the process runs;
// /readyz names its checks and is ready once the database and Kafka answer
// and the consumer has joined its group.
func TestHealthAndReadiness(t *testing.T) {
	d, err := demo.Start(context.Background(), demo.Config{
		Data: t.TempDir(), Listen: "127.0.0.1:0", CoreListen: "127.0.0.1:0", KafkaListen: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, base := range []string{d.CoreURL(), d.URL()} {
		if st, body := get(base + "/healthz"); st != 200 || !strings.Contains(body, `"ok"`) {
			t.Errorf("%s/healthz = %d %s", base, st, body)
		}
	}
	if st, body := get(d.CoreURL() + "/readyz"); st != 200 || !strings.Contains(body, `"database":"ok"`) ||
		!strings.Contains(body, `"migrations":"ok"`) || !strings.Contains(body, `"kafka":"ok"`) {
		t.Errorf("core /readyz = %d %s", st, body)
	}
	testkit.EventuallyEvery(t, 20*time.Second, scrapeInterval, "the channel ready", func() error {
		if st, body := get(d.URL() + "/readyz"); st != 200 || !strings.Contains(body, `"database":"ok"`) ||
			!strings.Contains(body, `"migrations":"ok"`) || !strings.Contains(body, `"kafka":"ok"`) {
			return fmt.Errorf("/readyz = %d %s", st, body)
		}
		return nil
	})
	// Kafka gone: core is not ready, and says why.
	d.Core().EmbeddedKafka().Close()
	testkit.EventuallyEvery(t, 20*time.Second, scrapeInterval, "core not ready without Kafka", func() error {
		if st, body := get(d.CoreURL() + "/readyz"); st != 503 || !strings.Contains(body, `"database":"ok"`) || strings.Contains(body, `"kafka":"ok"`) {
			return fmt.Errorf("/readyz = %d %s", st, body)
		}
		return nil
	})
}
