package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"banksync"
	"banksync/internal/testkit"
	"banksync/kafka"
)

// kcatPath finds kcat (Debian's package; older systems call it kafkacat).
// Without it the test skips, except under CI, where .ci/run installs it and
// a skip is a failure — the rule chromiumPath follows (in package main, so
// the two cannot share one helper).
func kcatPath(t *testing.T) string {
	for _, p := range []string{os.Getenv("BANKSYNC_KCAT"), "kcat", "kafkacat"} {
		if p == "" {
			continue
		}
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("kcat is required under CI (apt-get install kcat; or set BANKSYNC_KCAT)")
	}
	t.Skip("kcat not found (apt-get install kcat, or set BANKSYNC_KCAT): skipping the kcat test")
	return ""
}

// kcatRecord is one line of `kcat -J`. kcat 1.7 prints headers as a flat
// array [name, value, name, value, …] although its help shows an object;
// kcatHeaders accepts both.
type kcatRecord struct {
	Topic        string          `json:"topic"`
	Partition    int32           `json:"partition"`
	Offset       int64           `json:"offset"`
	Headers      json.RawMessage `json:"headers"`
	Key          *string         `json:"key"`
	Payload      *string         `json:"payload"`
	KeyError     string          `json:"key_error"`
	PayloadError string          `json:"payload_error"`
}

func kcatHeaders(raw json.RawMessage) (map[string][]string, error) {
	out := map[string][]string{}
	if len(raw) == 0 || string(raw) == "null" {
		return out, nil
	}
	var flat []string
	if err := json.Unmarshal(raw, &flat); err == nil {
		if len(flat)%2 != 0 {
			return nil, fmt.Errorf("odd header list %s", raw)
		}
		for i := 0; i < len(flat); i += 2 {
			out[flat[i]] = append(out[flat[i]], flat[i+1])
		}
		return out, nil
	}
	var obj map[string]string
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fmt.Errorf("headers %s: %w", raw, err)
	}
	for k, v := range obj {
		out[k] = append(out[k], v)
	}
	return out, nil
}

type accountSeq struct {
	account string
	seq     int64
}

// TestKcatReadsTheEvents: a stock Kafka client (kcat, librdkafka) reads
// core's ledger events from the embedded cluster and from Apache Kafka, as
// docs/events.md promises: every value decodes as a ledger event, the key
// is its account, the documented headers are there, and the records are
// exactly the entries core booked — none missing, none extra, none twice.
func TestKcatReadsTheEvents(t *testing.T) {
	kcat := kcatPath(t)
	out, _ := exec.Command(kcat, "-V").CombinedOutput()
	if i := bytes.Index(out, []byte("Version ")); i >= 0 {
		line, _, _ := bytes.Cut(out[i:], []byte("\n"))
		t.Logf("kcat %s", line)
	}

	eachKafka(t, func(t *testing.T, brokers string) { kcatReadsTheEvents(t, kcat, brokers) })
}

