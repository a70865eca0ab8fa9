package http_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	bhttp "banksync/http"
)

// TestObserveRequestIDs: a sane X-Request-Id is kept and echoed, anything
// else is replaced by a new id; the access line carries the id, the route,
// the status and what the handler added; a line the handler logs with the
// request's context carries them too, without overriding its own values;
// probes are logged at debug level; Done sees every request.
func TestObserveRequestIDs(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(bhttp.LogHandler(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo})))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/accounts/{id}/transactions", func(w http.ResponseWriter, r *http.Request) {
		bhttp.AddLogForTest(r.Context(), bhttp.LogAccount, r.PathValue("id"))
		log.InfoContext(r.Context(), "inside", bhttp.LogAccount, "explicit")
		w.WriteHeader(http.StatusTeapot)
	})
	mux.HandleFunc("GET /healthz", func(http.ResponseWriter, *http.Request) {})
	var done []string
	h := bhttp.Observe(mux, bhttp.ObserveConfig{
		Logger: log,
		Route:  func(r *http.Request) string { _, p := mux.Handler(r); return p },
		Quiet:  map[string]bool{"GET /healthz": true},
		Done:   func(route string, status int, _ time.Duration) { done = append(done, route) },
	})
	call := func(path, id string) string {
		req := httptest.NewRequest("GET", path, nil)
		if id != "" {
			req.Header.Set(bhttp.HeaderRequestID, id)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Header().Get(bhttp.HeaderRequestID)
	}
	if got := call("/v1/accounts/acct-1/transactions", "gw-123.a:b_c-d"); got != "gw-123.a:b_c-d" {
		t.Errorf("sane request id answered as %q, want it kept", got)
	}
	made := map[string]bool{}
	for _, bad := range []string{"", "has space", "new\nline", strings.Repeat("x", 65), `"quoted"`, "ü"} {
		got := call("/v1/accounts/acct-1/transactions", bad)
		if got == bad || len(got) != 24 || made[got] {
			t.Errorf("request id %q answered as %q, want a new 24-character id", bad, got)
		}
		made[got] = true
	}
	call("/healthz", "probe-1")

	var lines []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2*7 { // 7 requests logged (the probe is not at info), 2 lines each
		t.Fatalf("%d lines, want 14: %v", len(lines), lines)
	}
	inside, access := lines[0], lines[1]
	if inside["msg"] != "inside" || inside["request_id"] != "gw-123.a:b_c-d" || inside[bhttp.LogAccount] != "explicit" {
		t.Errorf("handler's line = %v, want the request id and its own account", inside)
	}
	if access["msg"] != "request" || access["request_id"] != "gw-123.a:b_c-d" || access[bhttp.LogAccount] != "acct-1" ||
		access["route"] != "GET /v1/accounts/{id}/transactions" || access["status"] != float64(http.StatusTeapot) || access["method"] != "GET" {
		t.Errorf("access line = %v", access)
	}
	if len(done) != 8 || done[7] != "GET /healthz" {
		t.Errorf("Done saw %q, want 8 requests, the probe last", done)
	}
	// Outside a request nothing is added.
	out.Reset()
	log.Info("outside")
	if strings.Contains(out.String(), "request_id") {
		t.Errorf("a line outside any request = %s", out.String())
	}
}
