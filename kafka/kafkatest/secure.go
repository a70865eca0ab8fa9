package kafkatest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
)

// Users of a secured cluster. Each may log in with PLAIN, SCRAM-SHA-256
// and SCRAM-SHA-512, with the password Password gives. UserAdmin is the
// one super user; the others may do only what ACLs grant them.
const (
	UserAdmin   = "admin"
	UserCore    = "core"
	UserChannel = "channel"
)

var users = []string{UserAdmin, UserCore, UserChannel}

// Password is user's password on a secured cluster.
func Password(user string) string { return user + "-secret" }

// certValidity bounds the test certificates' life: a test cluster lives
// minutes.
const certValidity = 24 * time.Hour

// security is what a secured cluster's client listener requires: TLS with
// a certificate of the test's own CA, on both sides, and SASL.
type security struct {
	caPEM                []byte
	ca                   *x509.Certificate
	caKey                *ecdsa.PrivateKey
	brokerPEM, brokerKey []byte // the brokers' certificate (127.0.0.1, localhost) and key
	client               tls.Certificate
}

// StartSecured is Start for a cluster whose client listener (Addrs) takes
// only SASL_SSL: TLS with certificates made for the test (CAFile; the
// listener requires a client certificate, ClientCertFile), SASL PLAIN,
// SCRAM-SHA-256 and SCRAM-SHA-512 for the users above, and the
// StandardAuthorizer on with no ACLs: only UserAdmin may do anything until
// it grants the others. The brokers talk to each other on loopback
// listeners of their own, in plain text.
func StartSecured(tb testing.TB) *Cluster {
	tb.Helper()
	return startOwn(tb, true)
}

// SharedSecured is Shared for the secured cluster StartSecured makes: one
// per test binary, stopped by StopShared. Tests on it use topics, groups
// and ACLs of their own.
func SharedSecured(tb testing.TB) *Cluster {
	tb.Helper()
	return sharedSecured.get(tb, true)
}

// CAFile is the PEM file of the CA the brokers' certificates chain to.
func (c *Cluster) CAFile() string { return filepath.Join(c.dir, "ca.pem") }

// ClientCertFile and ClientKeyFile are a client certificate the listener
// accepts, and its key.
func (c *Cluster) ClientCertFile() string { return filepath.Join(c.dir, "client.pem") }

// ClientKeyFile: see ClientCertFile.
func (c *Cluster) ClientKeyFile() string { return filepath.Join(c.dir, "client-key.pem") }

// ClientTLS is a TLS configuration a client of the listener needs: it
// trusts the test CA and presents the client certificate.
func (c *Cluster) ClientTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(c.sec.ca)
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{c.sec.client}, MinVersion: tls.VersionTLS12}
}

// AdminOpts are the client options of the super user (plain text on a
// cluster that is not secured).
func (c *Cluster) AdminOpts() []kgo.Opt {
	opts := []kgo.Opt{kgo.SeedBrokers(c.addrs...)}
	if c.sec != nil {
		opts = append(opts, kgo.DialTLSConfig(c.ClientTLS()),
			kgo.SASL(plain.Auth{User: UserAdmin, Pass: Password(UserAdmin)}.AsMechanism()))
	}
	return opts
}

