// Package kafkatest runs the reference Apache Kafka cluster the real-broker
// tests use: three KRaft nodes (each broker and controller) on loopback,
// from the Maven Central jars scripts/kafka-broker/fetch puts in .cache.
// Tests find it through Start, which skips them when the jars are not
// there — except under CI, where that is a failure, as for PostgreSQL.
package kafkatest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// JarsEnv names a folder of the broker's jars other than the one
// scripts/kafka-broker/fetch fills.
const JarsEnv = "BANKSYNC_KAFKA_JARS"

// Limits of a cluster.
const (
	nodes = 3
	// heapMax keeps three JVMs and the tests within a small machine.
	heapMax = "256m"
	// startTimeout bounds formatting and starting the nodes until every
	// broker is registered.
	startTimeout = 90 * time.Second
	// stopTimeout bounds a node's orderly stop (SIGTERM) before it is
	// killed.
	stopTimeout = 30 * time.Second
	// logTailLines is how much of each node's log a failure shows.
	logTailLines = 15
)

// Cluster is a running three-node cluster.
type Cluster struct {
	jars  string
	dir   string
	addrs []string  // each node's client listener
	sec   *security // nil: the client listener is plain text

	mu    sync.Mutex
	procs [nodes]*exec.Cmd
}

// Start formats and starts a three-node cluster of tb's own in a temporary
// folder and waits until every broker is up; the cluster stops when tb
// ends. Without the jars it skips tb, or fails it under CI. Tests that
// kill or restart nodes take their own; the others share one (Shared).
func Start(tb testing.TB) *Cluster {
	tb.Helper()
	return startOwn(tb, false)
}

// startOwn starts a cluster of tb's own, secured or not, stopped when tb
// ends.
func startOwn(tb testing.TB, secured bool) *Cluster {
	tb.Helper()
	c, err := start(findJars(tb), tb.TempDir(), nil, secured)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.close)
	return c
}

// The clusters the tests of one test binary share.
var shared, sharedSecured sharedCluster

// Shared returns the cluster every test of this test binary shares,
// starting it on first use; StopShared, from TestMain, stops it. Tests on
// it must not stop its nodes, and use topics and groups of their own.
// Without the jars it skips tb, or fails it under CI.
func Shared(tb testing.TB) *Cluster {
	tb.Helper()
	return shared.get(tb, false)
}

// StopShared stops the shared clusters, if any was started, and removes
// their data.
func StopShared() {
	shared.stop()
	sharedSecured.stop()
}

// Run starts a cluster outside a test, for a try-out or a benchmark: the
// brokers listen on 127.0.0.1 ports firstPort, firstPort+1 and
// firstPort+2, the controllers on the three after, and the data stays in
// dir, so a cluster stopped with Close starts again from it.
func Run(dir string, firstPort int) (*Cluster, error) {
	jars, err := jarsDir()
	if err != nil {
		return nil, err
	}
	ports := make([]int, 2*nodes)
	for i := range ports {
		ports[i] = firstPort + i
	}
	return start(jars, dir, ports, false)
}

// Close stops every node in order (SIGTERM).
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() { c.Stop(i) })
	}
	wg.Wait()
}

