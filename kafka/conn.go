package kafka

import (
	"crypto/tls"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Conn is how a client reaches Kafka: the seed brokers and, on a secured
// cluster, TLS and SASL. Every client banksync makes is built from one, so
// a setting given once at startup reaches the publisher, the consumer, the
// dead-letter tools and the startup check alike.
type Conn struct {
	Brokers []string
	// TLS, if set, is used to dial every broker; an empty ServerName is
	// filled with each broker's host.
	TLS *tls.Config
	// SASL, if set, authenticates each connection (after TLS, when set).
	SASL sasl.Mechanism
}

// Brokers is a Conn to a cluster that takes plain connections.
func Brokers(addrs ...string) Conn { return Conn{Brokers: addrs} }

// Opts are the client options that reach the cluster, followed by more: a
// client's own.
func (c Conn) Opts(more ...kgo.Opt) []kgo.Opt {
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...)}
	if c.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(c.TLS))
	}
	if c.SASL != nil {
		opts = append(opts, kgo.SASL(c.SASL))
	}
	return append(opts, more...)
}

// NewClient is a client that reaches the cluster through c, with more
// options of its own.
func (c Conn) NewClient(more ...kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(c.Opts(more...)...)
}

// String names the brokers and the security in use, never a secret: it is
// what logs and errors show of a Conn.
func (c Conn) String() string {
	s := strings.Join(c.Brokers, ",")
	switch {
	case c.TLS != nil && c.SASL != nil:
		return s + " (TLS, SASL " + c.SASL.Name() + ")"
	case c.TLS != nil:
		return s + " (TLS)"
	case c.SASL != nil:
		return s + " (SASL " + c.SASL.Name() + " without TLS)"
	}
	return s
}

// SASL mechanisms banksync speaks, by the names Kafka gives them.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// SASLMechanism is the mechanism named (PLAIN, SCRAM-SHA-256 or
// SCRAM-SHA-512, in any case) with user's credentials.
func SASLMechanism(name, user, password string) (sasl.Mechanism, error) {
	if user == "" {
		return nil, fmt.Errorf("sasl %s: no user", name)
	}
	switch strings.ToUpper(name) {
	case SASLPlain:
		return plain.Auth{User: user, Pass: password}.AsMechanism(), nil
	case SASLScramSHA256:
		return scram.Auth{User: user, Pass: password}.AsSha256Mechanism(), nil
	case SASLScramSHA512:
		return scram.Auth{User: user, Pass: password}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("sasl mechanism %q: want %s, %s or %s", name, SASLPlain, SASLScramSHA256, SASLScramSHA512)
}
