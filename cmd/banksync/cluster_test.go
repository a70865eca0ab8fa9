package main_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"banksync"
	"banksync/channel"
	"banksync/internal/testkit"
	"banksync/kafka/kafkatest"
	"banksync/postgres"
	"banksync/postgres/pgtest"
	"banksync/sqlite"
)

// proc is a banksync process started by a test.
type proc struct {
	cmd  *exec.Cmd
	addr string
}

// startProc runs `banksync args…` with JSON logs and waits for the log line
// msg, whose attribute attr gives the address it listens on.
func startProc(t *testing.T, env []string, msg, attr string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(cmd.Environ(), env...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if b := sc.Bytes(); strings.Contains(string(b), `"level":"ERROR"`) || strings.Contains(string(b), `"level":"WARN"`) {
				t.Logf("%s: %.300s", args[0], b)
			}
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == msg {
				switch v := line[attr].(type) {
				case string:
					found <- v
				case []any:
					found <- fmt.Sprint(v[0])
				}
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	select {
	case addr := <-found:
		return &proc{cmd: cmd, addr: addr}
	case <-time.After(60 * time.Second):
		t.Fatalf("banksync %s did not log %q", args[0], msg)
		return nil
	}
}

// procEnv is the environment of the processes a test starts: service
// token "svc", a JWT secret and JSON logs, whose lines startProc reads.
var procEnv = []string{"BANKSYNC_SERVICE_TOKEN=svc", "BANKSYNC_JWT_SECRET=0123456789abcdef0123456789abcdef", "BANKSYNC_LOG_FORMAT=json"}

// procCluster is `banksync core` running as a process on a Kafka cluster,
// to start channels against.
type procCluster struct {
	t       *testing.T
	env     []string
	brokers string // as --kafka takes them: host:port,…
	coreURL string
}

// startProcCluster starts `banksync kafka` (its data under dir) and core
// on coreDB.
func startProcCluster(t *testing.T, dir, coreDB string) *procCluster {
	t.Helper()
	return startCoreProc(t, startKafkaProc(t, dir), coreDB)
}

// startKafkaProc starts `banksync kafka`, the embedded cluster (kfake), as
// a process with its data under dir, and returns its address.
func startKafkaProc(t *testing.T, dir string) string {
	t.Helper()
	return startProc(t, procEnv, "kafka listening", "addrs", "kafka", "--listen", "127.0.0.1:0", "--data", filepath.Join(dir, "kafka")).addr
}

// startCoreProc starts core on coreDB, publishing to brokers.
func startCoreProc(t *testing.T, brokers, coreDB string) *procCluster {
	t.Helper()
	c := &procCluster{t: t, env: procEnv, brokers: brokers}
	core := startProc(t, c.env, "core listening", "addr", "core", "--listen", "127.0.0.1:0", "--db", coreDB, "--kafka", brokers)
	c.coreURL = "http://" + core.addr
	return c
}

// eachKafka runs body, one test, against both Kafka deployments banksync
// supports: `banksync kafka` (the embedded kfake cluster) as a process, and
// the reference Apache Kafka cluster (skipped without its jars, except
// under CI). The Apache cluster is one of the test's own, not the shared
// one: core creates core.ledger.entries and the channel joins the group
// banksync-channel by fixed names, so two tests on one cluster would read
// each other's events and offsets.
func eachKafka(t *testing.T, body func(t *testing.T, brokers string)) {
	t.Run("kfake", func(t *testing.T) { body(t, startKafkaProc(t, t.TempDir())) })
	t.Run("apache", func(t *testing.T) { body(t, strings.Join(kafkatest.Start(t).Addrs(), ",")) })
}

// channel starts a channel process on chDB consuming the cluster, with
// more flags if given.
func (c *procCluster) channel(chDB string, args ...string) *proc {
	c.t.Helper()
	return startProc(c.t, c.env, "channel listening", "addr", append([]string{"channel", "--listen", "127.0.0.1:0",
		"--db", chDB, "--core-url", c.coreURL, "--kafka", c.brokers}, args...)...)
}

// brokerList is the cluster's brokers as the kafka package takes them.
func (c *procCluster) brokerList() []string { return strings.Split(c.brokers, ",") }

// TestClusterSurvivesAChannelKill: a Kafka cluster, core and three
// channel processes sharing one consumer group and one history database.
// During a burst one channel is killed with SIGKILL and another joins. A
// reader polling throughout never sees a history that is not a prefix of
// core's (P5), and after the drain every account's history equals core's
// (P4). It runs on the embedded default (SQLite) against kfake and Apache
// Kafka, and on PostgreSQL against kfake: the history store changes
// nothing the group does, and a second Apache Kafka cluster would cost a
// start for no new case.
func TestClusterSurvivesAChannelKill(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		eachKafka(t, func(t *testing.T, brokers string) {
			dir := t.TempDir()
			path := filepath.Join(dir, "channel.db")
			clusterSurvivesAChannelKill(t, brokers, "sqlite:"+filepath.Join(dir, "core.db"), "sqlite:"+path,
				func() (channel.Store, error) { return sqlite.OpenChannel(context.Background(), path) })
		})
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := pgtest.Database(t) // core and channel share it, as they may
		clusterSurvivesAChannelKill(t, startKafkaProc(t, t.TempDir()), dsn, dsn,
			func() (channel.Store, error) { return postgres.OpenChannel(context.Background(), dsn) })
	})
}

