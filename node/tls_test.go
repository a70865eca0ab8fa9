package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"banksync"
	"banksync/channel"
	"banksync/internal/testkit"
	"banksync/kafka"
)

const tlsTestToken = "tls-test-service-token"

// mtlsCore is a core that serves HTTPS and requires a client certificate
// from ca; other is a CA it does not trust.
type mtlsCore struct {
	core                  *Core
	url                   string
	ca, other             *testkit.CA
	clientCert, clientKey string // signed by ca
	rogueCert, rogueKey   string // signed by other
	log                   *testkit.SyncBuffer
}

func startMTLSCore(t *testing.T) *mtlsCore {
	t.Helper()
	dir := t.TempDir()
	m := &mtlsCore{ca: testkit.NewCA(t, dir, "ca"), other: testkit.NewCA(t, dir, "other-ca"), log: &testkit.SyncBuffer{}}
	serverCert, serverKey := m.ca.Issue(t, "core", x509.ExtKeyUsageServerAuth)
	m.clientCert, m.clientKey = m.ca.Issue(t, "channel", x509.ExtKeyUsageClientAuth)
	m.rogueCert, m.rogueKey = m.other.Issue(t, "rogue", x509.ExtKeyUsageClientAuth)
	core, err := StartCore(t.Context(), CoreConfig{
		Listen: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(dir, "core.db"), EmbeddedKafka: &kafka.ClusterConfig{Addr: "127.0.0.1:0"},
		Partitions: 2, ServiceToken: tlsTestToken, AmountMax: banksync.AmountMaxDefault,
		TLSCert: serverCert, TLSKey: serverKey, ClientCA: m.ca.File, OpsListen: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(m.log, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("start core: %v", err)
	}
	t.Cleanup(func() {
		if err := core.Close(); err != nil {
			t.Errorf("close core: %v", err)
		}
	})
	m.core, m.url = core, "https://"+core.Addr()
	return m
}

// client returns an HTTPS client that trusts roots and presents cert, if
// any, whether or not core's list of acceptable CAs names its issuer.
func (m *mtlsCore) client(t *testing.T, roots *testkit.CA, certFile, keyFile string) *http.Client {
	t.Helper()
	cfg := &tls.Config{RootCAs: roots.Pool()}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		// Go's client leaves out a certificate whose issuer the server
		// did not ask for; sending it regardless makes core verify it.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// createAccount asks core, at url, to open account for alice.
func createAccount(ctx context.Context, hc *http.Client, url, account string) (*http.Response, error) {
	body, _ := json.Marshal(map[string]string{"account_id": account, "owner": "alice"})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/core/v1/accounts", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tlsTestToken)
	req.Header.Set("Content-Type", "application/json")
	return hc.Do(req)
}

// assertNoAccount checks that core's ledger never opened account: the
// refused caller got nowhere near a handler.
func (m *mtlsCore) assertNoAccount(t *testing.T, account string) {
	t.Helper()
	if _, err := m.core.Ledger().Account(t.Context(), account); banksync.ErrorCode(err) != banksync.ENOTFOUND {
		t.Errorf("ledger.Account(%q): err = %v, want %s: a refused caller wrote to the ledger", account, err, banksync.ENOTFOUND)
	}
}

// assertHandshakeRefused checks that a call got no HTTP answer and that
// core refused the handshake for reason. What the client sees depends on a
// race: core's alert ("remote error: tls: …") if it reads it before core
// closes, a broken pipe if it is still writing its request; so core's log
// says why.
func (m *mtlsCore) assertHandshakeRefused(t *testing.T, resp *http.Response, err error, reason string) {
	t.Helper()
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got HTTP %s, want the TLS handshake to fail", resp.Status)
	}
	t.Logf("client: %v", err)
	want := "TLS handshake error from " // net/http's, through ErrorLog
	testkit.Eventually(t, 5*time.Second, fmt.Sprintf("core logs a handshake refused for %q", reason), func() error {
		log := m.log.String()
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, want) && strings.Contains(line, reason) {
				return nil
			}
		}
		return fmt.Errorf("its log:\n%s", log)
	})
}

