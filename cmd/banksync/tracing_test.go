package main_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"banksync/internal/testkit"
)

// TestOTLPEndpointTurnsTracingOn: a channel started with --otlp-endpoint
// sends the spans of the requests it serves to that collector, over
// OTLP/HTTP.
func TestOTLPEndpointTurnsTracingOn(t *testing.T) {
	t.Parallel()
	var exports atomic.Int64
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method == "POST" && r.URL.Path == "/v1/traces" && len(body) > 0 {
			exports.Add(1)
		}
	}))
	defer collector.Close()
	ch := startProc(t, startupEnv, "channel listening", "addr", channelArgs(t, "--otlp-endpoint", collector.URL)...)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject: "alice", IssuedAt: jwt.NewNumericDate(time.Now()), ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Minute)),
	}).SignedString([]byte("0123456789abcdef0123456789abcdef")) // startupEnv's secret
	if err != nil {
		t.Fatal(err)
	}
	if st, body := send(t, "GET", "http://"+ch.addr+"/v1/accounts", tok, ""); st != 200 {
		t.Fatalf("GET /v1/accounts = %d %s", st, body)
	}
	// The batch of spans goes out within the exporter's 5 s schedule.
	testkit.Eventually(t, 20*time.Second, "spans at the collector", func() error {
		if exports.Load() == 0 {
			return errors.New("no spans yet")
		}
		return nil
	})
}

// TestBadOTLPEndpointRefused: an endpoint that is not an http(s) URL stops
// the start, naming the flag.
func TestBadOTLPEndpointRefused(t *testing.T) {
	t.Parallel()
	failStart(t, []string{`--otlp-endpoint "collector:4318": want a URL such as http://collector:4318`},
		channelArgs(t, "--otlp-endpoint", "collector:4318")...)
}