// newSecurity makes a CA, the brokers' certificate and a client
// certificate, and writes the CA and the client's files into dir.
func newSecurity(dir string) (*security, error) {
	s, err := newCA()
	if err != nil {
		return nil, err
	}
	broker := certTemplate("kafka broker")
	broker.IPAddresses, broker.DNSNames = []net.IP{net.IPv4(127, 0, 0, 1)}, []string{"localhost"}
	broker.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	if s.brokerPEM, s.brokerKey, err = s.issue(broker); err != nil {
		return nil, err
	}
	client := certTemplate("banksync test client")
	client.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	clientPEM, clientKey, err := s.issue(client)
	if err != nil {
		return nil, err
	}
	if s.client, err = tls.X509KeyPair(clientPEM, clientKey); err != nil {
		return nil, err
	}
	for name, data := range map[string][]byte{"ca.pem": s.caPEM, "client.pem": clientPEM, "client-key.pem": clientKey} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// newCA is a security of a new CA alone.
func newCA() (*security, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := certTemplate("banksync test CA")
	caTmpl.IsCA, caTmpl.BasicConstraintsValid = true, true
	caTmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	return &security{ca: ca, caKey: caKey, caPEM: pemOf("CERTIFICATE", caDER)}, nil
}

// issue signs tmpl with the CA for a new key: the certificate and the key
// (unencrypted PKCS#8, as Kafka's PEM key store reads it) in PEM.
func (s *security) issue(tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.ca, &key.PublicKey, s.caKey)
	if err != nil {
		return nil, nil, err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemOf("CERTIFICATE", der), pemOf("PRIVATE KEY", pkcs8), nil
}

// NewCA is a CA of its own, with nothing to do with any cluster's: a
// client that trusts only it must not reach a secured cluster. It returns
// the CA's PEM.
func NewCA() ([]byte, error) {
	s, err := newCA()
	if err != nil {
		return nil, err
	}
	return s.caPEM, nil
}

func certTemplate(cn string) *x509.Certificate {
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// propsOrNone is props, or none for a cluster that is not secured.
func (s *security) propsOrNone() []string {
	if s == nil {
		return nil
	}
	return s.props()
}

// props are the broker settings of the secured client listener, named
// CLIENT, for node properties. PEM goes inline, its newlines escaped as a
// properties file reads them.
func (s *security) props() []string {
	inline := func(pem []byte) string { return strings.ReplaceAll(strings.TrimSpace(string(pem)), "\n", `\n`) }
	var plainUsers strings.Builder
	for _, u := range users {
		fmt.Fprintf(&plainUsers, ` user_%s="%s"`, u, Password(u))
	}
	return []string{
		"listener.name.client.ssl.keystore.type=PEM",
		"listener.name.client.ssl.keystore.certificate.chain=" + inline(s.brokerPEM),
		"listener.name.client.ssl.keystore.key=" + inline(s.brokerKey),
		"listener.name.client.ssl.truststore.type=PEM",
		"listener.name.client.ssl.truststore.certificates=" + inline(s.caPEM),
		"listener.name.client.ssl.client.auth=required",
		"listener.name.client.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
		"listener.name.client.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required" + plainUsers.String() + ";",
		"listener.name.client.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;",
		"listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;",
		"authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
		// ANONYMOUS is who the plain-text broker and controller listeners
		// see: the nodes themselves, on loopback ports no client is told
		// of. Clients come in on CLIENT, as who SASL says they are.
		"super.users=User:" + UserAdmin + ";User:ANONYMOUS",
		"allow.everyone.if.no.acl.found=false",
	}
}

// scramArgs are StorageTool format's arguments that create every user's
// SCRAM credentials with the cluster's metadata.
func scramArgs() []string {
	var args []string
	for _, u := range users {
		for _, m := range []string{"SCRAM-SHA-256", "SCRAM-SHA-512"} {
			args = append(args, "--add-scram", fmt.Sprintf("%s=[name=%s,password=%s]", m, u, Password(u)))
		}
	}
	return args
}

// sharedCluster is a cluster every test of a test binary shares.
type sharedCluster struct {
	once sync.Once
	c    *Cluster
	err  error
}

func (s *sharedCluster) get(tb testing.TB, secured bool) *Cluster {
	tb.Helper()
	jars := findJars(tb)
	s.once.Do(func() {
		dir, err := os.MkdirTemp("", "banksync-kafka-")
		if err != nil {
			s.err = err
			return
		}
		if s.c, s.err = start(jars, dir, nil, secured); s.err != nil {
			os.RemoveAll(dir)
		}
	})
	if s.err != nil {
		tb.Fatal(s.err)
	}
	return s.c
}

func (s *sharedCluster) stop() {
	if c := s.c; c != nil {
		c.close()
		os.RemoveAll(c.dir)
	}
}

// Resources names what banksync's principals use on a cluster: the
// entries topic, its dead-letter topic, the channel's consumer group and
// the dead-letter replay's group.
type Resources struct {
	Entries, DLQ, Group, ReplayGroup string
}

// aclTimeout bounds creating ACLs, which the controller commits.
const aclTimeout = 30 * time.Second

// GrantBanksync creates, as the super user, the ACLs docs/SECURITY.md
// lists, on r's names: UserCore may create and write the entries topic and
// create its dead-letter topic; UserChannel may read the entries topic,
// use its group, write and read the dead-letter topic and use the replay
// group — and nothing else: not write the entries topic.
func (c *Cluster) GrantBanksync(tb testing.TB, r Resources) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), aclTimeout)
	defer cancel()
	cl, err := kgo.NewClient(c.AdminOpts()...)
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	core, channel := "User:"+UserCore, "User:"+UserChannel
	want := 0
	for _, b := range []*kadm.ACLBuilder{
		kadm.NewACLs().Allow(core).Topics(r.Entries).Operations(kadm.OpCreate, kadm.OpWrite, kadm.OpDescribe),
		kadm.NewACLs().Allow(core).Topics(r.DLQ).Operations(kadm.OpCreate, kadm.OpDescribe),
		kadm.NewACLs().Allow(channel).Topics(r.Entries).Operations(kadm.OpRead, kadm.OpDescribe),
		kadm.NewACLs().Allow(channel).Topics(r.DLQ).Operations(kadm.OpRead, kadm.OpWrite, kadm.OpDescribe),
		kadm.NewACLs().Allow(channel).Groups(r.Group, r.ReplayGroup).Operations(kadm.OpRead, kadm.OpDescribe),
	} {
		results, err := adm.CreateACLs(ctx, b.ResourcePatternType(kadm.ACLPatternLiteral))
		if err != nil {
			tb.Fatalf("create ACLs: %v", err)
		}
		for _, res := range results {
			if res.Err != nil {
				tb.Fatalf("create ACL %s %v on %s: %v %s", res.Principal, res.Operation, res.Name, res.Err, res.ErrMessage)
			}
		}
		want += len(results)
	}
	if err := aclsEverywhere(ctx, cl, r, want); err != nil {
		tb.Fatal(err)
	}
}