func TestCoreMutualTLS(t *testing.T) {
	m := startMTLSCore(t)

	t.Run("trusted client", func(t *testing.T) {
		resp, err := createAccount(t.Context(), m.client(t, m.ca, m.clientCert, m.clientKey), m.url, "acct-trusted")
		if err != nil {
			t.Fatalf("create account over mutual TLS: %v", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("status = %s, want 201 Created: %s", resp.Status, b)
		}
		if resp.TLS == nil {
			t.Fatal("answer came without TLS")
		}
		if got, want := resp.TLS.Version, uint16(tls.VersionTLS13); got != want {
			t.Errorf("TLS version = %s, want %s", tls.VersionName(got), tls.VersionName(want))
		}
		if got := resp.TLS.PeerCertificates[0].Subject.CommonName; got != "core" {
			t.Errorf("server certificate CN = %q, want core", got)
		}
		if _, err := m.core.Ledger().Account(t.Context(), "acct-trusted"); err != nil {
			t.Errorf("ledger.Account(acct-trusted): %v, want the account the call created", err)
		}
		// TLS is on top of the service token, not instead of it.
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, m.url+"/core/v1/accounts/acct-trusted", nil)
		resp2, err := m.client(t, m.ca, m.clientCert, m.clientKey).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp2.Body.Close()
		if resp2.StatusCode != http.StatusUnauthorized {
			t.Errorf("without the service token: status = %s, want 401", resp2.Status)
		}
	})

	t.Run("probes on the ops port", func(t *testing.T) {
		// Kubelet probes and Prometheus carry no client certificate: the
		// ops port answers them over plain HTTP, and serves nothing else.
		ops := "http://" + m.core.OpsAddr()
		for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200, "/core/v1/outbox": 404} {
			resp, err := http.Get(ops + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("GET %s on the ops port = %d, want %d", path, resp.StatusCode, want)
			}
		}
	})

	t.Run("no client certificate", func(t *testing.T) {
		resp, err := createAccount(t.Context(), m.client(t, m.ca, "", ""), m.url, "acct-anonymous")
		m.assertHandshakeRefused(t, resp, err, "client didn't provide a certificate")
		m.assertNoAccount(t, "acct-anonymous")
	})

	t.Run("client certificate from another CA", func(t *testing.T) {
		resp, err := createAccount(t.Context(), m.client(t, m.ca, m.rogueCert, m.rogueKey), m.url, "acct-rogue")
		m.assertHandshakeRefused(t, resp, err, "certificate signed by unknown authority")
		m.assertNoAccount(t, "acct-rogue")
	})

	t.Run("plain HTTP", func(t *testing.T) {
		hc := &http.Client{Timeout: 10 * time.Second}
		resp, err := createAccount(t.Context(), hc, "http://"+m.core.Addr(), "acct-plain")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 300 {
				t.Errorf("plain HTTP: status = %s, want an error or 4xx: %s", resp.Status, b)
			}
			t.Logf("plain HTTP answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
		}
		m.assertNoAccount(t, "acct-plain")
	})
}

