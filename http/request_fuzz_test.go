package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"banksync"
	"banksync/channel"
	bhttp "banksync/http"
	"banksync/ledger"
	"banksync/sqlite"
)

// The fuzz targets here send request bodies a client could send to the
// real handlers, over real stores, and hold the API to its promises: never
// a 5xx, always JSON, every 4xx a coded error, and a refused request
// writes nothing to the ledger. Each target builds its server once; inputs
// that succeed change its state, so later inputs meet accounts that exist,
// funds that ran out and idempotency keys already used.

// corePostPaths are the core endpoints that take a body; a fuzz input picks
// one by index.
var corePostPaths = []string{
	"/core/v1/transfers",
	"/core/v1/deposits",
	"/core/v1/deposits/batch",
	"/core/v1/accounts",
}

// FuzzCoreRequests posts bodies to the core endpoints that take one, as
// the channel would, with the service token.
func FuzzCoreRequests(f *testing.F) {
	core := newFuzzCore(f)
	dl := time.Now().Add(time.Minute).Format(time.RFC3339Nano)
	transfer := func(fields string) string {
		return `{"transfer_id":"t1","from_account":"a1","to_account":"b1","deadline":"` + dl + `"` + fields + `}`
	}
	deposit := func(amount string) string {
		return `{"external_ref":"kb-1","account_id":"a1","amount":` + amount + `,"sender":"kb-bank"}`
	}
	for _, seed := range []struct {
		path        int
		contentType string
		body        string
	}{
		{0, "application/json", transfer(`,"amount":100,"memo":"lunch"`)},
		{0, "application/json", transfer(`,"amount":1.5`)},
		{0, "", transfer(`,"amount":"100"`)},
		{0, "application/json; charset=utf-8", transfer(`,"amount":1e3`)},
		{0, "application/json", transfer(`,"amount":-0`)},
		{0, "application/json", transfer(`,"amount":9223372036854775808`)},
		{0, "application/json", transfer(`,"amount":1,"memo":"a\u0007b"`)},
		{0, "text/plain", transfer(`,"amount":1`)},
		{0, "application/json", `{"transfer_id":"t2","from_account":"a1","to_account":"a1","amount":1,"deadline":"0001-01-01T00:00:00Z"}`},
		{1, "application/json", deposit(`500`)},
		{1, "application/json", deposit(`501`)},
		{1, "application/json", deposit(`1e2`) + `{}`},
		{1, "application/json", `{"external_ref":"kb-2","account_id":"a1","amount":500,"sender":"kb-bank","fee":0}`},
		{1, "application/json;;", `{"external_ref":"kb-3"}`},
		{1, "application/json", `{"external_ref":"toss-1","account_id":"a1","amount":5,"sender":"(주)토스 급여"}`},
		{1, "application/json", `{"external_ref":"toss-2","account_id":"a1","amount":5,"sender":"\u1100\u1175\u11b7\u110e\u1165\u11af\u1109\u116e"}`},
		{1, "application/json", `{"external_ref":"toss-3","account_id":"a1","amount":5,"sender":"Jose\u0301 O’Brien & Co."}`},
		{1, "application/json", `{"external_ref":"toss-4","account_id":"a1","amount":5,"sender":"김\u200b철수"}`},
		{1, "application/json", `{"external_ref":"toss-5","account_id":"a1","amount":5,"sender":"kb\u202eknab"}`},
		{1, "application/json", `{"external_ref":"toss-6","account_id":"a1","amount":5,"sender":" 김철수"}`},
		{1, "application/json", `{"external_ref":"toss-7","account_id":"a1","amount":5,"sender":"` + strings.Repeat("김", 64) + `"}`},
		{1, "application/json", `{"external_ref":"toss-8","account_id":"a1","amount":5,"sender":"` + strings.Repeat("김", 65) + `"}`},
		{1, "application/json", `{"external_ref":"toss-9","account_id":"a1","amount":5,"sender":"\u3164"}`},
		{0, "application/json", transfer(`,"amount":1,"memo":"` + strings.Repeat("가", 140) + `"`)},
		{0, "application/json", transfer(`,"amount":1,"memo":"🧑\u200d💻 ❤\ufe0f caf\u0065\u0301"`)},
		{0, "application/json", transfer(`,"amount":1,"memo":"a\u200bb\ufeff"`)},
		{2, "application/json", `{"deposits":[` + deposit(`7`) + `,{"external_ref":"kb-4","account_id":"zz","amount":1,"sender":"kb"}]}`},
		{2, "application/json", `{"deposits":[{"external_ref":"kb-5","account_id":"a1","amount":1.5,"sender":"kb"}]}`},
		{2, "application/json", `{"deposits":[{"external_ref":"kb-6"}]}`},
		{2, "application/json", `{"deposits":null}`},
		{3, "application/json", `{"owner":"cust-c","account_id":"c1"}`},
		{3, "application/json", `{"owner":"cust-a","account_id":"a1"}`},
		{3, "application/json", `{"owner":"cust-c","account_id":"../c1"}`},
		{3, "application/json", `{"owner":""}`},
		{3, "application/json", `[{"owner":"cust-c"}]`},
		{3, "application/json", ``},
		{3, "application/json", `{"owner":"cust-c",`},
	} {
		// No seed is over bodySizeMax: the fuzzer would spend its time
		// minimizing the inputs grown from it. TestCoreRefusesBadInput
		// covers the limit.
		f.Add(uint8(seed.path), seed.contentType, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, path uint8, contentType string, body []byte) {
		p := corePostPaths[int(path)%len(corePostPaths)]
		before := core.store.written()
		rec := serveFuzz(core.api, "POST", p, contentType, body, "Authorization", "Bearer "+token)
		checkAnswer(t, "POST "+p, rec)
		checkAnsweredText(t, "POST "+p, rec)
		if after := core.store.written(); rec.Code >= 400 && after != before {
			t.Fatalf("POST %s answered %d %s, but the ledger wrote %+v, was %+v", p, rec.Code, rec.Body, after, before)
		}
	})
}