// aclsEverywhere waits until every broker has want ACLs on r's names: each
// applies the controller's metadata on its own, and a test must not race
// the one its client happens to ask.
func aclsEverywhere(ctx context.Context, cl *kgo.Client, r Resources, want int) error {
	brokers, err := kadm.NewClient(cl).BrokerMetadata(ctx)
	if err != nil {
		return err
	}
	for _, b := range brokers.Brokers {
		for {
			n, err := aclsOn(ctx, cl.Broker(int(b.NodeID)), r)
			if err == nil && n >= want {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("broker %d has %d of the %d ACLs granted (last error %v)", b.NodeID, n, want, err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

// aclsOn counts the ACLs broker b holds on r's names.
func aclsOn(ctx context.Context, b *kgo.Broker, r Resources) (int, error) {
	n := 0
	for _, name := range []string{r.Entries, r.DLQ, r.Group, r.ReplayGroup} {
		req := kmsg.NewPtrDescribeACLsRequest()
		req.ResourceType = kmsg.ACLResourceTypeAny
		req.ResourceName = &name
		req.ResourcePatternType = kmsg.ACLResourcePatternTypeLiteral
		req.Operation = kmsg.ACLOperationAny
		req.PermissionType = kmsg.ACLPermissionTypeAny
		resp, err := req.RequestWith(ctx, b)
		if err != nil {
			return n, err
		}
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			return n, err
		}
		for _, res := range resp.Resources {
			n += len(res.ACLs)
		}
	}
	return n, nil
}

// listenerProps are node i's listener settings. A plain cluster has one
// listener for clients and brokers alike; a secured one takes clients on
// CLIENT (SASL_SSL) and the brokers on BROKER, in plain text on loopback,
// on the ports after the clients'. The controllers' come last.
func (c *Cluster) listenerProps(i int, ports []int) []string {
	if c.sec == nil {
		return []string{
			fmt.Sprintf("listeners=PLAINTEXT://%s,CONTROLLER://127.0.0.1:%d", c.addrs[i], ports[nodes+i]),
			"advertised.listeners=PLAINTEXT://" + c.addrs[i],
			"inter.broker.listener.name=PLAINTEXT",
			"listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
		}
	}
	broker := fmt.Sprintf("BROKER://127.0.0.1:%d", ports[nodes+i])
	return []string{
		fmt.Sprintf("listeners=CLIENT://%s,%s,CONTROLLER://127.0.0.1:%d", c.addrs[i], broker, ports[2*nodes+i]),
		fmt.Sprintf("advertised.listeners=CLIENT://%s,%s", c.addrs[i], broker),
		"inter.broker.listener.name=BROKER",
		"listener.security.protocol.map=CLIENT:SASL_SSL,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT",
	}
}
