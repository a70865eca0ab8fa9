package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// reachInterval is the pause between rounds of Reach: short, because a
// broker starting beside us answers within a second or two and a refused
// connection costs nothing to try again.
const reachInterval = 250 * time.Millisecond

// Reach waits until one of conn's brokers answers a metadata request,
// trying again until ctx ends, and then returns the last error a broker
// gave (or ctx's, if none answered at all). Clients connect lazily, so
// without this a wrong address or credential would show only as warnings
// in the log, for ever; a process calls it once at startup, bounded by ctx,
// to fail with the cause instead. A cause that waiting cannot cure — a
// refused password, an untrusted certificate, a listener that speaks
// another protocol — ends it at once.
func Reach(ctx context.Context, conn Conn) error {
	if len(conn.Brokers) == 0 {
		return errors.New("no brokers")
	}
	// No logger: the error returned is the one report of a failure.
	cl, err := conn.NewClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	var cause error // the last error that is not ctx ending
	for {
		err := cl.Ping(ctx)
		if err == nil {
			return nil
		}
		if why := lasting(err); why != "" {
			return fmt.Errorf("%s: %w", why, err)
		}
		// An attempt cut short by ctx ending (a dial's i/o timeout on a
		// loaded machine) says less than the one before it.
		if ctx.Err() == nil || cause == nil && !errors.Is(err, ctx.Err()) {
			cause = err
		}
		select {
		case <-ctx.Done():
			if cause == nil {
				return fmt.Errorf("no answer: %w", ctx.Err())
			}
			return cause
		case <-time.After(reachInterval):
		}
	}
}

// lasting names the cause of err when it is one that trying again cannot
// cure, because it comes from the configuration of the client or of the
// cluster; it returns "" for the others (a broker not up yet, a network
// hiccup). franz-go returns these at once rather than retrying them, so a
// wrong password does not spin.
func lasting(err error) string {
	var (
		unknownCA  x509.UnknownAuthorityError
		wrongHost  x509.HostnameError
		badCert    x509.CertificateInvalidError
		verify     *tls.CertificateVerificationError
		op         *net.OpError
		record     tls.RecordHeaderError
		firstEOF   *kgo.ErrFirstReadEOF
		kafkaError *kerr.Error
	)
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return "kafka SASL authentication failed (wrong user or password?)"
	case errors.Is(err, kerr.UnsupportedSaslMechanism), errors.Is(err, kerr.IllegalSaslState):
		return "kafka SASL mechanism not enabled on the listener"
	case errors.As(err, &unknownCA):
		return "kafka broker certificate not trusted (x509 unknown authority: wrong --kafka-ca?)"
	case errors.As(err, &wrongHost):
		return "kafka broker certificate is for another name (see --kafka-server-name)"
	case errors.As(err, &badCert), errors.As(err, &verify):
		return "kafka broker certificate rejected"
	case errors.As(err, &op) && op.Op == "remote error": // a TLS alert from the broker
		return "kafka broker refused the TLS handshake (does it require a client certificate?)"
	case errors.As(err, &record):
		return "kafka broker does not speak TLS (is it a plaintext listener?)"
	case errors.As(err, &firstEOF), strings.Contains(err.Error(), "plaintext connection speaking to a tls endpoint"):
		return "kafka broker closed the connection (is it a TLS listener, or does it require SASL?)"
	case errors.As(err, &kafkaError) && !kafkaError.Retriable:
		return "kafka refused the client"
	}
	return ""
}
