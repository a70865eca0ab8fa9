package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"banksync"
	bhttp "banksync/http"
	"banksync/ledger"
	"banksync/sqlite"
)

const token = "test-service-token"

type coreFixture struct {
	srv   *httptest.Server
	store ledger.Store
}

func newCore(t *testing.T) *coreFixture {
	t.Helper()
	store, err := sqlite.OpenLedger(context.Background(), filepath.Join(t.TempDir(), "core.db"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := ledger.Open(context.Background(), store, ledger.Config{AmountMax: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(bhttp.NewCoreServer(l, token, nil))
	t.Cleanup(func() { srv.Close(); l.Close(); store.Close() })
	return &coreFixture{srv: srv, store: store}
}

// call sends body (a string, or anything JSON-encodable) and decodes the
// answer into a generic map.
func (f *coreFixture) call(t *testing.T, method, path string, body any, hdr ...string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, requestBody(body))
	req.Header.Set("Authorization", "Bearer "+token)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: answer is not JSON: %q", method, path, raw)
	}
	return resp.StatusCode, out
}

// requestBody is body as a request body: nil for none, a string as it is,
// anything else JSON-encoded.
func requestBody(body any) io.Reader {
	switch b := body.(type) {
	case nil:
		return nil
	case string:
		return strings.NewReader(b)
	default:
		buf, _ := json.Marshal(b)
		return bytes.NewReader(buf)
	}
}

func errCode(m map[string]any) string {
	e, _ := m["error"].(map[string]any)
	c, _ := e["code"].(string)
	return c
}

func deadline() string { return time.Now().Add(10 * time.Second).Format(time.RFC3339Nano) }

func TestCoreHappyPath(t *testing.T) {
	f := newCore(t)
	if st, m := f.call(t, "POST", "/core/v1/accounts", `{"owner":"c1","account_id":"a"}`); st != 201 || m["account_id"] != "a" {
		t.Fatalf("create account = %d %v", st, m)
	}
	if st, _ := f.call(t, "POST", "/core/v1/accounts", `{"owner":"c1","account_id":"a"}`); st != 200 {
		t.Fatalf("create account again = %d, want 200", st)
	}
	if st, m := f.call(t, "POST", "/core/v1/accounts", `{"owner":"c2"}`); st != 201 || m["account_id"] == "" {
		t.Fatalf("create account with generated id = %d %v", st, m)
	}
	f.call(t, "POST", "/core/v1/accounts", `{"owner":"c2","account_id":"b"}`)
	dep := `{"external_ref":"kb-1","account_id":"a","amount":500,"sender":"kb-bank"}`
	st, m := f.call(t, "POST", "/core/v1/deposits", dep)
	if st != 200 || m["status"] != "completed" {
		t.Fatalf("deposit = %d %v", st, m)
	}
	if st, m2 := f.call(t, "POST", "/core/v1/deposits", dep); st != 200 || !cmp.Equal(m2, m) {
		t.Fatalf("deposit replay = %d %v, want %v", st, m2, m)
	}
	tr := map[string]any{"transfer_id": "t1", "from_account": "a", "to_account": "b", "amount": 200, "deadline": deadline(), "memo": "lunch"}
	st, m = f.call(t, "POST", "/core/v1/transfers", tr)
	if st != 200 || m["status"] != "completed" || len(m["entries"].([]any)) != 2 {
		t.Fatalf("transfer = %d %v", st, m)
	}
	if st, m2 := f.call(t, "POST", "/core/v1/transfers", tr); st != 200 || !cmp.Equal(m2, m) {
		t.Fatalf("transfer replay = %d %v, want %v", st, m2, m)
	}
	if st, m2 := f.call(t, "GET", "/core/v1/transfers/t1", nil); st != 200 || !cmp.Equal(m2, m) {
		t.Fatalf("transfer status = %d %v, want %v", st, m2, m)
	}
	tr["amount"] = 201
	if st, m := f.call(t, "POST", "/core/v1/transfers", tr); st != 422 || errCode(m) != banksync.EIDEMPOTENCY {
		t.Fatalf("reused id = %d %v", st, m)
	}
	if st, m := f.call(t, "GET", "/core/v1/transfers/nope", nil); st != 200 || m["status"] != "unknown" {
		t.Fatalf("unknown status = %d %v", st, m)
	}
	if st, m := f.call(t, "POST", "/core/v1/transfers/nope/fence", nil); st != 200 || m["reason"] != "fenced" {
		t.Fatalf("fence = %d %v", st, m)
	}
	late := map[string]any{"transfer_id": "nope", "from_account": "a", "to_account": "b", "amount": 1, "deadline": deadline()}
	if st, m := f.call(t, "POST", "/core/v1/transfers", late); st != 200 || m["status"] != "rejected" || m["reason"] != "fenced" {
		t.Fatalf("late arrival after fence = %d %v", st, m)
	}
	poor := map[string]any{"transfer_id": "t9", "from_account": "b", "to_account": "a", "amount": 999, "deadline": deadline()}
	if st, m := f.call(t, "POST", "/core/v1/transfers", poor); st != 200 || m["reason"] != "insufficient_funds" {
		t.Fatalf("insufficient = %d %v", st, m)
	}
	st, m = f.call(t, "GET", "/core/v1/accounts/a", nil)
	if st != 200 || m["balance"] != 300.0 || m["last_seq"] != 2.0 {
		t.Fatalf("account a = %d %v", st, m)
	}
	st, m = f.call(t, "GET", "/core/v1/accounts?owner=c2", nil)
	if as := m["accounts"].([]any); st != 200 || len(as) != 2 {
		t.Fatalf("accounts of c2 = %d %v, want 2 accounts", st, m)
	}
	st, m = f.call(t, "GET", "/core/v1/accounts/a/entries?after_seq=1&limit=10", nil)
	if es := m["entries"].([]any); st != 200 || len(es) != 1 || es[0].(map[string]any)["seq"] != 2.0 {
		t.Fatalf("entries = %d %v", st, m)
	}
}

// TestCoreRefusesBadInput sends the core API every kind of bad request, on
// SQLite and on PostgreSQL: each is answered with its 4xx code, and the
// ledger's database is unchanged row for row (balances, entries, transfers,
// deposits, outbox position).
func TestCoreRefusesBadInput(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		s := newStack(t, stackOptions{store: kind})
		f := s.core
		f.call(t, "POST", "/core/v1/accounts", `{"owner":"c1","account_id":"a"}`)
		f.call(t, "POST", "/core/v1/accounts", `{"owner":"c1","account_id":"b"}`)
		f.call(t, "POST", "/core/v1/deposits", `{"external_ref":"kb-1","account_id":"a","amount":500,"sender":"kb"}`)
		before := s.dumpCore(t)
		coreRefusals(t, f)
		if d := cmp.Diff(before, s.dumpCore(t)); d != "" {
			t.Fatalf("bad input changed the ledger's database (-before +after):\n%s", d)
		}
	})
}

