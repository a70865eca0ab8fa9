package kafka_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"banksync"
	"banksync/kafka"
	"banksync/kafka/kafkatest"
)

// reachFailFast bounds how long Reach may take to report a cause waiting
// cannot cure; its own bound (the context) is far longer.
const (
	reachFailFast = 5 * time.Second
	reachBound    = 30 * time.Second
)

// securedConn is a Conn to the secured cluster as user, with mechanism.
func securedConn(t *testing.T, c *kafkatest.Cluster, mechanism, user string) kafka.Conn {
	t.Helper()
	m, err := kafka.SASLMechanism(mechanism, user, kafkatest.Password(user))
	if err != nil {
		t.Fatal(err)
	}
	return kafka.Conn{Brokers: c.Addrs(), TLS: c.ClientTLS(), SASL: m}
}

// securedResources are a test's own topics and group on the shared
// secured cluster, with banksync's ACLs granted on them.
func securedResources(t *testing.T, c *kafkatest.Cluster) kafkatest.Resources {
	t.Helper()
	topic := testTopic(t)
	r := kafkatest.Resources{Entries: topic, DLQ: kafka.DLQTopicOf(topic), Group: "channel." + topic, ReplayGroup: kafka.ReplayGroup}
	c.GrantBanksync(t, r)
	return r
}

// Over TLS, with each SASL mechanism, core's user publishes through the
// publisher and the channel's consumes through the consumer, dead-letters
// what it cannot apply, reads its lag, and replays the letters: every
// client banksync makes works with the ACLs docs/SECURITY.md grants.
func TestSecuredClients(t *testing.T) {
	c := kafkatest.SharedSecured(t)
	for _, mechanism := range []string{kafka.SASLPlain, kafka.SASLScramSHA256, kafka.SASLScramSHA512} {
		t.Run(mechanism, func(t *testing.T) {
			securedClients(t, c, mechanism)
		})
	}
}

func securedClients(t *testing.T, c *kafkatest.Cluster, mechanism string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := securedResources(t, c)
	core, channel := securedConn(t, c, mechanism, kafkatest.UserCore), securedConn(t, c, mechanism, kafkatest.UserChannel)
	for _, conn := range []kafka.Conn{core, channel} {
		reachCtx, cancel := context.WithTimeout(ctx, reachBound)
		err := kafka.Reach(reachCtx, conn)
		cancel()
		if err != nil {
			t.Fatalf("Reach(%s) = %v", conn, err)
		}
	}
	pub, err := kafka.NewPublisher(ctx, kafka.PublisherConfig{Conn: core, Topic: r.Entries, DLQTopic: r.DLQ, Partitions: 3, Logger: testLogger()})
	if err != nil {
		t.Fatalf("NewPublisher as %s: %v", kafkatest.UserCore, err)
	}
	defer pub.Close()
	entries := makeEntries(60, 6)
	if err := pub.Publish(ctx, entries); err != nil {
		t.Fatalf("Publish as %s: %v", kafkatest.UserCore, err)
	}

	// The channel applies every account but acc-1, whose entries it
	// dead-letters after one try.
	var mu sync.Mutex
	applied, refused := map[int64]bool{}, 0
	apply := kafka.ApplyFunc(func(_ context.Context, e banksync.Entry) error {
		mu.Lock()
		defer mu.Unlock()
		if e.AccountID == "acc-1" {
			refused++
			return errors.New("history refuses acc-1")
		}
		applied[e.Position] = true
		return nil
	})
	cons, err := kafka.NewConsumer(kafka.ConsumerConfig{Conn: channel, Topic: r.Entries, DLQTopic: r.DLQ, Group: r.Group,
		Lanes: 4, AttemptsMax: 1, Logger: testLogger()}, apply)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); cons.Run(runCtx) }()
	defer func() { stop(); <-done }()
	acc1 := 0
	for _, e := range entries {
		if e.AccountID == "acc-1" {
			acc1++
		}
	}
	dls := mustDeadLetters(t, channel, r.DLQ)
	waitFor(t, ctx, "every entry applied or dead-lettered", func() bool {
		d, err := dls.Depth(ctx)
		mu.Lock()
		defer mu.Unlock()
		return err == nil && len(applied) == len(entries)-acc1 && d.Waiting == int64(acc1)
	})
	waitFor(t, ctx, "the group's lag read and zero", func() bool {
		lag, err := cons.Lag(ctx)
		return err == nil && lag.Lag == 0
	})
	letters, err := dls.List(ctx)
	if err != nil || len(letters) != acc1 {
		t.Fatalf("List as %s = %d letters, %v; want %d", kafkatest.UserChannel, len(letters), err, acc1)
	}
	res, err := dls.Replay(ctx, nil, applyOnly(func(context.Context, banksync.Entry) error { return nil }), nil)
	if err != nil || res.Applied != acc1 {
		t.Fatalf("Replay as %s = %+v, %v; want %d applied", kafkatest.UserChannel, res, err, acc1)
	}
	if d, err := dls.Depth(ctx); err != nil || d != (kafka.Depth{}) {
		t.Fatalf("after the replay the depth is %+v, %v; want none (the replay group's commit was refused?)", d, err)
	}
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Each wrong setting fails Reach at once — not when its bound ends — with
// an error that names the cause.
func TestSecuredReachFailsFast(t *testing.T) {
	c := kafkatest.SharedSecured(t)
	otherCA, err := kafkatest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	untrusting := c.ClientTLS()
	untrusting.RootCAs = x509.NewCertPool()
	untrusting.RootCAs.AppendCertsFromPEM(otherCA)
	noClientCert := c.ClientTLS()
	noClientCert.Certificates = nil
	good := securedConn(t, c, kafka.SASLScramSHA512, kafkatest.UserCore)
	mech := func(name, user, password string) kafka.Conn {
		m, err := kafka.SASLMechanism(name, user, password)
		if err != nil {
			t.Fatal(err)
		}
		return kafka.Conn{Brokers: c.Addrs(), TLS: c.ClientTLS(), SASL: m}
	}
	for _, tc := range []struct {
		name string
		conn kafka.Conn
		want []string
	}{
		{"wrong password scram", mech(kafka.SASLScramSHA512, kafkatest.UserCore, "not-the-password"),
			[]string{"SASL authentication failed", "SASL_AUTHENTICATION_FAILED"}},
		{"wrong password plain", mech(kafka.SASLPlain, kafkatest.UserChannel, "not-the-password"),
			[]string{"SASL authentication failed"}},
		{"unknown user", mech(kafka.SASLScramSHA256, "mallory", "whatever"),
			[]string{"SASL authentication failed"}},
		{"untrusted CA", kafka.Conn{Brokers: c.Addrs(), TLS: untrusting, SASL: good.SASL},
			[]string{"not trusted", "x509", "unknown authority"}},
		{"plaintext", kafka.Brokers(c.Addrs()...),
			[]string{"closed the connection", "TLS listener"}},
		{"plaintext with SASL", kafka.Conn{Brokers: c.Addrs(), SASL: good.SASL},
			[]string{"closed the connection", "TLS listener"}},
		{"TLS without SASL", kafka.Conn{Brokers: c.Addrs(), TLS: c.ClientTLS()},
			[]string{"closed the connection", "SASL"}},
		{"no client certificate", kafka.Conn{Brokers: c.Addrs(), TLS: noClientCert, SASL: good.SASL},
			[]string{"refused the TLS handshake", "client certificate"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), reachBound)
			defer cancel()
			start := time.Now()
			err := kafka.Reach(ctx, tc.conn)
			took := time.Since(start)
			if err == nil {
				t.Fatalf("Reach(%s) = nil, want an error", tc.conn)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Reach(%s) = %q, want it to say %q", tc.conn, err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("Reach's error spans lines: %q", err)
			}
			if took > reachFailFast {
				t.Errorf("Reach took %v to fail (its bound %v), want under %v: it kept trying what cannot succeed", took.Round(time.Millisecond), reachBound, reachFailFast)
			}
		})
	}
	// The control: the same cluster, rightly configured, answers.
	ctx, cancel := context.WithTimeout(context.Background(), reachBound)
	defer cancel()
	if err := kafka.Reach(ctx, good); err != nil {
		t.Fatalf("Reach(%s) = %v, want nil", good, err)
	}
}