// FuzzChannelTransfer submits transfers to the customer API of a real
// channel over a real core, as customer cust-a, who owns a1 (funded); b1
// belongs to cust-b.
func FuzzChannelTransfer(f *testing.F) {
	core := newFuzzCore(f)
	coreSrv := httptest.NewServer(core.api)
	f.Cleanup(coreSrv.Close)
	chStore, err := sqlite.OpenChannel(context.Background(), filepath.Join(f.TempDir(), "channel.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { chStore.Close() })
	auth, err := bhttp.NewHS256Authenticator([]byte(customerSecret), authOptions)
	if err != nil {
		f.Fatal(err)
	}
	ch := channel.New(chStore, bhttp.NewCoreClient(coreSrv.URL, token, nil), channel.Config{AmountMax: amountMax})
	api := bhttp.NewChannelServer(ch, bhttp.ChannelServerConfig{Auth: auth, Cursors: channel.NewCursors([]byte("fuzz cursor secret"))})
	bearer, err := auth.Issue("cust-a", time.Hour)
	if err != nil {
		f.Fatal(err)
	}

	tr := func(fields string) string { return `{"from_account":"a1","to_account":"b1"` + fields + `}` }
	for _, seed := range []struct {
		key, contentType, body string
	}{
		{"k1", "application/json", tr(`,"amount":100,"memo":"점심"`)},
		{"k1", "application/json", tr(`,"amount":101`)},
		{"k2", "application/json", tr(`,"amount":2000000`)},
		{"k3", "application/json", `{"from_account":"a1","to_account":"zz","amount":1}`},
		{"k4", "application/json", `{"from_account":"b1","to_account":"a1","amount":1}`},
		{"k5", "application/json", tr(`,"amount":1.5`)},
		{"k5", "application/json", tr(`,"amount":"100"`)},
		{"k5", "application/json", tr(`,"amount":1e3`)},
		{"k5", "application/json", tr(`,"amount":-0`)},
		{"k5", "application/json", tr(`,"amount":9223372036854775808`)},
		{"k5", "application/json", tr(`,"amount":1,"memo":"` + strings.Repeat("m", 141) + `"`)},
		{"k6", "application/json", tr(`,"amount":1,"memo":"` + strings.Repeat("가", 140) + `"`)},
		{"k7", "application/json", tr(`,"amount":1,"memo":"` + strings.Repeat("가", 141) + `"`)},
		{"k8", "application/json", tr(`,"amount":1,"memo":"\u1102\u1161\u11ab 🧑\u200d💻"`)},
		{"k9", "application/json", tr(`,"amount":1,"memo":"rent \u202etxt.exe"`)},
		{"k9", "application/json", tr(`,"amount":1,"memo":"\u200b"`)},
		{"k5", "application/json", tr(`,"amount":1,"fee":0`)},
		{"k5", "application/json", tr(`,"amount":1`) + `{}`},
		{"k5", "text/plain", tr(`,"amount":1`)},
		{"k5", "", `{"from_account":`},
		{"", "application/json", tr(`,"amount":1`)},
		{strings.Repeat("k", 129), "application/json", tr(`,"amount":1`)},
		{"k\"6", "application/json", tr(`,"amount":1`)},
	} {
		f.Add(seed.key, seed.contentType, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, key, contentType string, body []byte) {
		before := core.store.written()
		rec := serveFuzz(api, "POST", "/v1/transfers", contentType, body, "Authorization", "Bearer "+bearer, "Idempotency-Key", key)
		checkAnswer(t, "POST /v1/transfers", rec)
		checkAnsweredText(t, "POST /v1/transfers", rec)
		// A transfer core refused is recorded there as rejected: only
		// money, entries and accounts must stay as they were.
		after := core.store.written()
		before.Transfers, after.Transfers = 0, 0
		if rec.Code >= 400 && after != before {
			t.Fatalf("POST /v1/transfers answered %d %s, but the ledger wrote %+v, was %+v", rec.Code, rec.Body, after, before)
		}
	})
}

// fuzzCore is the core API over a ledger on SQLite with accounts a1 (of
// cust-a, holding 3×amountMax) and b1 (of cust-b).
type fuzzCore struct {
	api   http.Handler
	store *countingStore
}

func newFuzzCore(tb testing.TB) *fuzzCore {
	tb.Helper()
	ctx := context.Background()
	st, err := sqlite.OpenLedger(ctx, filepath.Join(tb.TempDir(), "core.db"))
	if err != nil {
		tb.Fatal(err)
	}
	store := &countingStore{Store: st}
	l, err := ledger.Open(ctx, store, ledger.Config{AmountMax: amountMax})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close(); st.Close() })
	for _, a := range []struct{ id, owner string }{{"a1", "cust-a"}, {"b1", "cust-b"}} {
		if _, _, err := l.CreateAccount(ctx, a.id, a.owner); err != nil {
			tb.Fatal(err)
		}
	}
	for i := range 3 {
		d := banksync.DepositRequest{ExternalRef: fmt.Sprintf("setup-%d", i), AccountID: "a1", Amount: amountMax, Sender: "kb-bank"}
		if _, err := l.Deposit(ctx, d); err != nil {
			tb.Fatal(err)
		}
	}
	return &fuzzCore{api: bhttp.NewCoreServer(l, token, nil), store: store}
}

