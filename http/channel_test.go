package http_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // the "sqlite" driver, to read the stores' files whole

	"banksync"
	"banksync/channel"
	bhttp "banksync/http"
	"banksync/ledger"
	"banksync/postgres"
	"banksync/postgres/pgtest"
	"banksync/sqlite"
)

const (
	customerSecret = "test-customer-token-secret-0123456789abcdef"
	amountMax      = 1_000_000
)

var authOptions = bhttp.AuthOptions{Issuer: "banksync-test", Audience: "banksync-channel", Leeway: 5 * time.Second}

// storeKind names the kind of store a stack keeps core's ledger and the
// channel in; both are always of the same kind.
type storeKind string

const (
	storeSQLite   storeKind = "sqlite"
	storePostgres storeKind = "postgres"
)

// forEachStore runs test once per kind of store, as subtests named after
// the kind. The PostgreSQL run skips without BANKSYNC_TEST_POSTGRES (and
// fails under CI), as pgtest.Database does.
func forEachStore(t *testing.T, test func(t *testing.T, kind storeKind)) {
	t.Helper()
	for _, kind := range []storeKind{storeSQLite, storePostgres} {
		t.Run(string(kind), func(t *testing.T) { test(t, kind) })
	}
}

// stack is a real channel (store, core client, customer API) over a real
// core (ledger behind the core API), both stores of one kind.
type stack struct {
	core *coreFixture // core's API, for setting up accounts and deposits
	// dumpCore and dumpChannel read every row of core's and the channel's
	// stores.
	dumpCore    func(t *testing.T) map[string][]string
	dumpChannel func(t *testing.T) map[string][]string
	srv         *httptest.Server // the customer API
	auth        *bhttp.Authenticator
	ch          *channel.Channel // behind srv
	chStore     channel.Store
	coreURL     string // what ch calls core at
	// replica serves a second channel over another store on the same
	// channel database, as a second replica would.
	replica func(t *testing.T) *httptest.Server
}

type stackOptions struct {
	// store is the kind of both stores; SQLite if unset.
	store storeKind
	// coreFront, if set, stands between the channel and core's API.
	coreFront func(t *testing.T, core http.Handler) http.Handler
	channel   channel.Config
	// transferLimit and readLimit are the customers' budgets (none if zero).
	transferLimit, readLimit bhttp.RateLimit
}

func newStack(t *testing.T, opts stackOptions) *stack {
	t.Helper()
	ctx := context.Background()
	s := &stack{}

	var (
		coreStore interface {
			ledger.Store
			Close() error
		}
		chStore interface {
			channel.Store
			Close() error
		}
		openChannel func() error
	)
	switch opts.store {
	case storeSQLite, "":
		dir := t.TempDir()
		corePath, chPath := filepath.Join(dir, "core.db"), filepath.Join(dir, "channel.db")
		s.dumpCore = func(t *testing.T) map[string][]string { return dumpDB(t, corePath) }
		s.dumpChannel = func(t *testing.T) map[string][]string { return dumpDB(t, chPath) }
		st, err := sqlite.OpenLedger(ctx, corePath)
		if err != nil {
			t.Fatal(err)
		}
		coreStore = st
		openChannel = func() error {
			st, err := sqlite.OpenChannel(ctx, chPath)
			if err == nil {
				chStore = st
			}
			return err
		}
	case storePostgres:
		// Fresh databases, dropped when the test ends, after the stores
		// (cleanups run last registered first) are closed.
		coreDSN, chDSN := pgtest.Database(t), pgtest.Database(t)
		s.dumpCore = func(t *testing.T) map[string][]string { return dumpPostgres(t, coreDSN) }
		s.dumpChannel = func(t *testing.T) map[string][]string { return dumpPostgres(t, chDSN) }
		st, err := postgres.OpenLedger(ctx, coreDSN)
		if err != nil {
			t.Fatal(err)
		}
		coreStore = st
		openChannel = func() error {
			st, err := postgres.OpenChannel(ctx, chDSN)
			if err == nil {
				chStore = st
			}
			return err
		}
	default:
		t.Fatalf("unknown store kind %q", opts.store)
	}

	l, err := ledger.Open(ctx, coreStore, ledger.Config{AmountMax: amountMax})
	if err != nil {
		t.Fatal(err)
	}
	coreAPI := bhttp.NewCoreServer(l, token, nil)
	coreSrv := httptest.NewServer(coreAPI)
	t.Cleanup(func() { coreSrv.Close(); l.Close(); coreStore.Close() })
	s.core = &coreFixture{srv: coreSrv, store: coreStore}

	coreURL := coreSrv.URL
	if opts.coreFront != nil {
		// Closed after whatever coreFront registers for cleanup.
		front := httptest.NewUnstartedServer(nil)
		t.Cleanup(front.Close)
		front.Config.Handler = opts.coreFront(t, coreAPI)
		front.Start()
		coreURL = front.URL
	}

	if err := openChannel(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { chStore.Close() })
	cfg := opts.channel
	cfg.AmountMax = amountMax
	ch := channel.New(chStore, bhttp.NewCoreClient(coreURL, token, nil), cfg)
	s.ch, s.chStore, s.coreURL = ch, chStore, coreURL

	if s.auth, err = bhttp.NewHS256Authenticator([]byte(customerSecret), authOptions); err != nil {
		t.Fatal(err)
	}
	s.srv = httptest.NewServer(bhttp.NewChannelServer(ch, bhttp.ChannelServerConfig{
		Auth: s.auth, Cursors: channel.NewCursors([]byte("test cursor secret")),
		TransferLimit: opts.transferLimit, ReadLimit: opts.readLimit,
	}))
	t.Cleanup(s.srv.Close)
	s.replica = func(t *testing.T) *httptest.Server {
		first := chStore
		if err := openChannel(); err != nil {
			t.Fatal(err)
		}
		second := chStore
		chStore = first
		t.Cleanup(func() { second.Close() })
		srv := httptest.NewServer(bhttp.NewChannelServer(channel.New(second, bhttp.NewCoreClient(coreURL, token, nil), cfg),
			bhttp.ChannelServerConfig{Auth: s.auth, Cursors: channel.NewCursors([]byte("test cursor secret"))}))
		t.Cleanup(srv.Close)
		return srv
	}
	return s
}