// coreRefusals sends the bad requests and checks each answer.
func coreRefusals(t *testing.T, f *coreFixture) {
	dl := deadline()
	tr := func(fields string) string {
		return `{"transfer_id":"t1","from_account":"a","to_account":"b","deadline":"` + dl + `"` + fields + `}`
	}
	sender := func(value string) string {
		return `{"external_ref":"kb-2","account_id":"a","amount":5,"sender":` + value + `}`
	}
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code                     string
		hdr                      []string
	}{
		{"no token", "POST", "/core/v1/transfers", tr(`,"amount":1`), 401, banksync.EUNAUTHORIZED, []string{"Authorization", ""}},
		{"wrong token", "POST", "/core/v1/transfers", tr(`,"amount":1`), 401, banksync.EUNAUTHORIZED, []string{"Authorization", "Bearer nope"}},
		{"malformed json", "POST", "/core/v1/transfers", `{"transfer_id":`, 400, banksync.EINVALID, nil},
		{"not an object", "POST", "/core/v1/transfers", `[1,2]`, 400, banksync.EINVALID, nil},
		{"empty body", "POST", "/core/v1/transfers", ``, 400, banksync.EINVALID, nil},
		{"trailing data", "POST", "/core/v1/transfers", tr(`,"amount":1`) + `{}`, 400, banksync.EINVALID, nil},
		{"unknown field", "POST", "/core/v1/transfers", tr(`,"amount":1,"fee":0`), 400, banksync.EINVALID, nil},
		{"duplicate field", "POST", "/core/v1/transfers", tr(`,"amount":1,"amount":2`), 400, banksync.EINVALID, nil},
		{"missing amount", "POST", "/core/v1/transfers", tr(``), 400, banksync.EINVALID, nil},
		{"missing deadline", "POST", "/core/v1/transfers", `{"transfer_id":"t1","from_account":"a","to_account":"b","amount":1}`, 400, banksync.EINVALID, nil},
		{"bad deadline", "POST", "/core/v1/transfers", `{"transfer_id":"t1","from_account":"a","to_account":"b","amount":1,"deadline":"tomorrow"}`, 400, banksync.EINVALID, nil},
		{"zero amount", "POST", "/core/v1/transfers", tr(`,"amount":0`), 422, banksync.EINVALIDAMOUNT, nil},
		{"negative amount", "POST", "/core/v1/transfers", tr(`,"amount":-1`), 422, banksync.EINVALIDAMOUNT, nil},
		{"negative zero", "POST", "/core/v1/transfers", tr(`,"amount":-0`), 422, banksync.EINVALIDAMOUNT, nil},
		{"fraction", "POST", "/core/v1/transfers", tr(`,"amount":1.5`), 422, banksync.EINVALIDAMOUNT, nil},
		{"exponent", "POST", "/core/v1/transfers", tr(`,"amount":1e3`), 422, banksync.EINVALIDAMOUNT, nil},
		{"string amount", "POST", "/core/v1/transfers", tr(`,"amount":"100"`), 422, banksync.EINVALIDAMOUNT, nil},
		{"beyond int64", "POST", "/core/v1/transfers", tr(`,"amount":9223372036854775808`), 422, banksync.EINVALIDAMOUNT, nil},
		{"over the limit", "POST", "/core/v1/transfers", tr(`,"amount":1000001`), 422, banksync.EINVALIDAMOUNT, nil},
		{"same account", "POST", "/core/v1/transfers", `{"transfer_id":"t1","from_account":"a","to_account":"a","amount":1,"deadline":"` + dl + `"}`, 422, banksync.ESAMEACCOUNT, nil},
		{"bad transfer id", "POST", "/core/v1/transfers", `{"transfer_id":"../x","from_account":"a","to_account":"b","amount":1,"deadline":"` + dl + `"}`, 400, banksync.EINVALID, nil},
		{"wrong content type", "POST", "/core/v1/transfers", tr(`,"amount":1`), 415, "unsupported_media_type", []string{"Content-Type", "text/plain"}},
		{"huge body", "POST", "/core/v1/transfers", `{"memo":"` + strings.Repeat("x", 70<<10) + `"}`, 413, banksync.ETOOLARGE, nil},
		{"deposit missing sender", "POST", "/core/v1/deposits", `{"external_ref":"kb-2","account_id":"a","amount":5}`, 400, banksync.EINVALID, nil},
		{"sender empty", "POST", "/core/v1/deposits", sender(`""`), 400, banksync.EINVALID, nil},
		{"sender 65 characters", "POST", "/core/v1/deposits", sender(`"` + strings.Repeat("김", 65) + `"`), 400, banksync.EINVALID, nil},
		{"sender zero-width space", "POST", "/core/v1/deposits", sender(`"김\u200b철수"`), 400, banksync.EINVALID, nil},
		{"sender bidi override", "POST", "/core/v1/deposits", sender(`"kb\u202eknab"`), 400, banksync.EINVALID, nil},
		{"sender BOM", "POST", "/core/v1/deposits", sender(`"\ufeff김철수"`), 400, banksync.EINVALID, nil},
		{"sender hangul filler", "POST", "/core/v1/deposits", sender(`"\u3164"`), 400, banksync.EINVALID, nil},
		{"sender control char", "POST", "/core/v1/deposits", sender(`"kb\u0007"`), 400, banksync.EINVALID, nil},
		{"sender newline", "POST", "/core/v1/deposits", sender(`"kb\nbank"`), 400, banksync.EINVALID, nil},
		{"sender leading space", "POST", "/core/v1/deposits", sender(`" 김철수"`), 400, banksync.EINVALID, nil},
		{"sender double space", "POST", "/core/v1/deposits", sender(`"김  철수"`), 400, banksync.EINVALID, nil},
		{"sender emoji", "POST", "/core/v1/deposits", sender(`"김철수🎉"`), 400, banksync.EINVALID, nil},
		{"sender private use", "POST", "/core/v1/deposits", sender(`"kb\ue000"`), 400, banksync.EINVALID, nil},
		{"sender broken UTF-8", "POST", "/core/v1/deposits", sender("\"kb\xffbank\""), 400, banksync.EINVALID, nil},
		{"sender lone surrogate", "POST", "/core/v1/deposits", sender(`"kb\ud800"`), 400, banksync.EINVALID, nil},
		{"sender not a string", "POST", "/core/v1/deposits", sender(`["kb"]`), 400, banksync.EINVALID, nil},
		{"memo 141 characters", "POST", "/core/v1/transfers", tr(`,"amount":1,"memo":"` + strings.Repeat("가", 141) + `"`), 400, banksync.EINVALID, nil},
		{"memo zero-width space", "POST", "/core/v1/transfers", tr(`,"amount":1,"memo":"a\u200bb"`), 400, banksync.EINVALID, nil},
		{"memo bidi override", "POST", "/core/v1/transfers", tr(`,"amount":1,"memo":"rent \u202etxt.exe"`), 400, banksync.EINVALID, nil},
		{"memo line separator", "POST", "/core/v1/transfers", tr(`,"amount":1,"memo":"a\u2028b"`), 400, banksync.EINVALID, nil},
		{"memo broken UTF-8", "POST", "/core/v1/transfers", tr(",\"amount\":1,\"memo\":\"a\xffb\""), 400, banksync.EINVALID, nil},
		{"deposit to missing account", "POST", "/core/v1/deposits", `{"external_ref":"kb-2","account_id":"zz","amount":5,"sender":"kb"}`, 404, banksync.EACCOUNTMISSING, nil},
		{"deposit ref reused", "POST", "/core/v1/deposits", `{"external_ref":"kb-1","account_id":"a","amount":501,"sender":"kb"}`, 422, banksync.EIDEMPOTENCY, nil},
		{"account owner taken", "POST", "/core/v1/accounts", `{"owner":"c2","account_id":"a"}`, 409, banksync.EACCOUNTEXISTS, nil},
		{"account without owner", "POST", "/core/v1/accounts", `{"account_id":"x"}`, 400, banksync.EINVALID, nil},
		{"missing account", "GET", "/core/v1/accounts/zz", ``, 404, banksync.ENOTFOUND, nil},
		{"accounts without owner", "GET", "/core/v1/accounts", ``, 400, banksync.EINVALID, nil},
		{"entries bad after_seq", "GET", "/core/v1/accounts/a/entries?after_seq=x", ``, 400, banksync.EINVALID, nil},
		{"entries limit too big", "GET", "/core/v1/accounts/a/entries?limit=100000", ``, 400, banksync.EINVALID, nil},
		{"fence bad id", "POST", "/core/v1/transfers/%20x/fence", ``, 400, banksync.EINVALID, nil},
		{"status bad id", "GET", "/core/v1/transfers/%20x", ``, 400, banksync.EINVALID, nil},
		{"outbox wrong method", "POST", "/core/v1/outbox", `{}`, 405, "method_not_allowed", nil},
		{"unknown route", "GET", "/core/v1/nothing", ``, 404, banksync.ENOTFOUND, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, m := f.call(t, tc.method, tc.path, tc.body, tc.hdr...)
			if st != tc.status || errCode(m) != tc.code {
				t.Fatalf("got %d %q (%v), want %d %q", st, errCode(m), m, tc.status, tc.code)
			}
		})
	}
}

