package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/twmb/franz-go/pkg/kgo"

	"banksync"
	"banksync/internal/testkit"
)

var binary string

func TestMain(m *testing.M) {
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-test.fuzz") {
			os.Exit(m.Run()) // the fuzz targets run no binary; a worker need not build one
		}
	}
	dir, err := os.MkdirTemp("", "banksync-bin-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "banksync")
	if out, err := exec.Command("go", "build", "-race", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build banksync: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// demo is a running `banksync demo` process.
type demo struct {
	cmd        *exec.Cmd
	coreURL    string
	channelURL string
	alice      string // alice's bearer token
	brokers    string
	token      string // core's service token
	admin      string // the operator API's token
	welcome    string // what it printed at start
}

var (
	coreLine    = regexp.MustCompile(`core API\s+(http://\S+)/core/v1\s+\(service token: (\S+)\)`)
	kafkaLine   = regexp.MustCompile(`^  kafka\s+(\S+)\s`)
	channelLine = regexp.MustCompile(`channel API\s+(http://\S+)/v1`)
	aliceLine   = regexp.MustCompile(`export TOKEN=(\S+)`)
	opsLine     = regexp.MustCompile(`/ops/#token=(\S+)`)
)

func runDemo(t *testing.T, data string, args ...string) *demo {
	t.Helper()
	args = append([]string{"demo", "--data", data, "--listen", "127.0.0.1:0", "--core-listen", "127.0.0.1:0", "--kafka-listen", "127.0.0.1:0"}, args...)
	cmd := exec.Command(binary, args...)
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	d := &demo{cmd: cmd}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	timeout := time.After(60 * time.Second)
	var welcome strings.Builder
	for !strings.HasPrefix(welcomeLast(welcome.String()), "Press Ctrl-C") {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("demo exited before it was ready; stderr:\n%s", stderr.String())
			}
			welcome.WriteString(line + "\n")
			if m := coreLine.FindStringSubmatch(line); m != nil {
				d.coreURL, d.token = m[1], m[2]
			}
			if m := kafkaLine.FindStringSubmatch(line); m != nil {
				d.brokers = m[1]
			}
			if m := channelLine.FindStringSubmatch(line); m != nil {
				d.channelURL = m[1]
			}
			if m := aliceLine.FindStringSubmatch(line); m != nil {
				d.alice = m[1]
			}
			if m := opsLine.FindStringSubmatch(line); m != nil {
				d.admin = m[1]
			}
		case <-timeout:
			t.Fatalf("demo did not print its addresses in time; stderr:\n%s", stderr.String())
		}
	}
	d.welcome = welcome.String()
	if d.coreURL == "" || d.brokers == "" || d.channelURL == "" || d.alice == "" || d.admin == "" {
		t.Fatalf("demo's welcome lacks an address or a token:\n%s", d.welcome)
	}
	go func() {
		for range lines {
		}
	}()
	return d
}

// welcomeLast is the last line of s, which ends in a newline.
func welcomeLast(s string) string {
	s = strings.TrimSuffix(s, "\n")
	return s[strings.LastIndex(s, "\n")+1:]
}

func (d *demo) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo exited with %v after SIGINT", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not stop within 30s of SIGINT")
	}
}

func (d *demo) call(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	return send(t, method, d.coreURL+path, d.token, body)
}

// asAlice calls the channel API as the demo customer alice.
func (d *demo) asAlice(t *testing.T, method, path, body string, hdr ...string) (int, []byte) {
	t.Helper()
	return send(t, method, d.channelURL+path, d.alice, body, hdr...)
}

