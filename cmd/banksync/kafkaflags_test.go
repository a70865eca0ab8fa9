package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"banksync/internal/testkit"
	"banksync/kafka"
)

// kafkaConnOf parses args and the environment as a command's Kafka flags
// do, and builds the connection to brokers.
func kafkaConnOf(t *testing.T, brokers []string, args ...string) (kafka.Conn, error) {
	t.Helper()
	f := newFlags("test", "")
	sec := f.kafkaSecurityFlags()
	if err := f.parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return sec.conn(brokers)
}

// plainPassword is what a PLAIN mechanism sends: its user and password.
func plainPassword(t *testing.T, c kafka.Conn) (user, password string) {
	t.Helper()
	if c.SASL == nil || c.SASL.Name() != "PLAIN" {
		t.Fatalf("SASL = %v, want PLAIN", c.SASL)
	}
	_, msg, err := c.SASL.Authenticate(context.Background(), "127.0.0.1:9092")
	if err != nil {
		t.Fatal(err)
	}
	parts := bytes.Split(msg, []byte{0}) // authzid, user, password
	if len(parts) != 3 {
		t.Fatalf("PLAIN message has %d parts", len(parts))
	}
	return string(parts[1]), string(parts[2])
}

func TestKafkaSecurityFlags(t *testing.T) {
	dir := t.TempDir()
	ca := testkit.NewCA(t, dir, "kafka-ca")
	cert, key := ca.Issue(t, "kafka-client", x509.ExtKeyUsageClientAuth)
	write := func(name, content string) string {
		file := filepath.Join(dir, name)
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return file
	}
	withNewline, without, empty := write("pw1", "s3cret\n"), write("pw2", "s3cret"), write("pw3", "\n")
	brokers := []string{"kafka-0:9093"}

	t.Run("plain text by default", func(t *testing.T) {
		c, err := kafkaConnOf(t, brokers)
		if err != nil || c.TLS != nil || c.SASL != nil || len(c.Brokers) != 1 {
			t.Fatalf("conn = %+v, %v; want brokers alone", c, err)
		}
	})
	t.Run("tls with system roots", func(t *testing.T) {
		c, err := kafkaConnOf(t, brokers, "--kafka-tls")
		if err != nil || c.TLS == nil || c.TLS.RootCAs != nil || len(c.TLS.Certificates) != 0 {
			t.Fatalf("conn = %+v, %v; want TLS on the system roots", c, err)
		}
	})
	t.Run("ca, client certificate and server name", func(t *testing.T) {
		c, err := kafkaConnOf(t, brokers, "--kafka-ca", ca.File, "--kafka-cert", cert, "--kafka-key", key, "--kafka-server-name", "kafka.internal")
		if err != nil || c.TLS == nil || c.TLS.RootCAs == nil || len(c.TLS.Certificates) != 1 || c.TLS.ServerName != "kafka.internal" {
			t.Fatalf("conn = %+v, %v; want TLS with the CA, the certificate and the name", c, err)
		}
	})
	t.Run("password file, one newline trimmed", func(t *testing.T) {
		for _, file := range []string{withNewline, without} {
			c, err := kafkaConnOf(t, brokers, "--kafka-tls", "--kafka-sasl-mechanism", "plain", "--kafka-sasl-user", "channel", "--kafka-sasl-password-file", file)
			if err != nil {
				t.Fatal(err)
			}
			if user, pw := plainPassword(t, c); user != "channel" || pw != "s3cret" {
				t.Fatalf("PLAIN sends %q/%q, want channel/s3cret", user, pw)
			}
		}
	})
	t.Run("everything from the environment", func(t *testing.T) {
		t.Setenv("BANKSYNC_KAFKA_TLS", "true")
		t.Setenv("BANKSYNC_KAFKA_CA", ca.File)
		t.Setenv("BANKSYNC_KAFKA_SASL_MECHANISM", "PLAIN")
		t.Setenv("BANKSYNC_KAFKA_SASL_USER", "core")
		t.Setenv("BANKSYNC_KAFKA_SASL_PASSWORD", "from env")
		c, err := kafkaConnOf(t, brokers)
		if err != nil || c.TLS == nil || c.TLS.RootCAs == nil {
			t.Fatalf("conn = %+v, %v; want TLS with the CA", c, err)
		}
		if user, pw := plainPassword(t, c); user != "core" || pw != "from env" {
			t.Fatalf("PLAIN sends %q/%q, want core/from env", user, pw)
		}
	})
	t.Run("scram mechanisms", func(t *testing.T) {
		for _, m := range []string{"scram-sha-256", "SCRAM-SHA-512"} {
			c, err := kafkaConnOf(t, brokers, "--kafka-sasl-mechanism", m, "--kafka-sasl-user", "core", "--kafka-sasl-password-file", without)
			if err != nil || c.SASL == nil || c.SASL.Name() != strings.ToUpper(m) {
				t.Fatalf("%s: conn = %+v, %v", m, c, err)
			}
		}
	})

	for _, tc := range []struct {
		name    string
		env     map[string]string
		brokers []string
		args    []string
		want    string
	}{
		{"tls without brokers", nil, nil, []string{"--kafka-tls"}, "need Kafka brokers"},
		{"password without brokers", map[string]string{kafkaPasswordEnv: "x"}, nil, nil, "need Kafka brokers"},
		{"mechanism without user", nil, brokers, []string{"--kafka-tls", "--kafka-sasl-mechanism", "scram-sha-512", "--kafka-sasl-password-file", without}, "needs --kafka-sasl-user"},
		{"user without mechanism", nil, brokers, []string{"--kafka-sasl-user", "core"}, "need --kafka-sasl-mechanism"},
		{"password without mechanism", map[string]string{kafkaPasswordEnv: "x"}, brokers, nil, "need --kafka-sasl-mechanism"},
		{"unknown mechanism", nil, brokers, []string{"--kafka-tls", "--kafka-sasl-mechanism", "gssapi", "--kafka-sasl-user", "core", "--kafka-sasl-password-file", without}, `"gssapi"`},
		{"plain without tls", nil, brokers, []string{"--kafka-sasl-mechanism", "plain", "--kafka-sasl-user", "core", "--kafka-sasl-password-file", without}, "needs --kafka-tls"},
		{"no password", nil, brokers, []string{"--kafka-tls", "--kafka-sasl-mechanism", "plain", "--kafka-sasl-user", "core"}, "has no password"},
		{"two passwords", map[string]string{kafkaPasswordEnv: "x"}, brokers, []string{"--kafka-tls", "--kafka-sasl-mechanism", "plain", "--kafka-sasl-user", "core", "--kafka-sasl-password-file", without}, "give one"},
		{"empty password file", nil, brokers, []string{"--kafka-tls", "--kafka-sasl-mechanism", "plain", "--kafka-sasl-user", "core", "--kafka-sasl-password-file", empty}, "is empty"},
		{"missing password file", nil, brokers, []string{"--kafka-tls", "--kafka-sasl-mechanism", "plain", "--kafka-sasl-user", "core", "--kafka-sasl-password-file", filepath.Join(dir, "none")}, "--kafka-sasl-password-file: open"},
		{"missing ca", nil, brokers, []string{"--kafka-ca", filepath.Join(dir, "none.pem")}, "--kafka-ca: open"},
		{"ca without certificates", nil, brokers, []string{"--kafka-ca", without}, "no PEM certificates"},
		{"key without certificate", nil, brokers, []string{"--kafka-key", key}, "--kafka-key is set but --kafka-cert is not"},
		{"certificate without key", nil, brokers, []string{"--kafka-cert", cert}, "--kafka-cert is set but --kafka-key is not"},
		{"key of another certificate", nil, brokers, []string{"--kafka-cert", cert, "--kafka-key", ca.File}, "--kafka-cert"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, err := kafkaConnOf(t, tc.brokers, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("conn(%q) = %+v, %v; want an error saying %q", tc.args, c, err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error %q shows the password", err)
			}
		})
	}
}

// -h names the password's variable, which has no flag.
func TestKafkaPasswordEnvListed(t *testing.T) {
	f := newFlags("core", "")
	f.kafkaSecurityFlags()
	var out bytes.Buffer
	f.SetOutput(&out)
	f.Usage()
	if !strings.Contains(out.String(), "["+kafkaPasswordEnv+"]") {
		t.Fatalf("usage does not name [%s]:\n%s", kafkaPasswordEnv, out.String())
	}
	if strings.Contains(out.String(), "-kafka-sasl-password ") {
		t.Fatal("usage lists a --kafka-sasl-password flag: a password on the command line is visible in ps")
	}
}