// dump is everything the ledger holds that a request could change.
func dump(t *testing.T, s ledger.Store) any {
	ctx := context.Background()
	accts, err := s.Accounts(ctx, []string{"a", "b", "x", "zz"})
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := s.EntriesAfter(ctx, 0, 1000)
	transfers, _ := s.Transfers(ctx, []string{"t1", "../x", " x"})
	deposits, _ := s.Deposits(ctx, []string{"kb-1", "kb-2"})
	totals, _ := s.Totals(ctx)
	return []any{accts, entries, transfers, deposits, totals}
}

func TestCoreDepositsBatch(t *testing.T) {
	f := newCore(t)
	f.call(t, "POST", "/core/v1/accounts", `{"owner":"c1","account_id":"a"}`)
	f.call(t, "POST", "/core/v1/accounts", `{"owner":"c2","account_id":"b"}`)
	batch := `{"deposits":[
		{"external_ref":"kb-1","account_id":"a","amount":500,"sender":"kb"},
		{"external_ref":"kb-2","account_id":"b","amount":300,"sender":"kb"},
		{"external_ref":"kb-3","account_id":"zz","amount":5,"sender":"kb"},
		{"external_ref":"kb-1","account_id":"a","amount":501,"sender":"kb"}]}`
	st, m := f.call(t, "POST", "/core/v1/deposits/batch", batch)
	if st != 200 {
		t.Fatalf("batch = %d %v", st, m)
	}
	results, _ := m["results"].([]any)
	if len(results) != 4 {
		t.Fatalf("batch answered %d results for 4 deposits: %v", len(results), m)
	}
	item := func(i int) map[string]any { return results[i].(map[string]any) }
	for i, ref := range []string{"kb-1", "kb-2", "kb-3", "kb-1"} {
		if item(i)["external_ref"] != ref {
			t.Fatalf("results[%d] is for %v, want %s (request order)", i, item(i)["external_ref"], ref)
		}
	}
	for i, code := range []string{"", "", banksync.EACCOUNTMISSING, banksync.EIDEMPOTENCY} {
		if got := errCode(item(i)); got != code {
			t.Fatalf("results[%d] error code = %q (%v), want %q", i, got, item(i), code)
		}
	}
	if _, ok := item(2)["entry"]; ok {
		t.Fatalf("failed item carries an entry: %v", item(2))
	}
	// A booked item is exactly what the single deposit endpoint answers for it.
	st, single := f.call(t, "POST", "/core/v1/deposits", `{"external_ref":"kb-1","account_id":"a","amount":500,"sender":"kb"}`)
	if st != 200 || !cmp.Equal(single, item(0)) {
		t.Fatalf("single deposit replay = %d %v, want the batch item %v", st, single, item(0))
	}
	if st, acct := f.call(t, "GET", "/core/v1/accounts/b", nil); st != 200 || acct["balance"] != 300.0 || acct["last_seq"] != 1.0 {
		t.Fatalf("account b = %d %v", st, acct)
	}

	before := dump(t, f.store)
	if st, again := f.call(t, "POST", "/core/v1/deposits/batch", batch); st != 200 || !cmp.Equal(again, m) {
		t.Fatalf("batch replay = %d %v, want %v", st, again, m)
	}
	if d := cmp.Diff(before, dump(t, f.store)); d != "" {
		t.Fatalf("batch replay changed the ledger (-before +after):\n%s", d)
	}
}