func send(t *testing.T, method, url, token, body string, hdr ...string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestDemoEndToEnd runs the real binary: a transfer through the core API
// reaches Kafka as events, and a restart after SIGINT keeps every balance and
// entry.
func TestDemoEndToEnd(t *testing.T) {
	data := t.TempDir()
	d := runDemo(t, data)
	deadline := time.Now().Add(10 * time.Second).UTC().Format(time.RFC3339Nano)
	st, body := d.call(t, "POST", "/core/v1/transfers",
		`{"transfer_id":"e2e-1","from_account":"demo-alice","to_account":"demo-bob","amount":1000,"deadline":"`+deadline+`","memo":"e2e"}`)
	if st != 200 || !strings.Contains(string(body), `"completed"`) {
		t.Fatalf("transfer = %d %s", st, body)
	}

	// Every entry core booked is announced on Kafka, keyed by account: the
	// transfer's two legs among them.
	cl, err := kgo.NewClient(kgo.SeedBrokers(d.brokers), kgo.ConsumeTopics(banksync.TopicLedgerEntries),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	legs := map[string]banksync.LedgerEvent{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for len(legs) < 2 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			ev, err := banksync.DecodeLedgerEvent(r.Value)
			if err != nil || string(r.Key) != ev.AccountID {
				t.Errorf("record %q: %v (key %q)", r.Value, err, r.Key)
				return
			}
			if ev.TransferID == "e2e-1" {
				legs[ev.AccountID] = ev
			}
		})
	}
	var bob0 banksync.Account
	_, body = d.call(t, "GET", "/core/v1/accounts/demo-bob", "")
	json.Unmarshal(body, &bob0)
	if ev := legs["demo-bob"]; ev.Amount != 1000 || ev.BalanceAfter != bob0.Balance || ev.Seq != bob0.LastSeq {
		t.Fatalf("event of demo-bob's credit = %+v; core has %s", ev, body)
	}
	if ev := legs["demo-alice"]; ev.Amount != -1000 || ev.Kind != banksync.KindTransferOut {
		t.Fatalf("event of demo-alice's debit = %+v", ev)
	}
	alice0 := legs["demo-alice"].BalanceAfter

	// The same through the channel, as the app does: a transfer, then the
	// history newest first.
	st, body = d.asAlice(t, "POST", "/v1/transfers", `{"from_account":"demo-alice","to_account":"demo-bob","amount":500,"memo":"e2e channel"}`, "Idempotency-Key", "e2e-key-1")
	if st != 200 || !strings.Contains(string(body), `"state":"completed"`) {
		t.Fatalf("channel transfer = %d %s", st, body)
	}
	st, body = d.asAlice(t, "GET", "/v1/accounts/demo-alice/transactions?limit=2", "")
	var page struct {
		Account struct {
			Balance int64 `json:"balance"`
		} `json:"account"`
		Transactions []banksync.Entry `json:"transactions"`
	}
	if err := json.Unmarshal(body, &page); st != 200 || err != nil || len(page.Transactions) != 2 ||
		page.Transactions[0].Amount != -500 || page.Transactions[1].Amount != -1000 || page.Account.Balance != alice0-500 {
		t.Fatalf("channel history = %d %s", st, body)
	}
	// Money from another bank reaches the history through Kafka: no read
	// or sync asks core for it (the account is neither stale nor pending).
	if st, body := d.call(t, "POST", "/core/v1/deposits", `{"external_ref":"e2e-dep","account_id":"demo-alice","amount":777,"sender":"kb-bank"}`); st != 200 {
		t.Fatalf("deposit = %d %s", st, body)
	}
	testkit.Eventually(t, 15*time.Second, "the deposit in alice's history through Kafka", func() error {
		_, body := d.asAlice(t, "GET", "/v1/accounts/demo-alice/transactions?limit=1", "")
		if err := json.Unmarshal(body, &page); err != nil || len(page.Transactions) != 1 || page.Transactions[0].ExternalRef != "e2e-dep" {
			return fmt.Errorf("newest entry: %s", body)
		}
		return nil
	})
	// The channel's admin API: the admin token opens it; neither a
	// customer's token nor core's service token does.
	for name, tok := range map[string]string{"a customer token": d.alice, "the service token": d.token} {
		if st, body := send(t, "GET", d.channelURL+"/admin/v1/dlq", tok, ""); st != 401 {
			t.Fatalf("admin API with %s = %d %s, want 401", name, st, body)
		}
	}
	if st, body := send(t, "GET", d.channelURL+"/admin/v1/dlq", d.admin, ""); st != 200 || string(body) != "{\"dead_letters\":[]}\n" {
		t.Fatalf("dead letters = %d %s, want none", st, body)
	}
	if st, body := send(t, "POST", d.channelURL+"/admin/v1/dlq/replay", d.admin, `{"all":true}`); st != 200 || !strings.Contains(string(body), `"applied":0`) {
		t.Fatalf("replay = %d %s", st, body)
	}
	if st, body = d.asAlice(t, "GET", "/v1/accounts/demo-bob/transactions", ""); st != 404 {
		t.Fatalf("alice reading bob's account = %d %s, want 404", st, body)
	}

	_, before := d.call(t, "GET", "/core/v1/accounts/demo-alice/entries?after_seq=0", "")
	d.stop(t)
	d2 := runDemo(t, data)
	_, after := d2.call(t, "GET", "/core/v1/accounts/demo-alice/entries?after_seq=0", "")
	if !bytes.Equal(before, after) {
		t.Fatalf("entries changed across restart:\nbefore %s\nafter  %s", before, after)
	}
	var acct banksync.Account
	_, body = d2.call(t, "GET", "/core/v1/accounts/demo-bob", "")
	if err := json.Unmarshal(body, &acct); err != nil || acct.Balance != bob0.Balance+500 || acct.LastSeq != bob0.LastSeq+1 {
		t.Fatalf("demo-bob after restart = %s; before it had %+v and then 500 more", body, bob0)
	}
	// The replayed transfer is answered from the record, not executed again.
	st, body = d2.call(t, "POST", "/core/v1/transfers",
		`{"transfer_id":"e2e-1","from_account":"demo-alice","to_account":"demo-bob","amount":1000,"deadline":"`+deadline+`","memo":"e2e"}`)
	if st != 200 || !strings.Contains(string(body), `"completed"`) {
		t.Fatalf("replay after restart = %d %s", st, body)
	}
	_, body = d2.call(t, "GET", "/core/v1/accounts/demo-bob", "")
	if json.Unmarshal(body, &acct); acct.Balance != bob0.Balance+500 {
		t.Fatalf("demo-bob after replay = %s; the transfer ran twice", body)
	}
	d2.stop(t)
}

