package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"strings"

	"banksync/kafka"
	"banksync/node"
)

// kafkaPasswordEnv holds the SASL password when no file does. There is no
// flag for it: a command line is visible to every user of the machine (ps),
// a process's environment is not.
const kafkaPasswordEnv = "BANKSYNC_KAFKA_SASL_PASSWORD"

// kafkaSecurity is what the Kafka connection flags say beyond the brokers:
// how to encrypt and authenticate. Each command registers its own --kafka,
// whose default differs.
type kafkaSecurity struct {
	tls          bool
	ca           string
	cert, key    string
	serverName   string
	mechanism    string
	user         string
	passwordFile string
}

// kafkaSecurityFlags adds the Kafka TLS and SASL flags; after parse, conn
// builds the connection they describe.
func (f *flags) kafkaSecurityFlags() *kafkaSecurity {
	var k kafkaSecurity
	f.Bool(&k.tls, "kafka-tls", "BANKSYNC_KAFKA_TLS", false, "dial Kafka over TLS, trusting the system roots unless --kafka-ca is set (any other --kafka TLS flag implies it)")
	f.String(&k.ca, "kafka-ca", "BANKSYNC_KAFKA_CA", "", "PEM bundle of CAs the brokers' certificates must chain to")
	f.String(&k.cert, "kafka-cert", "BANKSYNC_KAFKA_CERT", "", "PEM client certificate presented to the brokers (a listener with ssl.client.auth=required)")
	f.String(&k.key, "kafka-key", "BANKSYNC_KAFKA_KEY", "", "PEM private key of --kafka-cert")
	f.String(&k.serverName, "kafka-server-name", "BANKSYNC_KAFKA_SERVER_NAME", "", "name the brokers' certificates must carry; unset, each broker's host")
	f.String(&k.mechanism, "kafka-sasl-mechanism", "BANKSYNC_KAFKA_SASL_MECHANISM", "", "SASL mechanism: plain, scram-sha-256 or scram-sha-512; unset, no SASL")
	f.String(&k.user, "kafka-sasl-user", "BANKSYNC_KAFKA_SASL_USER", "", "SASL user name (the principal User:NAME the ACLs are granted to)")
	f.String(&k.passwordFile, "kafka-sasl-password-file", "BANKSYNC_KAFKA_SASL_PASSWORD_FILE", "",
		"file holding the SASL password (one trailing newline ignored), e.g. a mounted Secret; or the password itself in ["+kafkaPasswordEnv+"], never on the command line")
	return &k
}

// set tells whether any of the flags is.
func (k *kafkaSecurity) set() bool {
	return *k != (kafkaSecurity{}) || os.Getenv(kafkaPasswordEnv) != ""
}

// conn is the connection to brokers the flags describe, files read: a
// missing file or a bad combination fails here, before anything starts.
func (k *kafkaSecurity) conn(brokers []string) (kafka.Conn, error) {
	c := kafka.Conn{Brokers: brokers}
	if len(brokers) == 0 {
		if k.set() {
			return c, errors.New("the --kafka-tls, --kafka-ca, --kafka-cert, --kafka-key, --kafka-server-name and --kafka-sasl-* settings need Kafka brokers (--kafka host:port,…); the embedded cluster speaks plain Kafka")
		}
		return c, nil
	}
	var err error
	if c.TLS, err = k.tlsConfig(); err != nil {
		return c, err
	}
	if k.mechanism == "" {
		if k.user != "" || k.passwordFile != "" || os.Getenv(kafkaPasswordEnv) != "" {
			return c, errors.New("--kafka-sasl-user and the SASL password need --kafka-sasl-mechanism (plain, scram-sha-256 or scram-sha-512)")
		}
		return c, nil
	}
	if strings.EqualFold(k.mechanism, kafka.SASLPlain) && c.TLS == nil {
		return c, errors.New("--kafka-sasl-mechanism plain sends the password as it is: it needs --kafka-tls (or use scram-sha-512)")
	}
	if k.user == "" {
		return c, fmt.Errorf("--kafka-sasl-mechanism %s needs --kafka-sasl-user", k.mechanism)
	}
	password, err := k.password()
	if err != nil {
		return c, err
	}
	if c.SASL, err = kafka.SASLMechanism(k.mechanism, k.user, password); err != nil {
		return c, fmt.Errorf("--kafka-sasl-mechanism: %w", err)
	}
	return c, nil
}

// tlsConfig is nil unless a TLS flag is set.
func (k *kafkaSecurity) tlsConfig() (*tls.Config, error) {
	if !k.tls && k.ca == "" && k.cert == "" && k.key == "" && k.serverName == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: node.TLSVersionMin, ServerName: k.serverName}
	if k.ca != "" {
		pool, err := node.LoadCertPool("--kafka-ca", k.ca)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if k.cert != "" || k.key != "" {
		cert, err := node.LoadKeyPair("--kafka-cert", k.cert, "--kafka-key", k.key)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// password reads the SASL password from its file or, without one, from
// kafkaPasswordEnv; one of them must hold it, not both.
func (k *kafkaSecurity) password() (string, error) {
	fromEnv, inEnv := os.LookupEnv(kafkaPasswordEnv)
	switch {
	case k.passwordFile != "" && inEnv:
		return "", fmt.Errorf("both --kafka-sasl-password-file and %s are set: give one", kafkaPasswordEnv)
	case k.passwordFile == "" && fromEnv == "":
		return "", fmt.Errorf("SASL user %s has no password: set --kafka-sasl-password-file or %s", k.user, kafkaPasswordEnv)
	case k.passwordFile == "":
		return fromEnv, nil
	}
	data, err := os.ReadFile(k.passwordFile)
	if err != nil {
		return "", fmt.Errorf("--kafka-sasl-password-file: %w", err)
	}
	// Files written by echo or an editor end in a newline the password
	// does not have; Kubernetes writes a Secret's bytes as they are.
	password := strings.TrimSuffix(strings.TrimSuffix(string(data), "\n"), "\r")
	if password == "" {
		return "", fmt.Errorf("--kafka-sasl-password-file %s is empty", k.passwordFile)
	}
	return password, nil
}
