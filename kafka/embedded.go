package kafka

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"banksync"
)

// partitionsDefault matches the seed design: ten partitions per topic.
const partitionsDefault = 10

// ClusterConfig configures the embedded Kafka-protocol cluster.
type ClusterConfig struct {
	// Addr is the host:port the one broker listens on, e.g. "127.0.0.1:0"
	// (any free port) or "127.0.0.1:9092". The broker advertises the address
	// it actually bound, so the host must be one clients can dial: not
	// "0.0.0.0". Empty means "127.0.0.1:0".
	Addr string
	// AnyPortIfTaken listens on a free port of Addr's host when Addr's port
	// is taken, instead of failing; Addrs then says which. For the demo,
	// whose clients all run in its process and learn the address from
	// Addrs: a second demo on the machine then starts too. A broker that
	// other processes are told the address of must not move, so it is off
	// by default.
	AnyPortIfTaken bool
	// DataDir persists the cluster's topics, records, producer state and
	// group offsets in this directory and reloads them on start. Empty keeps
	// everything in memory.
	DataDir string
	// SyncWrites fsyncs every produced batch before it is acknowledged, so
	// acknowledged records survive a power loss or kernel crash, at a large
	// cost in throughput (~8x fewer entries/s). Off, acknowledged records
	// are written but not fsynced, even by Close (kfake syncs only on segment
	// roll): they survive a clean Close and a crash of this process, not a
	// crash of the machine. Only meaningful with DataDir.
	SyncWrites bool
	// Partitions is the partition count of the topics we seed; 0 means
	// partitionsDefault.
	Partitions int
	// Logger receives the cluster's logs; nil discards them.
	Logger *slog.Logger
}

// Cluster is an in-process, single-broker Kafka-protocol cluster (franz-go's
// kfake) for the demo and tests. Clients reach it over TCP like any broker.
type Cluster struct {
	c         *kfake.Cluster
	log       *slog.Logger
	closeOnce sync.Once
}

// seededTopics are created on first start; the demo's producer and consumers
// expect them to exist.
var seededTopics = []string{banksync.TopicLedgerEntries, banksync.TopicLedgerEntriesDLQ}

// StartCluster starts a broker listening on cfg.Addr and makes sure the
// ledger topics exist. With a DataDir it resumes the state a previous run left
// there, records included.
func StartCluster(cfg ClusterConfig) (*Cluster, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("start kafka cluster: address %q: %w", cfg.Addr, err)
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = partitionsDefault
	}
	if cfg.Partitions < 1 {
		return nil, fmt.Errorf("start kafka cluster: partitions %d, want at least 1", cfg.Partitions)
	}
	log := orDiscard(cfg.Logger).With("component", "kafka-cluster")

	addr := cfg.Addr
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		// kfake always asks for 127.0.0.1 with its own port choice; we want
		// the caller's host:port instead.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			ln, err := net.Listen(network, addr)
			if err != nil && cfg.AnyPortIfTaken && errors.Is(err, syscall.EADDRINUSE) {
				host, _, _ := net.SplitHostPort(addr)
				log.Info("kafka port taken; listening on a free one", "addr", addr)
				return net.Listen(network, net.JoinHostPort(host, "0"))
			}
			return ln, err
		}),
		kfake.DefaultNumPartitions(cfg.Partitions),
		kfake.WithLogger(kfakeLogger{log}),
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
		if cfg.SyncWrites {
			opts = append(opts, kfake.SyncWrites())
		}
	}
	kc, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start kafka cluster on %s: %w", cfg.Addr, err)
	}
	c := &Cluster{c: kc, log: log}

	// kfake's SeedTopics applies only to a fresh DataDir; creating what is
	// missing ourselves also repairs a DataDir whose topic was deleted, and
	// never touches a topic (or its records) that is already there.
	for _, topic := range seededTopics {
		if kc.TopicInfo(topic) != nil {
			if n := len(kc.PartitionInfos(topic)); n != cfg.Partitions {
				log.Warn("kafka topic kept with its existing partition count",
					"topic", topic, "partitions", n, "configured", cfg.Partitions)
			}
			continue
		}
		if err := kc.CreateTopic(topic, int32(cfg.Partitions), nil); err != nil {
			kc.Close()
			return nil, fmt.Errorf("start kafka cluster: create topic %s: %w", topic, err)
		}
	}
	log.Info("kafka cluster started", "addrs", c.Addrs(), "data_dir", cfg.DataDir,
		"partitions", cfg.Partitions, "sync_writes", cfg.SyncWrites && cfg.DataDir != "")
	return c, nil
}

// Addrs returns the brokers' host:port addresses, for clients' seed brokers.
func (c *Cluster) Addrs() []string { return c.c.ListenAddrs() }

// errInjected is how an injected broker failure looks to a client: the
// broker drops its connection.
var errInjected = errors.New("kafka cluster: injected broker failure")

// FailRequests makes the broker drop the connection instead of answering a
// produce or fetch request whenever fail(key) says so (key is the request's
// kmsg key): a broker error or timeout as clients meet them. The request
// is not processed. fail runs on the broker's loop and must be quick. For
// fault-injection runs only.
func (c *Cluster) FailRequests(fail func(key int16) bool) {
	c.c.Control(func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.c.KeepControl()
		k := req.Key()
		if (k == kmsg.Produce.Int16() || k == kmsg.Fetch.Int16()) && fail(k) {
			return nil, errInjected, true
		}
		return nil, nil, false
	})
}

// Close stops the broker. With a DataDir it first writes the cluster's
// metadata, producer state and committed offsets, so the next start resumes
// exactly here. Calling it again does nothing.
func (c *Cluster) Close() {
	c.closeOnce.Do(func() {
		c.c.Close()
		c.log.Info("kafka cluster closed")
	})
}