// The channel's credentials cannot forge a ledger event: its principal
// may not write the entries topic, which only core's may. What it may
// write — the dead-letter topic — it can, so the refusal is the ACL's.
func TestChannelCannotForgeLedgerEvent(t *testing.T) {
	c := kafkatest.SharedSecured(t)
	r := securedResources(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	core, channel := securedConn(t, c, kafka.SASLScramSHA512, kafkatest.UserCore), securedConn(t, c, kafka.SASLScramSHA512, kafkatest.UserChannel)
	pub, err := kafka.NewPublisher(ctx, kafka.PublisherConfig{Conn: core, Topic: r.Entries, DLQTopic: r.DLQ, Partitions: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Publish(ctx, makeEntries(1, 1)); err != nil {
		t.Fatalf("core's Publish = %v, want nil", err)
	}
	forged := banksync.Entry{AccountID: "acc-0", Seq: 2, Position: 2, Kind: banksync.KindDeposit, Amount: 1_000_000,
		BalanceAfter: 1_000_100, Counterparty: "mallory", BookedAt: bookedAt}
	produce := func(conn kafka.Conn, topic string) error {
		cl, err := conn.NewClient()
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		value := fmt.Appendf(nil, `{"account_id":%q,"seq":%d}`, forged.AccountID, forged.Seq)
		return cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(forged.AccountID), Value: value}).FirstErr()
	}
	if err := produce(channel, r.Entries); !errors.Is(err, kerr.TopicAuthorizationFailed) {
		t.Fatalf("the channel's produce to %s = %v, want TOPIC_AUTHORIZATION_FAILED", r.Entries, err)
	}
	// Through banksync's own publisher too: refused when it starts (it
	// may not create the topics) or when it publishes.
	if forger, err := kafka.NewPublisher(ctx, kafka.PublisherConfig{Conn: channel, Topic: r.Entries, DLQTopic: r.DLQ}); err == nil {
		err = forger.Publish(ctx, []banksync.Entry{forged})
		forger.Close()
		if !errors.Is(err, kerr.TopicAuthorizationFailed) {
			t.Fatalf("Publish with the channel's credentials = %v, want TOPIC_AUTHORIZATION_FAILED", err)
		}
	}
	if err := produce(channel, r.DLQ); err != nil {
		t.Fatalf("the channel's produce to its dead-letter topic %s = %v, want nil", r.DLQ, err)
	}
	if err := produce(core, r.Entries); err != nil {
		t.Fatalf("core's produce to %s = %v, want nil", r.Entries, err)
	}
}
