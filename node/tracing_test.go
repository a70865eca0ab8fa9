package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"banksync"
	"banksync/channel"
	bhttp "banksync/http"
	"banksync/internal/testkit"
	"banksync/kafka"
)

// TestOneTraceFromTheAppToTheHistory: with tracing on, a customer's
// transfer makes one trace that runs through the channel's API, its call
// to core, core's API and ledger commit, and, through the traceparent in
// the Kafka records the relay publishes, to the consumer's apply of both
// entries into the history and the live push of the credit to the open
// stream of the account it went to. A deposit no traced caller made is a trace of
// its own, from its commit to its apply.
func TestOneTraceFromTheAppToTheHistory(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(context.Background())
	const topic, secret = "node.trace.ledger", "node-trace-jwt-secret-of-32-bytes"
	core, err := StartCore(t.Context(), CoreConfig{Listen: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(t.TempDir(), "core.db"),
		EmbeddedKafka: &kafka.ClusterConfig{Addr: "127.0.0.1:0"}, Topic: topic, ServiceToken: "svc", Tracing: tp})
	if err != nil {
		t.Fatal(err)
	}
	defer core.Close()
	ctx := t.Context()
	for _, a := range []string{"a1", "a2"} {
		if _, _, err := core.Ledger().CreateAccount(ctx, a, "alice"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := core.Ledger().Deposit(ctx, banksync.DepositRequest{ExternalRef: "d1", AccountID: "a1", Amount: 1000, Sender: "KB국민 홍길동"}); err != nil {
		t.Fatal(err)
	}
	n, err := StartChannel(ctx, ChannelConfig{Listen: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(t.TempDir(), "channel.db"),
		CoreURL: "http://" + core.Addr(), ServiceToken: "svc", JWTSecret: secret, Kafka: core.Conn(),
		Consumer: kafka.ConsumerConfig{Topic: topic}, Channel: channel.Config{AmountMax: banksync.AmountMaxDefault}, Tracing: tp})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	auth, err := bhttp.NewHS256Authenticator([]byte(secret), bhttp.AuthOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.Issue("alice", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// a2's live stream is open, as an app would hold it.
	treq, _ := http.NewRequest("POST", "http://"+n.Addr()+"/v1/accounts/a2/stream-ticket", nil)
	treq.Header.Set("Authorization", "Bearer "+tok)
	tresp, err := http.DefaultClient.Do(treq)
	if err != nil {
		t.Fatal(err)
	}
	var ticket struct{ Ticket string }
	json.NewDecoder(tresp.Body).Decode(&ticket)
	tresp.Body.Close()
	sctx, stopStream := context.WithCancel(ctx)
	defer stopStream()
	sreq, _ := http.NewRequestWithContext(sctx, "GET", "http://"+n.Addr()+"/v1/accounts/a2/stream?after=0&ticket="+url.QueryEscape(ticket.Ticket), nil)
	stream, err := http.DefaultClient.Do(sreq)
	if err != nil || stream.StatusCode != 200 {
		t.Fatalf("open a2's stream: %v %v", stream, err)
	}
	defer stream.Body.Close()
	go io.Copy(io.Discard, stream.Body)

	req, _ := http.NewRequest("POST", "http://"+n.Addr()+"/v1/transfers", strings.NewReader(`{"from_account":"a1","to_account":"a2","amount":10}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "trace-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 && resp.StatusCode != 201 {
		t.Fatalf("transfer = %d", resp.StatusCode)
	}

	// The transfer's trace: the channel's server span of the request.
	var id trace.TraceID
	names := func() []string {
		var out []string
		for _, s := range spans.GetSpans() {
			if s.SpanContext.TraceID() == id {
				out = append(out, s.Name)
			}
		}
		slices.Sort(out)
		return out
	}
	testkit.Eventually(t, 20*time.Second, "the transfer's trace reaching the history", func() error {
		for _, s := range spans.GetSpans() {
			if s.Name == "POST /v1/transfers" && s.SpanKind == trace.SpanKindServer {
				id = s.SpanContext.TraceID()
			}
		}
		if got := names(); strings.Count(strings.Join(got, ","), "banksync.channel.apply") < 2 || !slices.Contains(got, "banksync.channel.push") {
			return fmt.Errorf("spans of the trace so far: %q", got)
		}
		return nil
	})
	got := names()
	for _, want := range []string{"POST /v1/transfers", "POST /core/v1/transfers", "banksync.ledger.commit", "banksync.channel.apply", "banksync.channel.push"} {
		if !slices.Contains(got, want) {
			t.Errorf("the transfer's trace lacks %q: %q", want, got)
		}
	}
	if n := strings.Count(strings.Join(got, ","), "banksync.channel.apply"); n != 2 {
		t.Errorf("the transfer's trace has %d apply spans, want one for each of its two entries: %q", n, got)
	}
	// The deposit, made at core by no traced caller, is a trace of its
	// own: its commit the root, its apply the child.
	commits := map[trace.TraceID]bool{}
	for _, s := range spans.GetSpans() {
		if s.Name == "banksync.ledger.commit" {
			commits[s.SpanContext.TraceID()] = true
		}
	}
	for _, s := range spans.GetSpans() {
		if s.Name == "banksync.channel.apply" && !commits[s.SpanContext.TraceID()] {
			t.Errorf("an apply span in a trace with no ledger commit: %+v", s.Attributes)
		}
	}
	t.Logf("one trace: %q", got)
}