// TestDemoRestartKeepsEveryRow stops the demo with SIGINT and starts it
// again on the same --data: every balance and every history row, at core and
// in the channel, is unchanged. The first run adds traffic, so the data is
// more than the seed.
func TestDemoRestartKeepsEveryRow(t *testing.T) {
	data := t.TempDir()
	d := runDemo(t, data, "--traffic")
	time.Sleep(3 * time.Second)
	d.stop(t)

	d = runDemo(t, data)
	before := d.snapshot(t)
	first := *d
	d.stop(t)
	d = runDemo(t, data)
	after := d.snapshot(t)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Fatalf("balances or history changed across a restart (-before +after):\n%s", diff)
	}
	// The secrets are kept under --data: the tokens of the first run still
	// open the APIs.
	if d.token != first.token || d.admin != first.admin {
		t.Errorf("service or admin token changed across the restart")
	}
	if st, body := send(t, "GET", d.channelURL+"/v1/accounts", first.alice, ""); st != 200 {
		t.Errorf("alice's token from before the restart = %d %s", st, body)
	}
	if st, body := send(t, "GET", d.channelURL+"/admin/v1/overview", first.admin, ""); st != 200 {
		t.Errorf("the admin token from before the restart = %d %s", st, body)
	}
	d.stop(t)

	entries, traffic := 0, 0
	for _, a := range before.Core {
		entries += len(a.Entries)
		for _, e := range a.Entries {
			if strings.HasPrefix(e.ExternalRef, "demo-traffic-") || e.Memo == "demo traffic" {
				traffic++
			}
		}
	}
	if len(before.Core) != 5 || traffic == 0 {
		t.Fatalf("snapshot holds %d accounts, %d entries, %d from --traffic; want the 5 demo accounts and some traffic", len(before.Core), entries, traffic)
	}
	t.Logf("%d accounts, %d entries (%d from --traffic) kept across the restart", len(before.Core), entries, traffic)
}

