package node

import (
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"testing"

	"banksync"
	"banksync/channel"
	"banksync/kafka"
)

// TestChannelOpsListener: with --ops-listen, metrics, the operator API and
// page are served there and nowhere on the customer listener; the probes
// and the app's assets answer on both; the customer API stays on the
// customer listener only. Wrong methods and unknown paths get the APIs'
// JSON answers (405, 404) on both.
func TestChannelOpsListener(t *testing.T) {
	n, err := StartChannel(t.Context(), ChannelConfig{
		Listen: "127.0.0.1:0", OpsListen: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(t.TempDir(), "channel.db"),
		CoreURL: "http://127.0.0.1:1", ServiceToken: "ops-test-token", AdminToken: "ops-test-admin-token",
		JWTSecret: "ops-test-jwt-secret-of-32-bytes!!", Channel: channel.Config{AmountMax: banksync.AmountMaxDefault},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	customer, ops := "http://"+n.Addr(), "http://"+n.OpsAddr()
	call := func(method, url, token string) (int, string) {
		req, _ := http.NewRequest(method, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type")
	}
	for _, c := range []struct {
		base, method, path, token string
		want                      int
	}{
		{ops, "GET", "/metrics", "", 200},
		{ops, "GET", "/healthz", "", 200},
		{ops, "GET", "/readyz", "", 200},
		{ops, "GET", "/ops/", "", 200},
		{ops, "GET", "/assets/common.js", "", 200},
		{ops, "GET", "/openapi.yaml", "", 200},
		{ops, "GET", "/admin/v1/dlq", "ops-test-admin-token", 503}, // no Kafka here; the route is served
		{ops, "GET", "/admin/v1/dlq", "", 401},
		{ops, "GET", "/v1/accounts", "", 404},
		{ops, "GET", "/app/", "", 404},
		{ops, "GET", "/nothing", "", 404},
		{ops, "POST", "/metrics", "", 405},
		{ops, "POST", "/openapi.yaml", "", 405},
		{customer, "GET", "/healthz", "", 200},
		{customer, "GET", "/readyz", "", 200},
		{customer, "GET", "/app/", "", 200},
		{customer, "GET", "/assets/common.js", "", 200},
		{customer, "GET", "/openapi.yaml", "", 200},
		{customer, "POST", "/openapi.yaml", "", 405},
		// Off the customer listener: the customer API's catch-all takes
		// them, and it wants a customer first.
		{customer, "GET", "/metrics", "", 401},
		{customer, "GET", "/ops/", "", 401},
		{customer, "GET", "/admin/v1/dlq", "ops-test-admin-token", 401},
		{customer, "GET", "/v1/accounts", "", 401},
	} {
		got, ctype := call(c.method, c.base+c.path, c.token)
		where := "customer"
		if c.base == ops {
			where = "ops"
		}
		if got != c.want {
			t.Errorf("%s %s on the %s listener = %d, want %d", c.method, c.path, where, got, c.want)
		}
		if got >= 400 && ctype != "application/json" {
			t.Errorf("%s %s on the %s listener answered %d as %q, want a JSON error", c.method, c.path, where, got, ctype)
		}
	}
}

// TestChannelReadsTheDeadLettersItWrites: with a ledger topic of its own,
// the replica's repair, admin API and gauge read the dead-letter topic its
// consumer writes to, the one core created beside the ledger topic.
func TestChannelReadsTheDeadLettersItWrites(t *testing.T) {
	const topic = "node.test.ledger"
	core, err := StartCore(t.Context(), CoreConfig{Listen: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(t.TempDir(), "core.db"),
		EmbeddedKafka: &kafka.ClusterConfig{Addr: "127.0.0.1:0"}, Topic: topic, ServiceToken: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	defer core.Close()
	n, err := StartChannel(t.Context(), ChannelConfig{Listen: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(t.TempDir(), "channel.db"),
		CoreURL: "http://" + core.Addr(), ServiceToken: "svc", JWTSecret: "node-test-jwt-secret-of-32-bytes!!",
		Kafka: core.Conn(), Consumer: kafka.ConsumerConfig{Topic: topic}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if got := n.deadLetters.Topic(); got != topic+".dlq" {
		t.Fatalf("the replica reads dead letters from %s, want %s.dlq", got, topic)
	}
	if _, err := n.deadLetters.Depth(t.Context()); err != nil {
		t.Fatalf("depth of %s: %v (does the topic exist?)", n.deadLetters.Topic(), err)
	}
}

// TestConsumerRestartsWhileAsked: the replica's consumer stops and starts
// again while readiness and lag are asked of it (under -race, nothing
// races; no call waits for a drain), and after Close it cannot start.
func TestConsumerRestartsWhileAsked(t *testing.T) {
	core, err := StartCore(t.Context(), CoreConfig{Listen: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(t.TempDir(), "core.db"),
		EmbeddedKafka: &kafka.ClusterConfig{Addr: "127.0.0.1:0"}, ServiceToken: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	defer core.Close()
	n, err := StartChannel(t.Context(), ChannelConfig{Listen: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(t.TempDir(), "channel.db"),
		CoreURL: "http://" + core.Addr(), ServiceToken: "svc", JWTSecret: "node-test-jwt-secret-of-32-bytes!!", Kafka: core.Conn()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	var askers sync.WaitGroup
	for range 2 {
		askers.Go(func() {
			for ctx.Err() == nil {
				n.consumer.Lag(ctx)
				n.consumer.Joined(ctx)
			}
		})
	}
	for range 3 {
		n.StopConsumer()
		if err := n.StartConsumer(); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	askers.Wait()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.StartConsumer(); !errors.Is(err, errConsumerClosed) {
		t.Fatalf("StartConsumer after Close = %v, want %v", err, errConsumerClosed)
	}
}
