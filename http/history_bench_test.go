package http_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"banksync"
	"banksync/channel"
	bhttp "banksync/http"
	"banksync/ledger"
	"banksync/sqlite"
	"banksync/storetest"
)

// The history fixture is storetest's (OpenHistoryFixture): one account deep
// enough that paging cost would show, and neighbours on both sides of it in
// the primary key. The big account's owner and the API's credentials:
const (
	historyBigOwner     = "c1"
	historyWalkPageSize = channel.HistoryPageMax // the setup walk's pages: one real cursor per 100 seqs

	historyServiceToken  = "history-bench-service-token"
	historyCustomerToken = "history-bench-customer-secret-0123456789abcdef"
)

// BenchmarkHistory serves GET /v1/accounts/big/transactions?limit=20 from
// the channel's customer API (token check, authorisation, pending lookup,
// keyset read, JSON) over a SQLite store holding 1,000,000 history rows of
// the account. Deep asks for the page behind a cursor drawn uniformly from
// every depth; First asks for the newest page, the one an app opens on.
// Real cursors come from walking the whole history once through the
// handler, 100 entries a page, which also checks that the walk yields every
// seq exactly once. The account is synced and has nothing pending, so no
// read calls core.
func BenchmarkHistory(b *testing.B) {
	dir := b.TempDir()
	start := time.Now()
	store := storetest.OpenHistoryFixture(b, func(ctx context.Context) (channel.Store, error) {
		return sqlite.OpenChannel(ctx, filepath.Join(dir, "channel.db"))
	})
	built := time.Since(start)

	coreURL := mustStartHistoryCore(b, filepath.Join(dir, "core.db"))
	auth, err := bhttp.NewHS256Authenticator([]byte(historyCustomerToken), bhttp.AuthOptions{})
	if err != nil {
		b.Fatal(err)
	}
	bearer, err := auth.Issue(historyBigOwner, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	ch := channel.New(store, bhttp.NewCoreClient(coreURL, historyServiceToken, nil), channel.Config{})
	srv := bhttp.NewChannelServer(ch, bhttp.ChannelServerConfig{
		Auth: auth, Cursors: channel.NewCursors([]byte("history bench cursor secret")),
	})
	getFiltered := func(limit int, cursor, filter string) *httptest.ResponseRecorder {
		target := fmt.Sprintf("/v1/accounts/%s/transactions?limit=%d%s", storetest.HistoryBigAccount, limit, filter)
		if cursor != "" {
			target += "&cursor=" + url.QueryEscape(cursor)
		}
		r := httptest.NewRequest(http.MethodGet, target, nil)
		r.Header.Set("Authorization", "Bearer "+bearer)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, r)
		return rec
	}
	get := func(limit int, cursor string) *httptest.ResponseRecorder { return getFiltered(limit, cursor, "") }

	walkStart := time.Now()
	cursors := mustWalkHistory(b, get)
	b.Logf("fixture: %s applied in %v; walk of %d pages of %d for cursors took %v",
		storetest.HistoryFixture(), built.Round(time.Millisecond),
		len(cursors)+1, historyWalkPageSize, time.Since(walkStart).Round(time.Millisecond))

	b.Run("Deep", func(b *testing.B) {
		rng := rand.New(rand.NewPCG(1, 2))
		picks := make([]string, b.N)
		for i := range picks {
			picks[i] = cursors[rng.IntN(len(cursors))]
		}
		benchmarkHistoryRequests(b, func(i int) *httptest.ResponseRecorder { return get(storetest.HistoryPageSize, picks[i]) })
	})
	b.Run("First", func(b *testing.B) {
		benchmarkHistoryRequests(b, func(int) *httptest.ResponseRecorder { return get(storetest.HistoryPageSize, "") })
	})
	// Filtered pages at random depths: money in (every other entry) fills
	// a page from about 40 entries; a search that matches nothing examines
	// the most a filtered page may, channel.HistoryScanMaxDefault entries.
	for _, f := range []struct{ name, query string }{
		{"DeepMoneyIn", "&kind=in"},
		{"DeepSearchSalary", "&q=SALARY"},
		{"DeepSearchNothing", "&q=nobody"},
	} {
		b.Run(f.name, func(b *testing.B) {
			rng := rand.New(rand.NewPCG(3, 4))
			picks := make([]string, b.N)
			for i := range picks {
				picks[i] = cursors[rng.IntN(len(cursors))]
			}
			benchmarkHistoryRequests(b, func(i int) *httptest.ResponseRecorder {
				return getFiltered(storetest.HistoryPageSize, picks[i], f.query)
			})
		})
	}
}

func benchmarkHistoryRequests(b *testing.B, get func(i int) *httptest.ResponseRecorder) {
	took := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		rec := get(i)
		took[i] = time.Since(t0)
		if rec.Code != http.StatusOK {
			b.Fatalf("GET history = %d %s, want 200", rec.Code, rec.Body)
		}
	}
	b.StopTimer()
	storetest.ReportPageLatency(b, took)
}

// mustWalkHistory pages through the whole history from the newest entry,
// following next_cursor, and returns every cursor it was given. It fails
// unless the pages hold seqs storetest.HistoryBigEntries down to 1, each once.
func mustWalkHistory(b *testing.B, get func(limit int, cursor string) *httptest.ResponseRecorder) []string {
	var cursors []string
	next := storetest.HistoryBigEntries
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > storetest.HistoryBigEntries/historyWalkPageSize {
			b.Fatalf("walk: more than %d pages", pages)
		}
		rec := get(historyWalkPageSize, cursor)
		if rec.Code != http.StatusOK {
			b.Fatalf("walk page %d = %d %s, want 200", pages, rec.Code, rec.Body)
		}
		var page struct {
			Transactions []banksync.Entry `json:"transactions"`
			NextCursor   string           `json:"next_cursor"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
			b.Fatalf("walk page %d: %v", pages, err)
		}
		for _, e := range page.Transactions {
			if e.Seq != int64(next) {
				b.Fatalf("walk page %d: seq %d, want %d", pages, e.Seq, next)
			}
			next--
		}
		if page.NextCursor == "" {
			break
		}
		cursors = append(cursors, page.NextCursor)
		cursor = page.NextCursor
	}
	if next != 0 {
		b.Fatalf("walk ended above seq %d, want every seq down to 1", next+1)
	}
	return cursors
}

// mustStartHistoryCore serves a core whose only account is the big one,
// owned by historyBigOwner, and returns its URL. Core's ledger holds none of
// the entries: nothing in this benchmark reads them.
func mustStartHistoryCore(b *testing.B, path string) string {
	ctx := context.Background()
	store, err := sqlite.OpenLedger(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	l, err := ledger.Open(ctx, store, ledger.Config{})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(bhttp.NewCoreServer(l, historyServiceToken, nil))
	b.Cleanup(func() { srv.Close(); l.Close(); store.Close() })
	body := fmt.Sprintf(`{"account_id":%q,"owner":%q}`, storetest.HistoryBigAccount, historyBigOwner)
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/core/v1/accounts", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+historyServiceToken)
	resp, err := srv.Client().Do(req)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b.Fatalf("create core account %s = %d, want 201", storetest.HistoryBigAccount, resp.StatusCode)
	}
	return srv.URL
}