// demoSnapshot is everything the demo's customers and core hold.
type demoSnapshot struct {
	Core    map[string]coreAccount    // account -> core's account and entries
	Channel map[string]channelAccount // account -> the channel's state and history
}

type coreAccount struct {
	Account banksync.Account
	Entries []banksync.Entry
}

type channelAccount struct {
	Balance int64
	Synced  int64
	History []banksync.Entry
}

// snapshot waits until every demo account's history has caught up with core,
// then reads both.
func (d *demo) snapshot(t *testing.T) demoSnapshot {
	t.Helper()
	_, body := send(t, "GET", d.channelURL+"/demo/v1/customers", "", "")
	var customers struct {
		Customers []struct {
			ID    string `json:"customer"`
			Token string `json:"token"`
		} `json:"customers"`
	}
	if err := json.Unmarshal(body, &customers); err != nil || len(customers.Customers) == 0 {
		t.Fatalf("demo customers = %s", body)
	}
	snap := demoSnapshot{Core: map[string]coreAccount{}, Channel: map[string]channelAccount{}}
	for _, c := range customers.Customers {
		var accounts struct {
			Accounts []struct {
				ID      string `json:"account_id"`
				Balance int64  `json:"balance"`
				Synced  int64  `json:"synced_through_seq"`
			} `json:"accounts"`
		}
		testkit.Eventually(t, 30*time.Second, "the history of "+c.ID+"'s accounts caught up with core", func() error {
			st, body := send(t, "GET", d.channelURL+"/v1/accounts", c.Token, "")
			if err := json.Unmarshal(body, &accounts); st != 200 || err != nil {
				t.Fatalf("accounts of %s = %d %s", c.ID, st, body)
			}
			for _, a := range accounts.Accounts {
				var acct banksync.Account
				_, body := d.call(t, "GET", "/core/v1/accounts/"+a.ID, "")
				json.Unmarshal(body, &acct)
				if a.Synced != acct.LastSeq {
					return fmt.Errorf("%s synced through seq %d, core at %d", a.ID, a.Synced, acct.LastSeq)
				}
			}
			return nil
		})
		for _, a := range accounts.Accounts {
			var ca coreAccount
			_, body := d.call(t, "GET", "/core/v1/accounts/"+a.ID, "")
			json.Unmarshal(body, &ca.Account)
			var page struct {
				Entries []banksync.Entry `json:"entries"`
			}
			_, body = d.call(t, "GET", "/core/v1/accounts/"+a.ID+"/entries?after_seq=0&limit=1000", "")
			if err := json.Unmarshal(body, &page); err != nil {
				t.Fatal(err)
			}
			ca.Entries = page.Entries
			snap.Core[a.ID] = ca

			cha := channelAccount{Balance: a.Balance, Synced: a.Synced}
			for cursor := ""; ; {
				path := "/v1/accounts/" + a.ID + "/transactions?limit=100"
				if cursor != "" {
					path += "&cursor=" + cursor
				}
				st, body := send(t, "GET", d.channelURL+path, c.Token, "")
				var hp struct {
					Transactions []banksync.Entry `json:"transactions"`
					NextCursor   string           `json:"next_cursor"`
				}
				if err := json.Unmarshal(body, &hp); st != 200 || err != nil {
					t.Fatalf("history of %s = %d %s", a.ID, st, body)
				}
				cha.History = append(cha.History, hp.Transactions...)
				if cursor = hp.NextCursor; cursor == "" {
					break
				}
			}
			snap.Channel[a.ID] = cha
			// The history is core's ledger, newest first (P4).
			if len(cha.History) != len(ca.Entries) {
				t.Fatalf("%s: history has %d rows, core %d entries", a.ID, len(cha.History), len(ca.Entries))
			}
			for i, e := range cha.History {
				if !e.Equal(ca.Entries[len(ca.Entries)-1-i]) {
					t.Fatalf("%s: history row %d = %+v, core has %+v", a.ID, i, e, ca.Entries[len(ca.Entries)-1-i])
				}
			}
		}
	}
	return snap
}