func clusterSurvivesAChannelKill(t *testing.T, brokers, coreDB, chDB string, openHistory func() (channel.Store, error)) {
	cluster := startCoreProc(t, brokers, coreDB)
	coreURL := cluster.coreURL
	newChannel := func() *proc { return cluster.channel(chDB, "--lanes", "16") }
	channels := []*proc{newChannel(), newChannel(), newChannel()}

	const accounts = 40
	for i := 0; i < accounts; i++ {
		if st, body := send(t, "POST", coreURL+"/core/v1/accounts", "svc", fmt.Sprintf(`{"owner":"c%d","account_id":"acc-%d"}`, i, i)); st != 201 {
			t.Fatalf("create account = %d %s", st, body)
		}
	}
	ctx, stopReader := context.WithCancel(context.Background())
	readerDone := make(chan int, 1)
	go func() { readerDone <- prefixReader(ctx, t, openHistory, coreURL, accounts) }()
	defer func() { stopReader(); <-readerDone }() // before the processes are killed

	// The burst: deposits and transfers from 8 clients straight to core.
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for i := 0; i < 250; i++ {
				a := rng.IntN(accounts)
				if i%3 == 0 {
					b := (a + 1 + rng.IntN(accounts-1)) % accounts
					send(t, "POST", coreURL+"/core/v1/transfers", "svc", fmt.Sprintf(`{"transfer_id":"t-%d-%d","from_account":"acc-%d","to_account":"acc-%d","amount":%d,"deadline":"%s"}`,
						w, i, a, b, 1+rng.IntN(50), time.Now().Add(10*time.Second).UTC().Format(time.RFC3339Nano)))
					continue
				}
				send(t, "POST", coreURL+"/core/v1/deposits", "svc", fmt.Sprintf(`{"external_ref":"d-%d-%d","account_id":"acc-%d","amount":100,"sender":"kb"}`, w, i, a))
				if w == 0 && i == 100 {
					channels[1].cmd.Process.Signal(syscall.SIGKILL) // mid-burst
				}
				if w == 0 && i == 160 {
					channels = append(channels, newChannel()) // another joins
				}
			}
		}(w)
	}
	wg.Wait()

	// Drain: every account's history reaches core's entries.
	store, err := openHistory()
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	drained := 0 // the accounts acc-0 … before it have every entry
	testkit.Eventually(t, 90*time.Second, "every history drained", func() error {
		for ; drained < accounts; drained++ {
			id := fmt.Sprintf("acc-%d", drained)
			want := coreEntries(t, coreURL, id)
			got, err := store.History(context.Background(), id, 1<<62, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				return fmt.Errorf("%s: channel has %d entries, core %d", id, len(got), len(want))
			}
			for k := range got {
				if got[len(got)-1-k] != want[k] {
					t.Fatalf("%s entry %d: channel %+v, core %+v", id, k, got[len(got)-1-k], want[k])
				}
			}
		}
		return nil
	})
	stopReader()
	reads := <-readerDone
	readerDone <- reads // for the deferred wait
	if reads < 10 {
		t.Fatalf("the reader made only %d reads", reads)
	}
	t.Logf("reader checked %d histories against core while the cluster ran", reads)
}

func coreEntries(t *testing.T, coreURL, id string) []banksync.Entry {
	var out []banksync.Entry
	for after := int64(0); ; {
		st, body := send(t, "GET", fmt.Sprintf("%s/core/v1/accounts/%s/entries?after_seq=%d&limit=1000", coreURL, id, after), "svc", "")
		var page struct {
			Entries []banksync.Entry `json:"entries"`
		}
		if st != 200 || json.Unmarshal(body, &page) != nil {
			t.Fatalf("core entries of %s = %d %s", id, st, body)
		}
		if len(page.Entries) == 0 {
			return out
		}
		out = append(out, page.Entries...)
		after = page.Entries[len(page.Entries)-1].Seq
	}
}

// prefixReader reads account histories from the shared history database
// and core's ledger until ctx ends, failing the test on any history that is
// not a prefix of core's. It returns how many reads it made.
func prefixReader(ctx context.Context, t *testing.T, openHistory func() (channel.Store, error), coreURL string, accounts int) int {
	store, err := openHistory()
	if err != nil {
		t.Error(err)
		return 0
	}
	defer store.Close()
	reads := 0
	for ctx.Err() == nil {
		id := fmt.Sprintf("acc-%d", reads%accounts)
		mine, err := store.History(context.Background(), id, 1<<62, 1<<20)
		if err != nil {
			t.Error(err)
			return reads
		}
		core, ok := tryCoreEntries(coreURL, id) // read after: core's can only be longer
		if !ok {
			continue
		}
		if len(mine) > len(core) {
			t.Errorf("%s: the channel shows %d entries, core has %d", id, len(mine), len(core))
			return reads
		}
		for k, e := range mine {
			if want := core[len(mine)-1-k]; e != want {
				t.Errorf("%s: history is not a prefix of core's at seq %d", id, want.Seq)
				return reads
			}
		}
		reads++
		time.Sleep(5 * time.Millisecond)
	}
	return reads
}

// tryCoreEntries is coreEntries for the reader goroutine, which must not
// stop the test on a failed call.
func tryCoreEntries(coreURL, id string) ([]banksync.Entry, bool) {
	var out []banksync.Entry
	for after := int64(0); ; {
		req, _ := http.NewRequest("GET", fmt.Sprintf("%s/core/v1/accounts/%s/entries?after_seq=%d&limit=1000", coreURL, id, after), nil)
		req.Header.Set("Authorization", "Bearer svc")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, false
		}
		var page struct {
			Entries []banksync.Entry `json:"entries"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			return nil, false
		}
		if len(page.Entries) == 0 {
			return out, true
		}
		out = append(out, page.Entries...)
		after = page.Entries[len(page.Entries)-1].Seq
	}
}