// hangingTransfers is a core front that forwards everything except transfer
// executions, which it holds until the test ends: the channel never learns
// their outcome.
func hangingTransfers(t *testing.T, core http.Handler) http.Handler {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" && r.URL.Path == "/core/v1/transfers" {
			io.Copy(io.Discard, r.Body) // so the server notices the channel giving up
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		core.ServeHTTP(w, r)
	})
}

// setup creates accounts on core as "id:owner" and deposits to them as
// "id=amount".
func (s *stack) setup(t *testing.T, accounts []string, deposits ...string) {
	t.Helper()
	for _, a := range accounts {
		id, owner, _ := strings.Cut(a, ":")
		if st, m := s.core.call(t, "POST", "/core/v1/accounts", map[string]any{"account_id": id, "owner": owner}); st != 201 {
			t.Fatalf("create account %s = %d %v", a, st, m)
		}
	}
	for i, d := range deposits {
		s.deposit(t, d, fmt.Sprintf("setup-%d", i))
	}
}

func (s *stack) deposit(t *testing.T, d, ref string) {
	t.Helper()
	id, amount, _ := strings.Cut(d, "=")
	body := fmt.Sprintf(`{"external_ref":%q,"account_id":%q,"amount":%s,"sender":"kb-bank"}`, ref, id, amount)
	if st, m := s.core.call(t, "POST", "/core/v1/deposits", body); st != 200 {
		t.Fatalf("deposit %s = %d %v", d, st, m)
	}
}

// do sends a customer's request (customer "" sends no token; hdr may
// override any header) and returns the raw answer.
func (s *stack) do(t *testing.T, customer, method, path string, body any, hdr ...string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, s.srv.URL+path, requestBody(body))
	if err != nil {
		t.Fatal(err)
	}
	if customer != "" {
		tok, err := s.auth.Issue(customer, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	// The first value given for a header replaces it ("" deletes it); more
	// values for the same header are added.
	seen := map[string]bool{}
	for i := 0; i+1 < len(hdr); i += 2 {
		switch k, v := hdr[i], hdr[i+1]; {
		case v == "":
			req.Header.Del(k)
		case seen[k]:
			req.Header.Add(k, v)
		default:
			req.Header.Set(k, v)
		}
		seen[hdr[i]] = true
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, raw, resp.Header
}

// call is do with the answer decoded as JSON.
func (s *stack) call(t *testing.T, customer, method, path string, body any, hdr ...string) (int, map[string]any) {
	t.Helper()
	st, raw, h := s.do(t, customer, method, path, body, hdr...)
	if ct := h.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q, want application/json (%q)", method, path, ct, raw)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: answer is not JSON: %q", method, path, raw)
	}
	return st, m
}

func (s *stack) submit(t *testing.T, customer, key string, body any) (int, map[string]any) {
	t.Helper()
	return s.call(t, customer, "POST", "/v1/transfers", body, "Idempotency-Key", key)
}

