package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"banksync"
	"banksync/internal/testkit"
	"banksync/kafka/kafkatest"
)

// kafkaFailFast bounds a start refused by Kafka for a cause waiting cannot
// cure, the process's start included: under the 10 s the binary waits for
// a broker to come up, which a start that kept trying would take.
const kafkaFailFast = 8 * time.Second

// Core, the channel and the dead-letter tool reach a SASL_SSL cluster with
// the Kafka flags; a wrong password, an unknown user, an untrusted CA and
// plain text each stop core or the channel at once, exit 1, with one line
// that says why.
func TestStartupOnSecuredKafka(t *testing.T) {
	c := kafkatest.StartSecured(t)
	c.GrantBanksync(t, kafkatest.Resources{Entries: banksync.TopicLedgerEntries, DLQ: banksync.TopicLedgerEntriesDLQ,
		Group: "banksync-channel", ReplayGroup: "banksync-dlq-replay"})
	dir := t.TempDir()
	write := func(name, content string) string {
		file := filepath.Join(dir, name)
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return file
	}
	// As a Kubernetes Secret created with echo would be: a newline at the end.
	corePassword := write("core-password", kafkatest.Password(kafkatest.UserCore)+"\n")
	channelPassword := write("channel-password", kafkatest.Password(kafkatest.UserChannel)+"\n")
	wrongPassword := write("wrong-password", "not-the-password\n")
	otherCA, err := kafkatest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	untrusted := write("other-ca.pem", string(otherCA))
	brokers := strings.Join(c.Addrs(), ",")
	kafkaArgs := func(ca, user, password string) []string {
		return []string{"--kafka", brokers, "--kafka-ca", ca, "--kafka-cert", c.ClientCertFile(), "--kafka-key", c.ClientKeyFile(),
			"--kafka-sasl-mechanism", "scram-sha-512", "--kafka-sasl-user", user, "--kafka-sasl-password-file", password}
	}
	core := func(kafka ...string) []string {
		return append([]string{"core", "--db", "sqlite:" + filepath.Join(t.TempDir(), "core.db"), "--listen", "127.0.0.1:0"}, kafka...)
	}
	channel := func(kafka ...string) []string {
		return append([]string{"channel", "--db", "sqlite:" + filepath.Join(t.TempDir(), "channel.db"), "--listen", "127.0.0.1:0",
			"--core-url", "http://" + closedAddr(t)}, kafka...)
	}

	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			want []string
			args []string
		}{
			{"core wrong password", []string{"reach kafka [" + strings.Join(c.Addrs(), " ") + "]", "SASL authentication failed"},
				core(kafkaArgs(c.CAFile(), kafkatest.UserCore, wrongPassword)...)},
			{"channel unknown user", []string{"reach kafka", "SASL authentication failed"},
				channel(kafkaArgs(c.CAFile(), "mallory", channelPassword)...)},
			{"channel untrusted CA", []string{"reach kafka", "x509", "unknown authority"},
				channel(kafkaArgs(untrusted, kafkatest.UserChannel, channelPassword)...)},
			{"core plain text", []string{"reach kafka", "closed the connection", "TLS listener"},
				core("--kafka", brokers)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				start := time.Now()
				line := failStart(t, tc.want, tc.args...)
				if took := time.Since(start); took > kafkaFailFast {
					t.Errorf("refused after %v, want under %v: it waited for what cannot come", took.Round(time.Millisecond), kafkaFailFast)
				}
				if strings.Contains(line, "-secret") || strings.Contains(line, "not-the-password") {
					t.Errorf("failure line %q shows a password", line)
				}
			})
		}
	})

	t.Run("accepted", func(t *testing.T) {
		env := append([]string(nil), startupEnv...)
		startProc(t, env, "core listening", "addr", core(kafkaArgs(c.CAFile(), kafkatest.UserCore, corePassword)...)...)
		startProc(t, env, "channel listening", "addr", channel(kafkaArgs(c.CAFile(), kafkatest.UserChannel, channelPassword)...)...)
		// The dead-letter tool, with the channel's credentials, reads the
		// dead-letter topic core created — once every broker knows of it.
		// Each check runs the tool.
		testkit.EventuallyEvery(t, 30*time.Second, 500*time.Millisecond, "banksync dlq list reads the topic", func() error {
			cmd := exec.Command(binary, append([]string{"dlq", "list"}, kafkaArgs(c.CAFile(), kafkatest.UserChannel, channelPassword)...)...)
			out, err := cmd.CombinedOutput()
			if err == nil && strings.Contains(string(out), "0 dead letters") {
				return nil
			}
			if !strings.Contains(string(out), "UNKNOWN_TOPIC_OR_PARTITION") {
				t.Fatalf("banksync dlq list = %v:\n%s", err, out)
			}
			return fmt.Errorf("%v:\n%s", err, out)
		})
	})
}