func TestCoreDepositsBatchRefusesBadInput(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		s := newStack(t, stackOptions{store: kind})
		s.core.call(t, "POST", "/core/v1/accounts", `{"owner":"c1","account_id":"a"}`)
		before := s.dumpCore(t)
		depositsBatchRefusals(t, s.core)
		if d := cmp.Diff(before, s.dumpCore(t)); d != "" {
			t.Fatalf("bad input changed the ledger's database (-before +after):\n%s", d)
		}
	})
}

// depositsBatchRefusals sends bad batches and checks each answer.
func depositsBatchRefusals(t *testing.T, f *coreFixture) {
	good := `{"external_ref":"kb-1","account_id":"a","amount":5,"sender":"kb"}`
	batch := func(items ...string) string { return `{"deposits":[` + strings.Join(items, ",") + `]}` }
	tooMany := make([]string, ledger.DepositsBatchMax+1)
	for i := range tooMany {
		tooMany[i] = fmt.Sprintf(`{"external_ref":"kb-%d","account_id":"a","amount":5,"sender":"kb"}`, i)
	}
	for _, tc := range []struct {
		name, body string
		status     int
		code, msg  string
		hdr        []string
	}{
		{"no token", batch(good), 401, banksync.EUNAUTHORIZED, "", []string{"Authorization", ""}},
		{"empty list", batch(), 400, banksync.EINVALID, "deposits must hold between 1 and 1000", nil},
		{"no list", `{}`, 400, banksync.EINVALID, "field deposits is required", nil},
		{"null list", `{"deposits":null}`, 400, banksync.EINVALID, "field deposits is required", nil},
		{"1001 items", batch(tooMany...), 400, banksync.EINVALID, "deposits must hold between 1 and 1000", nil},
		{"item missing sender", batch(good, `{"external_ref":"kb-2","account_id":"a","amount":5}`), 400, banksync.EINVALID, "deposits[1]: field sender is required", nil},
		{"null item", batch(good, `null`), 400, banksync.EINVALID, "deposits[1]: field external_ref is required", nil},
		{"bad external_ref", batch(good, `{"external_ref":"../x","account_id":"a","amount":5,"sender":"kb"}`), 400, banksync.EINVALID, "deposits[1]: external_ref", nil},
		{"zero amount", batch(good, `{"external_ref":"kb-2","account_id":"a","amount":0,"sender":"kb"}`), 422, banksync.EINVALIDAMOUNT, "deposits[1]: amount", nil},
		{"over the limit", batch(good, `{"external_ref":"kb-2","account_id":"a","amount":1000001,"sender":"kb"}`), 422, banksync.EINVALIDAMOUNT, "deposits[1]: amount", nil},
		{"string amount", batch(good, `{"external_ref":"kb-2","account_id":"a","amount":"5","sender":"kb"}`), 422, banksync.EINVALIDAMOUNT, "", nil},
		{"fraction", batch(good, `{"external_ref":"kb-2","account_id":"a","amount":1.5,"sender":"kb"}`), 422, banksync.EINVALIDAMOUNT, "", nil},
		{"item not an object", batch(good, `1`), 400, banksync.EINVALID, "", nil},
		{"hidden character in a sender", batch(good, `{"external_ref":"kb-2","account_id":"a","amount":5,"sender":"김\u200b철수"}`), 400, banksync.EINVALID,
			"deposits[1]: sender holds U+200B, a control or invisible character, at character 2", nil},
		{"sender too long", batch(`{"external_ref":"kb-2","account_id":"a","amount":5,"sender":"`+strings.Repeat("김", 65)+`"}`, good), 400, banksync.EINVALID,
			"deposits[0]: sender is 65 characters long; at most 64", nil},
		{"list not a list", `{"deposits":{}}`, 400, banksync.EINVALID, "", nil},
		{"unknown item field", batch(`{"external_ref":"kb-1","account_id":"a","amount":5,"sender":"kb","fee":0}`), 400, banksync.EINVALID, "unknown field", nil},
		{"unknown field", `{"deposits":[` + good + `],"fee":0}`, 400, banksync.EINVALID, "unknown field", nil},
		{"duplicate item field", batch(good, `{"external_ref":"kb-2","account_id":"a","amount":5,"amount":6,"sender":"kb"}`), 400, banksync.EINVALID, "field deposits/1/amount appears twice", nil},
		{"trailing data", batch(good) + `{}`, 400, banksync.EINVALID, "", nil},
		{"malformed json", `{"deposits":[` + good, 400, banksync.EINVALID, "", nil},
		{"wrong content type", batch(good), 415, "unsupported_media_type", "", []string{"Content-Type", "text/plain"}},
		{"over 1 MiB", `{"deposits":[` + good + strings.Repeat(" ", 1<<20) + `]}`, 413, banksync.ETOOLARGE, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, m := f.call(t, "POST", "/core/v1/deposits/batch", tc.body, tc.hdr...)
			msg, _ := m["error"].(map[string]any)["message"].(string)
			if st != tc.status || errCode(m) != tc.code || !strings.HasPrefix(msg, tc.msg) {
				t.Fatalf("got %d %q %q, want %d %q %q…", st, errCode(m), msg, tc.status, tc.code, tc.msg)
			}
		})
	}
}