// countingStore is a ledger store that counts what its commits wrote, so a
// fuzz target can tell that a request changed nothing without reading the
// whole database after each input.
type countingStore struct {
	ledger.Store
	mu    sync.Mutex
	wrote ledgerWrites
}

type ledgerWrites struct {
	Accounts, Entries, Deposits, Transfers int
}

func (s *countingStore) Commit(ctx context.Context, b *ledger.Batch) error {
	if err := s.Store.Commit(ctx, b); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wrote.Accounts += len(b.NewAccounts)
	s.wrote.Entries += len(b.Entries)
	s.wrote.Deposits += len(b.Deposits)
	s.wrote.Transfers += len(b.Transfers)
	return nil
}

func (s *countingStore) written() ledgerWrites {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wrote
}

// serveFuzz has h answer one request; hdr are header names and values.
func serveFuzz(h http.Handler, method, path, contentType string, body []byte, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// checkAnswer fails t unless the answer keeps the promises the API makes
// whatever the client sent: no 5xx, a JSON body, and for a 4xx a coded
// error {"error":{"code":…,"message":…}}.
func checkAnswer(t *testing.T, call string, rec *httptest.ResponseRecorder) {
	t.Helper()
	if rec.Code >= 500 {
		t.Fatalf("%s answered %d %s", call, rec.Code, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s answered %d with Content-Type %q: %s", call, rec.Code, ct, rec.Body)
	}
	var answer struct {
		Error *struct {
			Code    *string `json:"code"`
			Message *string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
		t.Fatalf("%s answered %d with a body that is not JSON (%v): %q", call, rec.Code, err, rec.Body)
	}
	if e := answer.Error; rec.Code >= 400 && (e == nil || e.Code == nil || *e.Code == "" || e.Message == nil || *e.Message == "") {
		t.Fatalf("%s answered %d without a coded error: %s", call, rec.Code, rec.Body)
	}
}

// checkAnsweredText fails t unless every "counterparty" and "memo" in an
// answer is text the rules accept as it is: what the server booked was
// normalised (NFC) and checked, whatever the client sent.
func checkAnsweredText(t *testing.T, call string, rec *httptest.ResponseRecorder) {
	t.Helper()
	var answer any
	if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil {
		return // checkAnswer reports it
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case []any:
			for _, x := range v {
				walk(x)
			}
		case map[string]any:
			for k, x := range v {
				s, isText := x.(string)
				switch {
				case isText && k == "counterparty":
					if got, err := banksync.NormalizeSender(s); err != nil || got != s {
						t.Fatalf("%s answered %d with counterparty %+q, which the name rules make %+q, %v", call, rec.Code, s, got, err)
					}
				case isText && k == "memo":
					if got, err := banksync.NormalizeMemo(s); err != nil || got != s {
						t.Fatalf("%s answered %d with memo %+q, which the memo rules make %+q, %v", call, rec.Code, s, got, err)
					}
				default:
					walk(x)
				}
			}
		}
	}
	walk(answer)
}