// start formats (unless already formatted) and starts a cluster in dir,
// secured or not, on ports (clients', then, secured, the brokers' own, then
// controllers'; nil picks free ones). On error no node is left running.
func start(jars, dir string, ports []int, secured bool) (*Cluster, error) {
	if _, err := exec.LookPath("java"); err != nil {
		return nil, fmt.Errorf("java is not on PATH: %w", err)
	}
	c := &Cluster{jars: jars, dir: dir}
	var formatArgs []string
	listeners := 2 // per node: clients' (the brokers' too) and the controller's
	if secured {
		var err error
		if c.sec, err = newSecurity(dir); err != nil {
			return nil, fmt.Errorf("kafka test certificates: %w", err)
		}
		formatArgs = scramArgs()
		listeners = 3 // the brokers' own, in plain text
	}
	if ports == nil {
		var err error
		if ports, err = freePorts(listeners * nodes); err != nil {
			return nil, err
		}
	}
	var voters []string
	for i := range nodes {
		c.addrs = append(c.addrs, fmt.Sprintf("127.0.0.1:%d", ports[i]))
		voters = append(voters, fmt.Sprintf("%d@127.0.0.1:%d", i+1, ports[(listeners-1)*nodes+i]))
	}
	id, err := clusterID()
	if err != nil {
		return nil, err
	}
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	for i := range nodes {
		props := append([]string{
			"process.roles=broker,controller",
			fmt.Sprintf("node.id=%d", i+1),
			"controller.quorum.voters=" + strings.Join(voters, ","),
			"controller.listener.names=CONTROLLER",
			"log.dirs=" + filepath.Join(c.dir, fmt.Sprintf("node%d", i+1)),
			// Replication as production wants it: every partition on all three.
			"default.replication.factor=3",
			"offsets.topic.replication.factor=3",
			"transaction.state.log.replication.factor=3",
			"transaction.state.log.min.isr=2",
			"group.initial.rebalance.delay.ms=0",
		}, c.listenerProps(i, ports)...)
		props = append(props, c.sec.propsOrNone()...)
		if err := os.WriteFile(c.props(i), []byte(strings.Join(props, "\n")+"\n"), 0o644); err != nil {
			return nil, err
		}
		wg.Go(func() {
			args := append([]string{"kafka.tools.StorageTool", "format", "--ignore-formatted", "-t", id, "-c", c.props(i)}, formatArgs...)
			out, err := c.java(args...).CombinedOutput()
			if err != nil {
				errs[i] = fmt.Errorf("format kafka node %d: %w\n%s", i+1, err, out)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	log := "Configuration:\n  Appenders:\n    File:\n      name: FILE\n      fileName: ${sys:banksync.log}\n" +
		"      PatternLayout:\n        pattern: \"[%d] %p %m (%c)%n\"\n  Loggers:\n    Root:\n      level: INFO\n      AppenderRef:\n        - ref: FILE\n"
	if err := os.WriteFile(filepath.Join(c.dir, "log4j2.yaml"), []byte(log), 0o644); err != nil {
		return nil, err
	}
	for i := range nodes {
		if err := c.Start(i); err != nil {
			c.close()
			return nil, err
		}
	}
	if err := c.WaitBrokers(nodes); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// Addrs returns the bootstrap addresses: every node's broker listener.
func (c *Cluster) Addrs() []string { return append([]string(nil), c.addrs...) }

// Addr returns node i's broker listener (i from 0).
func (c *Cluster) Addr(i int) string { return c.addrs[i] }

// Start starts node i (from 0) if it is not running, on its formatted
// storage; it does not wait for the node to be up (WaitBrokers does).
func (c *Cluster) Start(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.procs[i] != nil {
		return nil
	}
	logFile := filepath.Join(c.dir, fmt.Sprintf("node%d.log", i+1))
	cmd := c.java("-Dbanksync.log="+logFile, "-Dlog4j2.configurationFile="+filepath.Join(c.dir, "log4j2.yaml"),
		"kafka.Kafka", c.props(i))
	out, err := os.OpenFile(filepath.Join(c.dir, fmt.Sprintf("node%d.out", i+1)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start kafka node %d: %w", i+1, err)
	}
	c.procs[i] = cmd
	return nil
}

// Kill stops node i with SIGKILL, as a crash would.
func (c *Cluster) Kill(i int) { c.signal(i, syscall.SIGKILL) }

// Stop stops node i in order (SIGTERM: it hands over its leaderships), as
// a rolling restart does; a node that has not stopped within stopTimeout is
// killed.
func (c *Cluster) Stop(i int) { c.signal(i, syscall.SIGTERM) }

func (c *Cluster) signal(i int, sig syscall.Signal) {
	c.mu.Lock()
	cmd := c.procs[i]
	c.procs[i] = nil
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(stopTimeout):
		cmd.Process.Kill()
		<-done
	}
}

// WaitBrokers waits until n brokers are registered with the cluster and
// answer, for at most startTimeout.
func (c *Cluster) WaitBrokers(n int) error {
	deadline := time.Now().Add(startTimeout)
	for {
		up, err := c.brokers()
		if err == nil && up >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kafka: %d of %d brokers up after %v (last error %v)%s", up, n, startTimeout, err, c.logTails())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// brokers counts the brokers the cluster's metadata lists, asked with a
// new client each time: a client's own metadata is cached, and would keep
// a restarted broker out of sight for a while.
func (c *Cluster) brokers() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(c.AdminOpts()...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	m, err := kadm.NewClient(cl).BrokerMetadata(ctx)
	return len(m.Brokers), err
}

// logTails is the end of each node's output and log, for a failure
// message: the temporary folder is gone once the test ends.
func (c *Cluster) logTails() string {
	var b strings.Builder
	for i := range nodes {
		for _, name := range []string{fmt.Sprintf("node%d.out", i+1), fmt.Sprintf("node%d.log", i+1)} {
			data, _ := os.ReadFile(filepath.Join(c.dir, name))
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			lines = lines[max(0, len(lines)-logTailLines):]
			fmt.Fprintf(&b, "\n--- %s:\n%s", name, strings.Join(lines, "\n"))
		}
	}
	return b.String()
}

// close kills every node.
func (c *Cluster) close() {
	for i := range nodes {
		c.Kill(i)
	}
}

func (c *Cluster) props(i int) string {
	return filepath.Join(c.dir, fmt.Sprintf("node%d.properties", i+1))
}

// java is a JVM on the broker's jars, with a small heap, that dies with
// the test process.
func (c *Cluster) java(args ...string) *exec.Cmd {
	cmd := exec.Command("java", append([]string{"-Xmx" + heapMax, "-Xms" + heapMax, "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-cp", filepath.Join(c.jars, "*")}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// findJars returns the folder of the broker's jars: $BANKSYNC_KAFKA_JARS,
// or the newest version scripts/kafka-broker/fetch put under .cache.
func findJars(tb testing.TB) string {
	tb.Helper()
	dir, err := jarsDir()
	if err != nil {
		missing(tb, err.Error())
	}
	return dir
}

func jarsDir() (string, error) {
	if _, err := exec.LookPath("java"); err != nil {
		return "", errors.New("java is not on PATH")
	}
	if dir := os.Getenv(JarsEnv); dir != "" {
		return dir, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	found, _ := filepath.Glob(filepath.Join(root, ".cache", "kafka-broker", "*", "lib", "kafka_2.13-*.jar"))
	if len(found) == 0 {
		return "", errors.New("the Apache Kafka jars are not in .cache/kafka-broker (run scripts/kafka-broker/fetch, or set " + JarsEnv + ")")
	}
	return filepath.Dir(found[len(found)-1]), nil
}

// missing skips tb, or fails it under CI, where .ci/run fetches the jars.
func missing(tb testing.TB, why string) {
	tb.Helper()
	if os.Getenv("CI") != "" {
		tb.Fatal("real Kafka cluster: " + why)
	}
	tb.Skip("skipping the real Kafka cluster test: " + why)
}

// moduleRoot is the folder of go.mod above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// freePorts returns n loopback ports nothing listened on a moment ago.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// clusterID is a new cluster id: 16 random bytes, base64url without
// padding, as kafka-storage random-uuid prints — and, like Kafka's own
// Uuid.randomUuid, never starting with '-', which the storage tool would
// read as an option (one cluster in 64 failed to format before).
func clusterID() (string, error) {
	for {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		if id := base64.RawURLEncoding.EncodeToString(b[:]); id[0] != '-' {
			return id, nil
		}
	}
}

// LeaderOf returns the node (from 0) leading partition of topic.
func (c *Cluster) LeaderOf(ctx context.Context, topic string, partition int32) (int, error) {
	cl, err := kgo.NewClient(c.AdminOpts()...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	td, err := kadm.NewClient(cl).ListTopics(ctx, topic)
	if err != nil {
		return 0, err
	}
	p, ok := td[topic].Partitions[partition]
	if !ok || td[topic].Err != nil || p.Leader < 1 {
		return 0, fmt.Errorf("kafka: no leader of %s/%d (topic error %v)", topic, partition, td[topic].Err)
	}
	return int(p.Leader) - 1, nil // node ids are 1, 2, 3
}

// ActiveController returns the node (from 0) leading the KRaft metadata
// quorum: the active controller.
func (c *Cluster) ActiveController(ctx context.Context) (int, error) {
	cl, err := kgo.NewClient(c.AdminOpts()...)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	req := kmsg.NewPtrDescribeQuorumRequest()
	t := kmsg.NewDescribeQuorumRequestTopic()
	t.Topic = "__cluster_metadata"
	t.Partitions = []kmsg.DescribeQuorumRequestTopicPartition{kmsg.NewDescribeQuorumRequestTopicPartition()}
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return 0, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return 0, err
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		return 0, errors.New("kafka: the quorum description names no metadata partition")
	}
	p := resp.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
		return 0, err
	}
	if p.LeaderID < 1 || int(p.LeaderID) > nodes {
		return 0, fmt.Errorf("kafka: the metadata quorum has no leader (%d)", p.LeaderID)
	}
	return int(p.LeaderID) - 1, nil
}

// WaitInSync waits, for at most startTimeout, until every partition of
// topics has all three replicas in sync: a restarted node has caught up,
// so losing another one now loses no acknowledged write and keeps two in
// sync (min.insync.replicas).
func (c *Cluster) WaitInSync(ctx context.Context, topics ...string) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	cl, err := kgo.NewClient(c.AdminOpts()...)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	for {
		td, err := adm.ListTopics(ctx, topics...)
		synced := err == nil && len(td) == len(topics)
		for _, t := range td {
			synced = synced && t.Err == nil && len(t.Partitions) > 0
			for _, p := range t.Partitions {
				synced = synced && len(p.ISR) == nodes
			}
		}
		if synced {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafka: %v not back in sync within %v (last error %v)", topics, startTimeout, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