func TestCoreClientDeposits(t *testing.T) {
	ctx := context.Background()
	f := newCore(t)
	c := bhttp.NewCoreClient(f.srv.URL, token, nil)
	// The largest batch of the longest ids and amounts fits the body limit,
	// and its answer the client's.
	long := func(prefix string, i int) string { return fmt.Sprintf("%s%0*d", prefix, 64-len(prefix), i) }
	for i := range 10 {
		f.call(t, "POST", "/core/v1/accounts", map[string]any{"owner": "c1", "account_id": long("acct-", i)})
	}
	ds := make([]banksync.DepositRequest, ledger.DepositsBatchMax)
	for i := range ds {
		ds[i] = banksync.DepositRequest{ExternalRef: long("payroll-", i), AccountID: long("acct-", i%10),
			Amount: 1_000_000, Sender: long("employer-bank-", 0)}
	}
	got, err := c.Deposits(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	for i, res := range got {
		e := res.Outcome.Entry
		if res.Err != nil || res.Outcome.ExternalRef != ds[i].ExternalRef || res.Outcome.Status != banksync.StatusCompleted ||
			e.AccountID != ds[i].AccountID || e.Seq != int64(i/10+1) || e.Amount != ds[i].Amount {
			t.Fatalf("results[%d] = %+v, %v; want deposit %+v booked as seq %d", i, res.Outcome, res.Err, ds[i], i/10+1)
		}
	}
	again, err := c.Deposits(ctx, ds)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(got, again); d != "" {
		t.Fatalf("replayed batch answered differently (-first +replay):\n%s", d)
	}
	totals, err := f.store.Totals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(ledger.DepositsBatchMax) * 1_000_000; totals.Deposits != want {
		t.Fatalf("deposits total = %d, want %d: each booked once", totals.Deposits, want)
	}

	mixed, err := c.Deposits(ctx, []banksync.DepositRequest{
		{ExternalRef: "kb-1", AccountID: ds[0].AccountID, Amount: 5, Sender: "kb"},
		{ExternalRef: "kb-2", AccountID: "zz", Amount: 5, Sender: "kb"},
		{ExternalRef: ds[0].ExternalRef, AccountID: ds[0].AccountID, Amount: 6, Sender: "kb"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if mixed[0].Err != nil || mixed[0].Outcome.Entry.Amount != 5 {
		t.Fatalf("results[0] = %+v, %v; want booked", mixed[0].Outcome, mixed[0].Err)
	}
	var coded *banksync.Error
	if !errors.As(mixed[1].Err, &coded) || coded.Code != banksync.EACCOUNTMISSING {
		t.Fatalf("results[1] error = %#v, want a *banksync.Error coded %s", mixed[1].Err, banksync.EACCOUNTMISSING)
	}
	if code := banksync.ErrorCode(mixed[2].Err); code != banksync.EIDEMPOTENCY {
		t.Fatalf("results[2] error code = %q (%v), want %s", code, mixed[2].Err, banksync.EIDEMPOTENCY)
	}

	before := dump(t, f.store)
	for _, bad := range [][]banksync.DepositRequest{nil, append(ds, ds[0]), {{ExternalRef: "kb-9", AccountID: "a", Amount: 5}}} {
		res, err := c.Deposits(ctx, bad)
		if code := banksync.ErrorCode(err); code != banksync.EINVALID || res != nil {
			t.Fatalf("Deposits(%d deposits) = %d results, %v; want none and %s", len(bad), len(res), err, banksync.EINVALID)
		}
	}
	if d := cmp.Diff(before, dump(t, f.store)); d != "" {
		t.Fatalf("refused batches changed the ledger (-before +after):\n%s", d)
	}
}
