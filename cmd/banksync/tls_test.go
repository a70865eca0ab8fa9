package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"banksync"
)

const tlsTestToken = "tls-test-service-token"

// testCA signs the certificates of one test; its files are under dir.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // the CA certificate, PEM
	dir  string
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key := newTestKey(t)
	tmpl := certTemplate(t, name)
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{cert: cert, key: key, file: filepath.Join(dir, name+".pem"), dir: dir}
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue signs a leaf for name, a server's (SAN 127.0.0.1) or a client's,
// and writes name.pem and name-key.pem.
func (ca *testCA) issue(t *testing.T, name string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key := newTestKey(t)
	tmpl := certTemplate(t, name)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(ca.dir, name+".pem"), filepath.Join(ca.dir, name+"-key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	return certFile, keyFile
}

func newTestKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// certTemplate is valid for an hour: long enough for the test, short
// enough that a leaked file is worth nothing.
func certTemplate(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(time.Hour),
	}
}

func writePEM(t *testing.T, file, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// mtlsCore is a core that serves HTTPS and requires a client certificate
// from ca; other is a CA it does not trust.
type mtlsCore struct {
	core                  *coreNode
	url                   string
	ca, other             *testCA
	clientCert, clientKey string // signed by ca
	rogueCert, rogueKey   string // signed by other
	log                   *syncBuffer
}

// syncBuffer collects core's log, which its server goroutines write.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startMTLSCore(t *testing.T) *mtlsCore {
	t.Helper()
	dir := t.TempDir()
	m := &mtlsCore{ca: newTestCA(t, dir, "ca"), other: newTestCA(t, dir, "other-ca"), log: &syncBuffer{}}
	serverCert, serverKey := m.ca.issue(t, "core", x509.ExtKeyUsageServerAuth)
	m.clientCert, m.clientKey = m.ca.issue(t, "channel", x509.ExtKeyUsageClientAuth)
	m.rogueCert, m.rogueKey = m.other.issue(t, "rogue", x509.ExtKeyUsageClientAuth)
	core, err := startCore(t.Context(), coreConfig{
		Listen: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(dir, "core.db"), Kafka: "embedded", KafkaListen: "127.0.0.1:0",
		Partitions: 2, ServiceToken: tlsTestToken, AmountMax: banksync.AmountMaxDefault,
		TLSCert: serverCert, TLSKey: serverKey, ClientCA: m.ca.file, OpsListen: "127.0.0.1:0",
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
func (m *mtlsCore) client(t *testing.T, roots *testCA, certFile, keyFile string) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(roots.cert)
	cfg := &tls.Config{RootCAs: pool}
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
	if _, err := m.core.ledger.Account(t.Context(), account); banksync.ErrorCode(err) != banksync.ENOTFOUND {
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
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		for _, line := range strings.Split(m.log.String(), "\n") {
			if strings.Contains(line, want) && strings.Contains(line, reason) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("core did not log a handshake refused for %q; its log:\n%s", reason, m.log)
		}
	}
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
		if _, err := m.core.ledger.Account(t.Context(), "acct-trusted"); err != nil {
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
		ops := "http://" + m.core.ops.Addr()
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
	if _, _, err := m.core.ledger.CreateAccount(ctx, "acct-1", "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.core.ledger.Deposit(ctx, banksync.DepositRequest{ExternalRef: "dep-1", AccountID: "acct-1", Amount: 5000, Sender: "shinhan"}); err != nil {
		t.Fatal(err)
	}

	// No Kafka: the only way the channel learns of the deposit is its
	// HTTPS call to core.
	startTLSChannel := func(t *testing.T, coreCA, certFile, keyFile string) *channelNode {
		t.Helper()
		n, err := startChannel(ctx, channelConfig{
			Listen: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(t.TempDir(), "channel.db"), CoreURL: m.url,
			CoreCA: coreCA, CoreCert: certFile, CoreKey: keyFile,
			ServiceToken: tlsTestToken, JWTSecret: "tls-test-jwt-secret-of-32-bytes!", AmountMax: banksync.AmountMaxDefault,
		})
		if err != nil {
			t.Fatalf("start channel: %v", err)
		}
		t.Cleanup(func() { n.Close() })
		return n
	}

	t.Run("trusted both ways", func(t *testing.T) {
		n := startTLSChannel(t, m.ca.file, m.clientCert, m.clientKey)
		st, err := n.ch.Sync(ctx, "acct-1")
		if err != nil {
			t.Fatalf("sync over mutual TLS: %v", err)
		}
		if st.Balance != 5000 || st.SyncedSeq != 1 {
			t.Errorf("synced state = balance %d through seq %d, want 5000 through 1", st.Balance, st.SyncedSeq)
		}
	})

	t.Run("no client certificate", func(t *testing.T) {
		n := startTLSChannel(t, m.ca.file, "", "")
		_, err := n.ch.Sync(ctx, "acct-1")
		if banksync.ErrorCode(err) != banksync.EUNAVAILABLE {
			t.Fatalf("sync without a client certificate: err = %v, want %s", err, banksync.EUNAVAILABLE)
		}
		m.assertHandshakeRefused(t, nil, err, "client didn't provide a certificate")
	})

	t.Run("core's certificate not from --core-ca", func(t *testing.T) {
		n := startTLSChannel(t, m.other.file, m.clientCert, m.clientKey)
		_, err := n.ch.Sync(ctx, "acct-1")
		var verr *tls.CertificateVerificationError
		if !errors.As(err, &verr) {
			t.Fatalf("sync trusting another CA: err = %v, want the channel to refuse core's certificate", err)
		}
	})
}

func TestTLSStartupErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	serverCert, serverKey := ca.issue(t, "core", x509.ExtKeyUsageServerAuth)
	_, otherKey := ca.issue(t, "other", x509.ExtKeyUsageServerAuth)
	missing := filepath.Join(dir, "missing.pem")
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("# no certificates here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	coreWith := func(cert, key, clientCA string) func() error {
		return func() error {
			// The files are checked before the database is opened: a bad
			// DSN would be the error otherwise.
			n, err := startCore(t.Context(), coreConfig{Listen: "127.0.0.1:0", DB: "bad-dsn", Kafka: "none", TLSCert: cert, TLSKey: key, ClientCA: clientCA})
			if err == nil {
				n.Close()
			}
			return err
		}
	}
	channelWith := func(url, coreCA, cert, key string) func() error {
		return func() error {
			n, err := startChannel(t.Context(), channelConfig{Listen: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(t.TempDir(), "channel.db"),
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
		{"core: client CA without a server certificate", coreWith("", "", ca.file), []string{"--client-ca needs --tls-cert and --tls-key"}},
		{"core: certificate without key", coreWith(serverCert, "", ""), []string{"--tls-cert is set but --tls-key is not"}},
		{"core: key without certificate", coreWith("", serverKey, ""), []string{"--tls-key is set but --tls-cert is not"}},
		{"core: certificate file missing", coreWith(missing, serverKey, ""), []string{"--tls-cert", missing, "no such file"}},
		{"core: key does not match", coreWith(serverCert, otherKey, ""), []string{"--tls-cert", "--tls-key", "private key does not match public key"}},
		{"core: client CA file missing", coreWith(serverCert, serverKey, missing), []string{"--client-ca", missing, "no such file"}},
		{"core: client CA bundle without certificates", coreWith(serverCert, serverKey, empty), []string{"--client-ca", empty, "no PEM certificates"}},
		{"core: client CA bundle is a key", coreWith(serverCert, serverKey, serverKey), []string{"--client-ca", "no PEM certificates"}},
		{"channel: certificate without key", channelWith(https, ca.file, serverCert, ""), []string{"--core-cert is set but --core-key is not"}},
		{"channel: key does not match", channelWith(https, ca.file, serverCert, otherKey), []string{"--core-cert", "private key does not match public key"}},
		{"channel: CA file missing", channelWith(https, missing, "", ""), []string{"--core-ca", missing, "no such file"}},
		{"channel: CA bundle without certificates", channelWith(https, empty, "", ""), []string{"--core-ca", "no PEM certificates"}},
		{"channel: TLS files with an http URL", channelWith("http://127.0.0.1:1", ca.file, "", ""), []string{"need an https:// --core-url"}},
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