// dumpDB reads every row of every table of a SQLite file, so a test can
// show that a request changed nothing at all.
func dumpDB(t *testing.T, path string) map[string][]string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var tables []string
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		tables = append(tables, name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, table := range tables {
		rows, err := db.Query(`SELECT * FROM "` + table + `"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			out[table] = append(out[table], fmt.Sprintf("%v", vals))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		slices.Sort(out[table])
	}
	if len(out) == 0 {
		t.Fatalf("%s has no rows at all; the dump cannot show a change", path)
	}
	return out
}

// dumpPostgres reads every row of every table in the public schema of the
// PostgreSQL database at dsn, as dumpDB does a SQLite file's: tables by
// name, each row as its text form, rows sorted, all in one snapshot.
func dumpPostgres(t *testing.T, dsn string) map[string][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	rows, err := tx.Query(ctx, `SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = 'public' ORDER BY tablename COLLATE "C"`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, table := range tables {
		rows, err := tx.Query(ctx, `SELECT t::text FROM `+pgx.Identifier{"public", table}.Sanitize()+` t ORDER BY t::text COLLATE "C"`)
		if err != nil {
			t.Fatal(err)
		}
		vals, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if len(vals) > 0 {
			out[table] = vals
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s has no rows at all; the dump cannot show a change", dsn)
	}
	return out
}

// state is everything core and the channel hold.
func (s *stack) state(t *testing.T) any {
	return []any{s.dumpCore(t), s.dumpChannel(t)}
}

func transactions(t *testing.T, page map[string]any) []map[string]any {
	t.Helper()
	raw, ok := page["transactions"].([]any)
	if !ok {
		t.Fatalf("page has no transactions: %v", page)
	}
	var out []map[string]any
	for _, e := range raw {
		out = append(out, e.(map[string]any))
	}
	return out
}

func seqs(es []map[string]any) []float64 {
	var out []float64
	for _, e := range es {
		out = append(out, e["seq"].(float64))
	}
	return out
}

func TestChannelTransferEndToEnd(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		s := newStack(t, stackOptions{store: kind})
		s.setup(t, []string{"a1:cust-a", "a3:cust-a", "b1:cust-b"}, "a1=1000", "a3=50")

		tr := map[string]any{"from_account": "a1", "to_account": "b1", "amount": 300, "memo": "rent"}
		st, done := s.submit(t, "cust-a", "k-1", tr)
		if st != 200 || done["state"] != channel.StateCompleted || done["amount"] != 300.0 || done["transfer_id"] == "" {
			t.Fatalf("transfer = %d %v, want 200 completed", st, done)
		}
		id := done["transfer_id"].(string)

		t.Run("same key twice is the same transfer", func(t *testing.T) {
			st, again := s.submit(t, "cust-a", "k-1", tr)
			if st != 200 || !cmp.Equal(again, done) {
				t.Fatalf("replay = %d %v, want 200 %v", st, again, done)
			}
			if st, m := s.core.call(t, "GET", "/core/v1/accounts/a1", nil); st != 200 || m["last_seq"] != 2.0 || m["balance"] != 700.0 {
				t.Fatalf("core account a1 = %d %v, want one deposit and one transfer, balance 700", st, m)
			}
		})
		t.Run("same key other body", func(t *testing.T) {
			other := map[string]any{"from_account": "a1", "to_account": "b1", "amount": 301, "memo": "rent"}
			if st, m := s.submit(t, "cust-a", "k-1", other); st != 422 || errCode(m) != banksync.EIDEMPOTENCY {
				t.Fatalf("reused key = %d %v, want 422 %s", st, m, banksync.EIDEMPOTENCY)
			}
		})
		t.Run("get transfer", func(t *testing.T) {
			if st, m := s.call(t, "cust-a", "GET", "/v1/transfers/"+id, nil); st != 200 || !cmp.Equal(m, done) {
				t.Fatalf("GET transfer = %d %v, want %v", st, m, done)
			}
		})
		t.Run("history newest first", func(t *testing.T) {
			st, page := s.call(t, "cust-a", "GET", "/v1/accounts/a1/transactions", nil)
			es := transactions(t, page)
			if st != 200 || !cmp.Equal(seqs(es), []float64{2, 1}) {
				t.Fatalf("history = %d %v, want seqs 2, 1", st, page)
			}
			want := map[string]any{"kind": "transfer_out", "amount": -300.0, "balance_after": 700.0, "counterparty": "b1", "transfer_id": id, "memo": "rent"}
			for k, v := range want {
				if es[0][k] != v {
					t.Errorf("newest entry %s = %v, want %v", k, es[0][k], v)
				}
			}
			if es[1]["kind"] != "deposit" || es[1]["balance_after"] != 1000.0 {
				t.Errorf("oldest entry = %v, want the 1000 deposit", es[1])
			}
			acct := page["account"].(map[string]any)
			if acct["balance"] != 700.0 || acct["synced_through_seq"] != 2.0 || acct["stale"] != false {
				t.Errorf("page account = %v, want balance 700 synced through 2", acct)
			}
			if _, ok := page["next_cursor"]; ok || len(page["pending_transfers"].([]any)) != 0 {
				t.Errorf("page = %v, want no next cursor and no pending transfers", page)
			}
		})
		t.Run("history pages", func(t *testing.T) {
			st, p1 := s.call(t, "cust-a", "GET", "/v1/accounts/a1/transactions?limit=1", nil)
			cursor, _ := p1["next_cursor"].(string)
			if st != 200 || !cmp.Equal(seqs(transactions(t, p1)), []float64{2}) || cursor == "" {
				t.Fatalf("page 1 = %d %v, want seq 2 and a cursor", st, p1)
			}
			st, p2 := s.call(t, "cust-a", "GET", "/v1/accounts/a1/transactions?limit=1&cursor="+cursor, nil)
			if _, more := p2["next_cursor"]; st != 200 || !cmp.Equal(seqs(transactions(t, p2)), []float64{1}) || more {
				t.Fatalf("page 2 = %d %v, want seq 1 and no cursor", st, p2)
			}
		})
		t.Run("receiver sees the credit", func(t *testing.T) {
			st, page := s.call(t, "cust-b", "GET", "/v1/accounts/b1/transactions", nil)
			es := transactions(t, page)
			if st != 200 || len(es) != 1 || es[0]["kind"] != "transfer_in" || es[0]["balance_after"] != 300.0 {
				t.Fatalf("b1 history = %d %v, want one 300 credit", st, page)
			}
		})
		t.Run("accounts", func(t *testing.T) {
			st, m := s.call(t, "cust-a", "GET", "/v1/accounts", nil)
			got := map[string]float64{}
			for _, a := range m["accounts"].([]any) {
				a := a.(map[string]any)
				got[a["account_id"].(string)] = a["balance"].(float64)
			}
			// a3 had a deposit the channel never applied: listing the
			// accounts syncs it from core first, so its balance is core's.
			if want := map[string]float64{"a1": 700, "a3": 50}; st != 200 || !cmp.Equal(got, want) {
				t.Fatalf("accounts = %d %v, want balances %v", st, m, want)
			}
			if _, leak := m["accounts"].([]any)[0].(map[string]any)["owner"]; leak {
				t.Errorf("account state shows its owner: %v", m)
			}
		})
		t.Run("failed transfer shows its reason", func(t *testing.T) {
			st, m := s.submit(t, "cust-a", "k-2", map[string]any{"from_account": "a3", "to_account": "b1", "amount": 100})
			ft, _ := m["transfer"].(map[string]any)
			if st != 422 || errCode(m) != banksync.EFAILED || ft["state"] != channel.StateFailed || ft["reason"] != banksync.ReasonInsufficientFunds {
				t.Fatalf("overdraft = %d %v, want 422 %s with the failed transfer", st, m, banksync.EFAILED)
			}
			if st, again := s.submit(t, "cust-a", "k-2", map[string]any{"from_account": "a3", "to_account": "b1", "amount": 100}); st != 422 || !cmp.Equal(again, m) {
				t.Fatalf("overdraft replay = %d %v, want %v", st, again, m)
			}
			if st, got := s.call(t, "cust-a", "GET", "/v1/transfers/"+ft["transfer_id"].(string), nil); st != 200 || !cmp.Equal(got, ft) {
				t.Fatalf("GET failed transfer = %d %v, want %v", st, got, ft)
			}
		})
		t.Run("manual sync", func(t *testing.T) {
			s.deposit(t, "a1=5", "kb-late")
			st, m := s.call(t, "cust-a", "POST", "/v1/accounts/a1/sync", nil)
			if st != 200 || m["balance"] != 705.0 || m["synced_through_seq"] != 3.0 || m["account_id"] != "a1" {
				t.Fatalf("sync = %d %v, want balance 705 through seq 3", st, m)
			}
			_, page := s.call(t, "cust-a", "GET", "/v1/accounts/a1/transactions", nil)
			if got := seqs(transactions(t, page)); !cmp.Equal(got, []float64{3, 2, 1}) {
				t.Fatalf("history after sync = %v, want seqs 3, 2, 1", got)
			}
		})
	})
}

func TestChannelTransferInProgress(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		s := newStack(t, stackOptions{
			store:     kind,
			coreFront: hangingTransfers,
			channel:   channel.Config{CoreTimeout: 100 * time.Millisecond, ReadSyncTimeout: 100 * time.Millisecond},
		})
		s.setup(t, []string{"a1:cust-a", "b1:cust-b"}, "a1=1000")

		tr := map[string]any{"from_account": "a1", "to_account": "b1", "amount": 100}
		st, pending := s.submit(t, "cust-a", "k-1", tr)
		if st != 202 || pending["state"] != channel.StatePending {
			t.Fatalf("transfer to a hanging core = %d %v, want 202 pending", st, pending)
		}
		if st, again := s.submit(t, "cust-a", "k-1", tr); st != 202 || !cmp.Equal(again, pending) {
			t.Fatalf("same key while pending = %d %v, want 202 %v", st, again, pending)
		}
		before := s.state(t)
		if st, m := s.submit(t, "cust-a", "k-2", map[string]any{"from_account": "a1", "to_account": "b1", "amount": 5}); st != 409 || errCode(m) != banksync.EINPROGRESS {
			t.Fatalf("second transfer while pending = %d %v, want 409 %s", st, m, banksync.EINPROGRESS)
		}
		if d := cmp.Diff(before, s.state(t)); d != "" {
			t.Fatalf("refused transfer changed state (-before +after):\n%s", d)
		}
		st, page := s.call(t, "cust-a", "GET", "/v1/accounts/a1/transactions", nil)
		ps, _ := page["pending_transfers"].([]any)
		if st != 200 || len(ps) != 1 || ps[0].(map[string]any)["transfer_id"] != pending["transfer_id"] {
			t.Fatalf("history while pending = %d %v, want the pending transfer listed", st, page)
		}
	})
}

// TestChannelBOLA: one customer can never reach another's account or
// transfer, and cannot even tell it exists: the answer is byte for byte the
// one for an account that does not exist.
func TestChannelBOLA(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		s := newStack(t, stackOptions{store: kind})
		s.setup(t, []string{"a1:cust-a", "a2:cust-a", "a9:cust-a", "b1:cust-b"}, "a1=1000", "a1=7", "a9=10")
		_, done := s.submit(t, "cust-a", "k-1", map[string]any{"from_account": "a1", "to_account": "a2", "amount": 10})
		aTransfer, _ := done["transfer_id"].(string)
		_, page := s.call(t, "cust-a", "GET", "/v1/accounts/a1/transactions?limit=1", nil)
		aCursor, _ := page["next_cursor"].(string)
		if aTransfer == "" || aCursor == "" {
			t.Fatalf("setup: transfer %v, page %v", done, page)
		}

		type probe struct {
			name, method, path string
			body               any
		}
		probes := func(acct string) []probe {
			return []probe{
				{"transactions", "GET", "/v1/accounts/" + acct + "/transactions", nil},
				{"transactions with cursor", "GET", "/v1/accounts/" + acct + "/transactions?limit=1&cursor=" + aCursor, nil},
				{"sync", "POST", "/v1/accounts/" + acct + "/sync", nil},
				{"statement", "GET", "/v1/accounts/" + acct + "/statement?from=2020-01-01&to=2099-12-31", nil},
				{"stream ticket", "POST", "/v1/accounts/" + acct + "/stream-ticket", nil},
				{"stream", "GET", "/v1/accounts/" + acct + "/stream", nil},
				{"transfer from it", "POST", "/v1/transfers", map[string]any{"from_account": acct, "to_account": "b1", "amount": 1}},
			}
		}
		check := func(t *testing.T, got, missing probe) {
			t.Helper()
			st, raw, _ := s.do(t, "cust-b", got.method, got.path, got.body, "Idempotency-Key", "b-key")
			wantSt, wantRaw, _ := s.do(t, "cust-b", missing.method, missing.path, missing.body, "Idempotency-Key", "b-key")
			if st != 404 || wantSt != 404 || !bytes.Equal(raw, wantRaw) {
				t.Fatalf("%s %s = %d %s\nmissing one = %d %s\nwant both 404 and identical", got.method, got.path, st, raw, wantSt, wantRaw)
			}
		}

		// a9 is unknown to the channel until now: it learns the owner from core
		// and still answers not found.
		check(t, probes("a9")[0], probes("nope")[0])

		s.call(t, "cust-b", "GET", "/v1/accounts", nil) // the channel learns b1 before the snapshot
		before := s.state(t)
		for _, acct := range []string{"a1", "a9"} {
			for i, p := range probes(acct) {
				t.Run(acct+" "+p.name, func(t *testing.T) { check(t, p, probes("nope")[i]) })
			}
		}
		t.Run("transfer by id", func(t *testing.T) {
			check(t, probe{"", "GET", "/v1/transfers/" + aTransfer, nil}, probe{"", "GET", "/v1/transfers/01900000-0000-7000-8000-000000000000", nil})
		})
		t.Run("accounts list", func(t *testing.T) {
			st, m := s.call(t, "cust-b", "GET", "/v1/accounts", nil)
			if as := m["accounts"].([]any); st != 200 || len(as) != 1 || as[0].(map[string]any)["account_id"] != "b1" {
				t.Fatalf("cust-b accounts = %d %v, want b1 only", st, m)
			}
		})
		if d := cmp.Diff(before, s.state(t)); d != "" {
			t.Fatalf("another customer's requests changed state (-before +after):\n%s", d)
		}
		// The owner still gets through.
		if st, _ := s.call(t, "cust-a", "GET", "/v1/transfers/"+aTransfer, nil); st != 200 {
			t.Fatalf("owner GET transfer = %d, want 200", st)
		}
	})
}

func TestChannelRefusesBadInput(t *testing.T) {
	forEachStore(t, func(t *testing.T, kind storeKind) {
		s := newStack(t, stackOptions{store: kind})
		s.setup(t, []string{"a1:cust-a", "a3:cust-a", "b1:cust-b"}, "a1=1000", "a1=5", "a3=50", "a3=5", "b1=10")
		for _, a := range []string{"a1", "a3"} {
			if st, m := s.call(t, "cust-a", "POST", "/v1/accounts/"+a+"/sync", nil); st != 200 {
				t.Fatalf("sync %s = %d %v", a, st, m)
			}
		}
		_, page := s.call(t, "cust-a", "GET", "/v1/accounts/a1/transactions?limit=1", nil)
		cursor, _ := page["next_cursor"].(string)
		if cursor == "" {
			t.Fatalf("setup: page %v has no cursor", page)
		}
		tampered := []byte(cursor)
		tampered[3] = 'A' // changes the seq the cursor carries
		if cursor[3] == 'A' {
			tampered[3] = 'B'
		}
		st, theirs := s.submit(t, "cust-b", "theirs", map[string]any{"from_account": "b1", "to_account": "a1", "amount": 1})
		if st != 200 {
			t.Fatalf("setup: cust-b's transfer = %d %v", st, theirs)
		}
		s.call(t, "cust-a", "GET", "/v1/accounts", nil) // the channel knows every account before the snapshot
		before := s.state(t)

		// Tokens an attacker might try: each is answered 401, like none.
		bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }
		now := time.Now()
		claims := func(exp time.Time) jwt.MapClaims {
			return jwt.MapClaims{"sub": "cust-a", "iss": authOptions.Issuer, "aud": authOptions.Audience, "iat": now.Unix(), "exp": exp.Unix()}
		}
		algNone := mint(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(now.Add(time.Minute)))
		expired := mint(t, jwt.SigningMethodHS256, []byte(customerSecret), claims(now.Add(-time.Hour)))
		forged := mint(t, jwt.SigningMethodHS256, []byte("another secret, long enough to sign with"), claims(now.Add(time.Minute)))

		tr := func(fields string) string { return `{"from_account":"a1","to_account":"b1"` + fields + `}` }
		key := []string{"Idempotency-Key", "bad-input"}
		hist := "/v1/accounts/a1/transactions"
		for _, tc := range []struct {
			name, method, path, body string
			status                   int
			code                     string
			hdr                      []string
		}{
			{"missing key", "POST", "/v1/transfers", tr(`,"amount":1`), 400, banksync.EINVALID, nil},
			{"empty key", "POST", "/v1/transfers", tr(`,"amount":1`), 400, banksync.EINVALID, []string{"Idempotency-Key", " "}},
			{"key too long", "POST", "/v1/transfers", tr(`,"amount":1`), 400, banksync.EINVALID, []string{"Idempotency-Key", strings.Repeat("k", 129)}},
			{"malformed json", "POST", "/v1/transfers", `{"from_account":`, 400, banksync.EINVALID, key},
			{"not an object", "POST", "/v1/transfers", `[1,2]`, 400, banksync.EINVALID, key},
			{"empty body", "POST", "/v1/transfers", ``, 400, banksync.EINVALID, key},
			{"trailing data", "POST", "/v1/transfers", tr(`,"amount":1`) + `{}`, 400, banksync.EINVALID, key},
			{"unknown field", "POST", "/v1/transfers", tr(`,"amount":1,"fee":0`), 400, banksync.EINVALID, key},
			{"duplicate field", "POST", "/v1/transfers", tr(`,"amount":1,"amount":900`), 400, banksync.EINVALID, key},
			{"duplicate account", "POST", "/v1/transfers", `{"from_account":"b1","from_account":"a1","to_account":"b1","amount":1}`, 400, banksync.EINVALID, key},
			{"missing amount", "POST", "/v1/transfers", tr(``), 400, banksync.EINVALID, key},
			{"missing to_account", "POST", "/v1/transfers", `{"from_account":"a1","amount":1}`, 400, banksync.EINVALID, key},
			{"zero amount", "POST", "/v1/transfers", tr(`,"amount":0`), 422, banksync.EINVALIDAMOUNT, key},
			{"negative amount", "POST", "/v1/transfers", tr(`,"amount":-1`), 422, banksync.EINVALIDAMOUNT, key},
			{"negative zero", "POST", "/v1/transfers", tr(`,"amount":-0`), 422, banksync.EINVALIDAMOUNT, key},
			{"fraction", "POST", "/v1/transfers", tr(`,"amount":1.5`), 422, banksync.EINVALIDAMOUNT, key},
			{"exponent", "POST", "/v1/transfers", tr(`,"amount":1e3`), 422, banksync.EINVALIDAMOUNT, key},
			{"string amount", "POST", "/v1/transfers", tr(`,"amount":"100"`), 422, banksync.EINVALIDAMOUNT, key},
			{"beyond int64", "POST", "/v1/transfers", tr(`,"amount":9223372036854775808`), 422, banksync.EINVALIDAMOUNT, key},
			{"over the limit", "POST", "/v1/transfers", tr(fmt.Sprintf(`,"amount":%d`, amountMax+1)), 422, banksync.EINVALIDAMOUNT, key},
			{"same account", "POST", "/v1/transfers", `{"from_account":"a1","to_account":"a1","amount":1}`, 422, banksync.ESAMEACCOUNT, key},
			{"bad account id", "POST", "/v1/transfers", `{"from_account":"a1","to_account":"../b1","amount":1}`, 400, banksync.EINVALID, key},
			{"memo too long", "POST", "/v1/transfers", tr(`,"amount":1,"memo":"` + strings.Repeat("m", 141) + `"`), 400, banksync.EINVALID, key},
			{"memo control char", "POST", "/v1/transfers", tr(`,"amount":1,"memo":"a\u0007b"`), 400, banksync.EINVALID, key},
			{"memo 141 korean characters", "POST", "/v1/transfers", tr(`,"amount":1,"memo":"` + strings.Repeat("가", 141) + `"`), 400, banksync.EINVALID, key},
			{"memo zero-width space", "POST", "/v1/transfers", tr(`,"amount":1,"memo":"점\u200b심"`), 400, banksync.EINVALID, key},
			{"memo bidi override", "POST", "/v1/transfers", tr(`,"amount":1,"memo":"rent \u202etxt.exe"`), 400, banksync.EINVALID, key},
			{"memo BOM", "POST", "/v1/transfers", tr(`,"amount":1,"memo":"\ufeffrent"`), 400, banksync.EINVALID, key},
			{"memo tab", "POST", "/v1/transfers", tr(`,"amount":1,"memo":"a\tb"`), 400, banksync.EINVALID, key},
			{"memo private use", "POST", "/v1/transfers", tr(`,"amount":1,"memo":"\uf8ff"`), 400, banksync.EINVALID, key},
			{"memo broken UTF-8", "POST", "/v1/transfers", tr(",\"amount\":1,\"memo\":\"a\xffb\""), 400, banksync.EINVALID, key},
			{"from a missing account", "POST", "/v1/transfers", `{"from_account":"zz","to_account":"b1","amount":1}`, 404, banksync.ENOTFOUND, key},
			{"wrong content type", "POST", "/v1/transfers", tr(`,"amount":1`), 415, "unsupported_media_type", append([]string{"Content-Type", "text/plain"}, key...)},
			{"huge body", "POST", "/v1/transfers", `{"memo":"` + strings.Repeat("x", 70<<10) + `"}`, 413, banksync.ETOOLARGE, key},
			{"bad cursor", "GET", hist + "?cursor=not-a-cursor", ``, 400, banksync.EINVALID, nil},
			{"tampered cursor", "GET", hist + "?cursor=" + string(tampered), ``, 400, banksync.EINVALID, nil},
			{"cursor of another account", "GET", "/v1/accounts/a3/transactions?cursor=" + cursor, ``, 400, banksync.EINVALID, nil},
			{"limit 0", "GET", hist + "?limit=0", ``, 400, banksync.EINVALID, nil},
			{"limit 101", "GET", hist + "?limit=101", ``, 400, banksync.EINVALID, nil},
			{"limit abc", "GET", hist + "?limit=abc", ``, 400, banksync.EINVALID, nil},
			{"limit -1", "GET", hist + "?limit=-1", ``, 400, banksync.EINVALID, nil},
			{"limit twice", "GET", hist + "?limit=1&limit=100000", ``, 400, banksync.EINVALID, nil},
			{"kind unknown", "GET", hist + "?kind=sideways", ``, 400, banksync.EINVALID, nil},
			{"kind twice", "GET", hist + "?kind=in&kind=out", ``, 400, banksync.EINVALID, nil},
			{"q twice", "GET", hist + "?q=a&q=b", ``, 400, banksync.EINVALID, nil},
			{"q too long", "GET", hist + "?q=" + strings.Repeat("%EA%B0%80", channel.HistoryTextMax+1), ``, 400, banksync.EINVALID, nil},
			{"q control char", "GET", hist + "?q=a%07b", ``, 400, banksync.EINVALID, nil},
			{"q not UTF-8", "GET", hist + "?q=%FF", ``, 400, banksync.EINVALID, nil},
			{"history of a missing account", "GET", "/v1/accounts/zz/transactions", ``, 404, banksync.ENOTFOUND, nil},
			{"statement without from", "GET", "/v1/accounts/a1/statement?to=2026-01-31", ``, 400, banksync.EINVALID, nil},
			{"statement without to", "GET", "/v1/accounts/a1/statement?from=2026-01-01", ``, 400, banksync.EINVALID, nil},
			{"statement from not a date", "GET", "/v1/accounts/a1/statement?from=2026-13-01&to=2026-12-31", ``, 400, banksync.EINVALID, nil},
			{"statement to a timestamp", "GET", "/v1/accounts/a1/statement?from=2026-01-01&to=2026-01-31T00:00:00Z", ``, 400, banksync.EINVALID, nil},
			{"statement to before from", "GET", "/v1/accounts/a1/statement?from=2026-02-01&to=2026-01-31", ``, 400, banksync.EINVALID, nil},
			{"statement from twice", "GET", "/v1/accounts/a1/statement?from=2026-01-01&from=2020-01-01&to=2026-01-31", ``, 400, banksync.EINVALID, nil},
			{"statement unknown tz", "GET", "/v1/accounts/a1/statement?from=2026-01-01&to=2026-01-31&tz=Mars/Olympus", ``, 400, banksync.EINVALID, nil},
			{"statement tz Local", "GET", "/v1/accounts/a1/statement?from=2026-01-01&to=2026-01-31&tz=Local", ``, 400, banksync.EINVALID, nil},
			{"statement tz a path", "GET", "/v1/accounts/a1/statement?from=2026-01-01&to=2026-01-31&tz=../../etc/passwd", ``, 400, banksync.EINVALID, nil},
			{"statement of a missing account", "GET", "/v1/accounts/zz/statement?from=2026-01-01&to=2026-01-31", ``, 404, banksync.ENOTFOUND, nil},
			{"another's statement", "GET", "/v1/accounts/b1/statement?from=2026-01-01&to=2026-01-31", ``, 404, banksync.ENOTFOUND, nil},
			{"sync of a missing account", "POST", "/v1/accounts/zz/sync", ``, 404, banksync.ENOTFOUND, nil},
			{"missing transfer", "GET", "/v1/transfers/nope", ``, 404, banksync.ENOTFOUND, nil},
			{"unknown route", "GET", "/v1/nothing", ``, 404, banksync.ENOTFOUND, nil},
			{"alg none token", "POST", "/v1/transfers", tr(`,"amount":1`), 401, banksync.EUNAUTHORIZED, append(bearer(algNone), key...)},
			{"expired token", "POST", "/v1/transfers", tr(`,"amount":1`), 401, banksync.EUNAUTHORIZED, append(bearer(expired), key...)},
			{"forged token", "POST", "/v1/transfers", tr(`,"amount":1`), 401, banksync.EUNAUTHORIZED, append(bearer(forged), key...)},
			{"garbage token", "GET", "/v1/accounts", ``, 401, banksync.EUNAUTHORIZED, bearer("eyJ.eyJ.sig")},
			{"no token", "GET", "/v1/accounts", ``, 401, banksync.EUNAUTHORIZED, []string{"Authorization", ""}},
			{"from another's account", "POST", "/v1/transfers", `{"from_account":"b1","to_account":"a1","amount":1}`, 404, banksync.ENOTFOUND, key},
			{"another's history", "GET", "/v1/accounts/b1/transactions", ``, 404, banksync.ENOTFOUND, nil},
			{"another's sync", "POST", "/v1/accounts/b1/sync", ``, 404, banksync.ENOTFOUND, nil},
			{"another's transfer", "GET", "/v1/transfers/" + theirs["transfer_id"].(string), ``, 404, banksync.ENOTFOUND, nil},
			{"wrong method", "DELETE", "/v1/accounts", ``, 405, "method_not_allowed", nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				st, m := s.call(t, "cust-a", tc.method, tc.path, tc.body, tc.hdr...)
				if st != tc.status || errCode(m) != tc.code {
					t.Fatalf("got %d %q (%v), want %d %q", st, errCode(m), m, tc.status, tc.code)
				}
			})
		}
		if d := cmp.Diff(before, s.state(t)); d != "" {
			t.Fatalf("bad input changed state (-before +after):\n%s", d)
		}
	})
}