func kcatReadsTheEvents(t *testing.T, kcat, brokers string) {
	dir := t.TempDir()
	cluster := startCoreProc(t, brokers, "sqlite:"+filepath.Join(dir, "core.db"))
	coreURL := cluster.coreURL

	accounts := []string{"kc-alice", "kc-bob", "kc-carol"}
	for _, id := range accounts {
		if st, body := send(t, "POST", coreURL+"/core/v1/accounts", "svc", fmt.Sprintf(`{"owner":"o-%s","account_id":"%s"}`, id, id)); st != 201 {
			t.Fatalf("create account %s = %d %s", id, st, body)
		}
	}
	for i, id := range accounts {
		for k := 0; k < 2; k++ {
			if st, body := send(t, "POST", coreURL+"/core/v1/deposits", "svc",
				fmt.Sprintf(`{"external_ref":"kc-d-%d-%d","account_id":"%s","amount":%d,"sender":"kb"}`, i, k, id, 1000*(i+1))); st != 200 {
				t.Fatalf("deposit to %s = %d %s", id, st, body)
			}
		}
	}
	deadline := time.Now().Add(10 * time.Second).UTC().Format(time.RFC3339Nano)
	if st, body := send(t, "POST", coreURL+"/core/v1/transfers", "svc",
		`{"transfer_id":"kc-t-1","from_account":"kc-alice","to_account":"kc-bob","amount":700,"deadline":"`+deadline+`","memo":"kcat"}`); st != 200 {
		t.Fatalf("transfer = %d %s", st, body)
	}

	want := map[accountSeq]banksync.Entry{}
	for _, id := range accounts {
		for _, e := range coreEntries(t, coreURL, id) {
			want[accountSeq{e.AccountID, e.Seq}] = e
		}
	}
	if len(want) != 3*2+2 {
		t.Fatalf("core booked %d entries, want 8", len(want))
	}

	// Core's outbox relay publishes asynchronously and `kcat -e` stops at the
	// end of each partition, so read again until every entry has arrived;
	// if some never do, the checks below name them.
	var got map[accountSeq]banksync.LedgerEvent
	var lines int
	_ = testkit.WithinEvery(30*time.Second, 200*time.Millisecond, func() error {
		got, lines = kcatRead(t, kcat, cluster.brokers)
		if len(got) < len(want) {
			return errors.New("entries missing")
		}
		return nil
	})
	if lines != len(got) {
		t.Errorf("kcat printed %d records for %d distinct (account, seq)", lines, len(got))
	}
	for k, e := range want {
		ev, ok := got[k]
		if !ok {
			t.Errorf("core booked %s seq %d; kcat did not read it", k.account, k.seq)
			continue
		}
		if w := banksync.EventOf(e); ev.EventID != w.EventID || ev.Kind != w.Kind || ev.Amount != w.Amount ||
			ev.BalanceAfter != w.BalanceAfter || ev.Counterparty != w.Counterparty || ev.TransferID != w.TransferID ||
			ev.ExternalRef != w.ExternalRef || ev.Memo != w.Memo || !ev.BookedAt.Equal(w.BookedAt) {
			t.Errorf("%s seq %d: kcat read %+v, core booked %+v", k.account, k.seq, ev, w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("kcat read %s seq %d, which core did not book", k.account, k.seq)
		}
	}
	t.Logf("kcat read %d records, exactly core's %d entries", lines, len(want))
}

// kcatRead consumes core.ledger.entries from the beginning to its end with
// kcat from brokers (host:port,…) and checks each record's key, headers and value. It returns the
// events by (account, seq) and the number of records read.
func kcatRead(t *testing.T, kcat, brokers string) (map[accountSeq]banksync.LedgerEvent, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcat, "-C", "-b", brokers, "-t", banksync.TopicLedgerEntries,
		"-o", "beginning", "-e", "-q", "-J", "-m", "10")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if ctx.Err() != nil {
		t.Fatalf("kcat did not finish within 30s; stderr: %s", stderr.Bytes())
	}
	if err != nil {
		t.Fatalf("kcat: %v; stderr: %s", err, stderr.Bytes())
	}
	got := map[accountSeq]banksync.LedgerEvent{}
	n := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		n++
		var r kcatRecord
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("kcat line %q: %v", line, err)
		}
		if r.Topic != banksync.TopicLedgerEntries || r.KeyError != "" || r.PayloadError != "" || r.Key == nil || r.Payload == nil {
			t.Fatalf("kcat record %s", line)
		}
		ev, err := banksync.DecodeLedgerEvent([]byte(*r.Payload))
		if err != nil {
			t.Fatalf("partition %d offset %d: %v", r.Partition, r.Offset, err)
		}
		if *r.Key != ev.AccountID {
			t.Errorf("partition %d offset %d: key %q, event account %q", r.Partition, r.Offset, *r.Key, ev.AccountID)
		}
		hdr, err := kcatHeaders(r.Headers)
		if err != nil {
			t.Fatalf("partition %d offset %d: %v", r.Partition, r.Offset, err)
		}
		if v := hdr[kafka.HeaderSchema]; len(v) != 1 || v[0] != kafka.SchemaLedgerEntryV1 {
			t.Errorf("partition %d offset %d: header %s = %q, want [%q]", r.Partition, r.Offset, kafka.HeaderSchema, v, kafka.SchemaLedgerEntryV1)
		}
		if v := hdr[kafka.HeaderEventID]; len(v) != 1 || v[0] != strconv.FormatInt(ev.EventID, 10) {
			t.Errorf("partition %d offset %d: header %s = %q, want [%d]", r.Partition, r.Offset, kafka.HeaderEventID, v, ev.EventID)
		}
		got[accountSeq{ev.AccountID, ev.Seq}] = ev
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return got, n
}