func TestChannelCoreMutualTLS(t *testing.T) {
	m := startMTLSCore(t)
	ctx := t.Context()
	if _, _, err := m.core.Ledger().CreateAccount(ctx, "acct-1", "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.core.Ledger().Deposit(ctx, banksync.DepositRequest{ExternalRef: "dep-1", AccountID: "acct-1", Amount: 5000, Sender: "shinhan"}); err != nil {
		t.Fatal(err)
	}

	// No Kafka: the only way the channel learns of the deposit is its
	// HTTPS call to core.
	startTLSChannel := func(t *testing.T, coreCA, certFile, keyFile string) *Channel {
		t.Helper()
		n, err := StartChannel(ctx, ChannelConfig{
			Listen: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(t.TempDir(), "channel.db"), CoreURL: m.url,
			CoreCA: coreCA, CoreCert: certFile, CoreKey: keyFile,
			ServiceToken: tlsTestToken, JWTSecret: "tls-test-jwt-secret-of-32-bytes!", Channel: channel.Config{AmountMax: banksync.AmountMaxDefault},
		})
		if err != nil {
			t.Fatalf("start channel: %v", err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}

	t.Run("trusted both ways", func(t *testing.T) {
		n := startTLSChannel(t, m.ca.File, m.clientCert, m.clientKey)
		st, err := n.ch.Sync(ctx, "acct-1")
		if err != nil {
			t.Fatalf("sync over mutual TLS: %v", err)
		}
		if st.Balance != 5000 || st.SyncedSeq != 1 {
			t.Errorf("synced state = balance %d through seq %d, want 5000 through 1", st.Balance, st.SyncedSeq)
		}
	})

	t.Run("no client certificate", func(t *testing.T) {
		n := startTLSChannel(t, m.ca.File, "", "")
		_, err := n.ch.Sync(ctx, "acct-1")
		if banksync.ErrorCode(err) != banksync.EUNAVAILABLE {
			t.Fatalf("sync without a client certificate: err = %v, want %s", err, banksync.EUNAVAILABLE)
		}
		m.assertHandshakeRefused(t, nil, err, "client didn't provide a certificate")
	})

	t.Run("core's certificate not from --core-ca", func(t *testing.T) {
		n := startTLSChannel(t, m.other.File, m.clientCert, m.clientKey)
		_, err := n.ch.Sync(ctx, "acct-1")
		var verr *tls.CertificateVerificationError
		if !errors.As(err, &verr) {
			t.Fatalf("sync trusting another CA: err = %v, want the channel to refuse core's certificate", err)
		}
	})
}

func TestTLSStartupErrors(t *testing.T) {
	dir := t.TempDir()
	ca := testkit.NewCA(t, dir, "ca")
	serverCert, serverKey := ca.Issue(t, "core", x509.ExtKeyUsageServerAuth)
	_, otherKey := ca.Issue(t, "other", x509.ExtKeyUsageServerAuth)
	missing := filepath.Join(dir, "missing.pem")
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("# no certificates here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	coreWith := func(cert, key, clientCA string) func() error {
		return func() error {
			// The files are checked before the database is opened: a bad
			// DSN would be the error otherwise.
			n, err := StartCore(t.Context(), CoreConfig{Listen: "127.0.0.1:0", DB: "bad-dsn", TLSCert: cert, TLSKey: key, ClientCA: clientCA})
			if err == nil {
				n.Close()
			}
			return err
		}
	}
	channelWith := func(url, coreCA, cert, key string) func() error {
		return func() error {
			n, err := StartChannel(t.Context(), ChannelConfig{Listen: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(t.TempDir(), "channel.db"),
				CoreURL: url, ServiceToken: tlsTestToken, JWTSecret: "tls-test-jwt-secret-of-32-bytes!", CoreCA: coreCA, CoreCert: cert, CoreKey: key})
			if err == nil {
				n.Close()
			}
			return err
		}
	}
	const https = "https://127.0.0.1:1"
	for _, tc := range []struct {
		name  string
		start func() error
		want  []string // all in the error
	}{
		{"core: client CA without a server certificate", coreWith("", "", ca.File), []string{"--client-ca needs --tls-cert and --tls-key"}},
		{"core: certificate without key", coreWith(serverCert, "", ""), []string{"--tls-cert is set but --tls-key is not"}},
		{"core: key without certificate", coreWith("", serverKey, ""), []string{"--tls-key is set but --tls-cert is not"}},
		{"core: certificate file missing", coreWith(missing, serverKey, ""), []string{"--tls-cert", missing, "no such file"}},
		{"core: key does not match", coreWith(serverCert, otherKey, ""), []string{"--tls-cert", "--tls-key", "private key does not match public key"}},
		{"core: client CA file missing", coreWith(serverCert, serverKey, missing), []string{"--client-ca", missing, "no such file"}},
		{"core: client CA bundle without certificates", coreWith(serverCert, serverKey, empty), []string{"--client-ca", empty, "no PEM certificates"}},
		{"core: client CA bundle is a key", coreWith(serverCert, serverKey, serverKey), []string{"--client-ca", "no PEM certificates"}},
		{"channel: certificate without key", channelWith(https, ca.File, serverCert, ""), []string{"--core-cert is set but --core-key is not"}},
		{"channel: key does not match", channelWith(https, ca.File, serverCert, otherKey), []string{"--core-cert", "private key does not match public key"}},
		{"channel: CA file missing", channelWith(https, missing, "", ""), []string{"--core-ca", missing, "no such file"}},
		{"channel: CA bundle without certificates", channelWith(https, empty, "", ""), []string{"--core-ca", "no PEM certificates"}},
		{"channel: TLS files with an http URL", channelWith("http://127.0.0.1:1", ca.File, "", ""), []string{"need an https:// --core-url"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.start()
			if err == nil {
				t.Fatal("started, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
