package http_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"banksync"
	"banksync/channel"
	bhttp "banksync/http"
	"banksync/internal/testkit"
	"banksync/kafka"
	"banksync/ledger"
	"banksync/sqlite"
)

// apiDoc is an OpenAPI document as a server serves it, and its router.
type apiDoc struct {
	doc    *openapi3.T
	router routers.Router
}

// loadAPIDoc reads the document h serves, checks that it is a valid OpenAPI
// 3.0 document and routes by it.
func loadAPIDoc(t *testing.T, h http.Handler) *apiDoc {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/openapi.yaml", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /openapi.yaml = %d %q", rec.Code, rec.Body)
	}
	doc, err := openapi3.NewLoader().LoadFromData(rec.Body.Bytes())
	if err != nil {
		t.Fatalf("load OpenAPI document: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("OpenAPI document is not valid: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("route by the OpenAPI document: %v", err)
	}
	return &apiDoc{doc: doc, router: router}
}

// apiValidation makes the document the whole contract: a status it does not
// list for a route fails, and so does a request body where it names none.
// Checking tokens is the servers' job; the document asks for a bearer token
// of the scheme it names, and that is all bearerPresent checks.
var apiValidation = &openapi3filter.Options{
	AuthenticationFunc:                bearerPresent,
	IncludeResponseStatus:             true,
	RejectWhenRequestBodyNotSpecified: true,
	SkipSettingDefaults:               true,
}

func bearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	if s := in.SecurityScheme; s.Type != "http" || !strings.EqualFold(s.Scheme, "bearer") {
		return fmt.Errorf("security scheme %s is not HTTP bearer", in.SecuritySchemeName)
	}
	h := in.RequestValidationInput.Request.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return fmt.Errorf("no bearer token for %s", in.SecuritySchemeName)
	}
	return nil
}

// apiExchange is one request a server answered, checked against its
// document.
type apiExchange struct {
	req      *http.Request // as the server got it; the body is in reqBody
	reqBody  []byte
	status   int
	header   http.Header
	respBody []byte

	op      string // the document's operation, "GET /v1/transfers/{id}"; "" if it has none
	route   string // the server's own route pattern, in the same form; "/" if it has none
	reqErr  error  // why the document refuses the request; nil if it accepts it
	respErr error  // why the document refuses the answer
}

// check validates x's request and answer against d.
func (d *apiDoc) check(x *apiExchange) {
	ctx := context.Background()
	req := x.req.Clone(ctx)
	req.Body = io.NopCloser(bytes.NewReader(x.reqBody))
	route, params, err := d.router.FindRoute(req)
	if err != nil {
		x.op, x.reqErr, x.respErr = "", err, nil
		return
	}
	x.op = route.Method + " " + route.Path
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: apiValidation}
	x.reqErr = openapi3filter.ValidateRequest(ctx, in)
	x.respErr = openapi3filter.ValidateResponse(ctx, &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: x.status, Header: x.header,
		Body: io.NopCloser(bytes.NewReader(x.respBody)), Options: apiValidation,
	})
}

// routeMismatch says how the server's route for x differs from the
// document's operation: a route only one of them has, or two templates.
func (x *apiExchange) routeMismatch() error {
	switch {
	case x.route == "":
		return nil // the server does not name its routes
	case x.route == "/" && x.op != "":
		return fmt.Errorf("the document has %s, the server no such route", x.op)
	case x.route != "/" && x.route != x.op:
		return fmt.Errorf("the server routes to %s, the document to %q", x.route, x.op)
	}
	return nil
}

// apiRecorder checks every exchange of the handlers it wraps against a
// document and keeps them in order.
type apiRecorder struct {
	doc *apiDoc

	mu    sync.Mutex
	log   []*apiExchange
	taken int // exchanges handed out by take
}

// wrap records next's exchanges. A server that names its routes (the API
// servers do, for metrics) has them compared with the document's.
func (c *apiRecorder) wrap(next http.Handler) http.Handler {
	routes, _ := next.(interface{ Route(*http.Request) string })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "read request body: "+err.Error(), http.StatusBadRequest)
			return // unrecorded: the call waiting for it fails
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		tw := &teeWriter{ResponseWriter: w}
		next.ServeHTTP(tw, r)
		x := &apiExchange{req: r.Clone(context.Background()), reqBody: body, status: tw.status,
			header: w.Header().Clone(), respBody: tw.body.Bytes()}
		x.req.Body = nil
		if routes != nil {
			x.route = routes.Route(r)
		}
		if x.status == 0 {
			x.status = http.StatusOK
		}
		c.doc.check(x)
		c.mu.Lock()
		c.log = append(c.log, x)
		c.mu.Unlock()
	})
}

// teeWriter keeps a copy of the answer it passes on.
type teeWriter struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (w *teeWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *teeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *teeWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.body.Write(b)
	return w.ResponseWriter.Write(b)
}

// take returns the next exchange, waiting a little for the handler to
// finish recording it.
func (c *apiRecorder) take(t *testing.T) *apiExchange {
	t.Helper()
	var x *apiExchange
	testkit.Eventually(t, 5*time.Second, "the next exchange recorded", func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.taken == len(c.log) {
			return fmt.Errorf("none after %d", c.taken)
		}
		x = c.log[c.taken]
		c.taken++
		return nil
	})
	return x
}

func (c *apiRecorder) all() []*apiExchange {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.log)
}

// apiCall is one request of a scenario and the answer it must get.
type apiCall struct {
	srv          *httptest.Server
	auth         string // the Authorization header; none if ""
	method, path string
	body         string   // sent as application/json unless hdr says otherwise
	hdr          []string // more headers, name and value pairs; a name given twice is sent twice
	status       int
	code         string   // the error code; "" for a success
	fields       []string // top-level fields of the answer and their values, pairs
	docRefuses   bool     // the document refuses the request, as the server does
}

// refused marks a request the document refuses too.
func (c apiCall) refused() apiCall { c.docRefuses = true; return c }

// as sends the call with another Authorization header ("" for none).
func (c apiCall) as(auth string) apiCall { c.auth = auth; return c }

// with adds headers.
func (c apiCall) with(hdr ...string) apiCall { c.hdr = append(slices.Clone(c.hdr), hdr...); return c }

// want checks top-level string fields of the answer.
func (c apiCall) want(fields ...string) apiCall {
	c.fields = append(slices.Clone(c.fields), fields...)
	return c
}

func (c apiCall) String() string {
	body := c.body
	if len(body) > 120 {
		body = body[:120] + "…"
	}
	return strings.TrimSpace(c.method + " " + c.path + " " + body)
}

// run sends call, checks the status and error code, that the document
// accepts the answer, and that it accepts the request exactly when the
// call says it should. It returns the answer.
func (c *apiRecorder) run(t *testing.T, call apiCall) map[string]any {
	t.Helper()
	req, err := http.NewRequest(call.method, call.srv.URL+call.path, strings.NewReader(call.body))
	if err != nil {
		t.Fatal(err)
	}
	if call.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if call.auth != "" {
		req.Header.Set("Authorization", call.auth)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(call.hdr); i += 2 {
		if k := call.hdr[i]; seen[k] {
			req.Header.Add(k, call.hdr[i+1])
		} else {
			req.Header.Set(k, call.hdr[i+1])
			seen[k] = true
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	x := c.take(t)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: answer is not a JSON object: %q", call, raw)
	}
	if resp.StatusCode != call.status || errCode(m) != call.code {
		t.Fatalf("%s = %d %q, want %d %q\n%s", call, resp.StatusCode, errCode(m), call.status, call.code, raw)
	}
	for i := 0; i+1 < len(call.fields); i += 2 {
		if got := m[call.fields[i]]; got != call.fields[i+1] {
			t.Fatalf("%s: %s = %v, want %s\n%s", call, call.fields[i], got, call.fields[i+1], raw)
		}
	}
	if x.respErr != nil {
		t.Errorf("%s: the answer %d does not conform to the document: %v", call, x.status, x.respErr)
	}
	switch err := x.routeMismatch(); {
	case x.route == "":
		t.Errorf("%s: the server does not name its routes, so they cannot be compared with the document's", call)
	case err != nil:
		t.Errorf("%s: %v", call, err)
	}
	switch {
	case x.reqErr != nil && !call.docRefuses:
		t.Errorf("%s: the document refuses a request the server answered %d: %v", call, x.status, x.reqErr)
	case x.reqErr == nil && call.docRefuses:
		t.Errorf("%s: the document accepts a request the server refuses with %d", call, x.status)
	}
	return m
}

// coverage lists the statuses each operation of doc answered in xs, and
// the operations no exchange reached.
func coverage(doc *apiDoc, xs []*apiExchange) (reached map[string][]int, missed []string) {
	reached = map[string][]int{}
	for _, x := range xs {
		if x.op != "" && !slices.Contains(reached[x.op], x.status) {
			reached[x.op] = append(reached[x.op], x.status)
		}
	}
	for path, item := range doc.doc.Paths.Map() {
		for method := range item.Operations() {
			if op := method + " " + path; reached[op] == nil {
				missed = append(missed, op)
			}
		}
	}
	slices.Sort(missed)
	return reached, missed
}

// reportCoverage fails the test if an operation of the document was never
// called, and logs what was: the statuses answered, and those the
// document lists that no exchange reached.
func reportCoverage(t *testing.T, doc *apiDoc, xs []*apiExchange) {
	t.Helper()
	reached, missed := coverage(doc, xs)
	if len(missed) > 0 {
		t.Errorf("operations of the document never called: %q", missed)
	}
	ops := make([]string, 0, len(reached))
	for op := range reached {
		ops = append(ops, op)
	}
	slices.Sort(ops)
	for _, op := range ops {
		method, path, _ := strings.Cut(op, " ")
		var undriven []string
		for status := range doc.doc.Paths.Value(path).GetOperation(method).Responses.Map() {
			if !slices.ContainsFunc(reached[op], func(s int) bool { return fmt.Sprint(s) == status }) {
				undriven = append(undriven, status)
			}
		}
		slices.Sort(reached[op])
		slices.Sort(undriven)
		t.Logf("%-42s answered %v; documented, not driven: %v", op, reached[op], undriven)
	}
}

func TestOpenAPIDocumentsServed(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    http.Handler
		file string
	}{
		{"core", bhttp.CoreOpenAPI(), "openapi/core.yaml"},
		{"channel", bhttp.ChannelOpenAPI(), "openapi/channel.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			serve := func(method string, hdr ...string) *httptest.ResponseRecorder {
				req := httptest.NewRequest(method, "/openapi.yaml", nil)
				for i := 0; i+1 < len(hdr); i += 2 {
					req.Header.Set(hdr[i], hdr[i+1])
				}
				rec := httptest.NewRecorder()
				tc.h.ServeHTTP(rec, req)
				return rec
			}
			get := serve("GET")
			etag := get.Header().Get("ETag")
			if get.Code != 200 || get.Header().Get("Content-Type") != "application/yaml" || !bytes.Equal(get.Body.Bytes(), want) || etag == "" {
				t.Fatalf("GET = %d, Content-Type %q, ETag %q, %d bytes; want 200 application/yaml with an ETag and %s (%d bytes)",
					get.Code, get.Header().Get("Content-Type"), etag, get.Body.Len(), tc.file, len(want))
			}
			if head := serve("HEAD"); head.Code != 200 || head.Header().Get("Content-Type") != "application/yaml" || head.Body.Len() != 0 {
				t.Errorf("HEAD = %d, Content-Type %q, %d bytes; want 200 application/yaml and no body", head.Code, head.Header().Get("Content-Type"), head.Body.Len())
			}
			if again := serve("GET", "If-None-Match", etag); again.Code != http.StatusNotModified {
				t.Errorf("GET with If-None-Match: %s = %d, want 304", etag, again.Code)
			}
			for _, method := range []string{"POST", "PUT", "DELETE"} {
				rec := serve(method)
				var m map[string]any
				json.Unmarshal(rec.Body.Bytes(), &m)
				if rec.Code != 405 || errCode(m) != "method_not_allowed" || rec.Header().Get("Allow") != "GET, HEAD" {
					t.Errorf("%s = %d %q Allow %q, want 405 method_not_allowed with Allow: GET, HEAD", method, rec.Code, rec.Body, rec.Header().Get("Allow"))
				}
			}
		})
	}
}

// TestOpenAPIRouterRefusesUnknownRoutes shows that the router the
// conformance tests use does not match what the documents do not list, so
// a route missing from a document fails them.
func TestOpenAPIRouterRefusesUnknownRoutes(t *testing.T) {
	core, ch := loadAPIDoc(t, bhttp.CoreOpenAPI()), loadAPIDoc(t, bhttp.ChannelOpenAPI())
	for _, tc := range []struct {
		doc          *apiDoc
		method, path string
		want         error
	}{
		{ch, "GET", "/v1/nothing", routers.ErrPathNotFound},
		{ch, "DELETE", "/v1/accounts", routers.ErrMethodNotAllowed},
		{ch, "GET", "/admin/v1/nothing", routers.ErrPathNotFound},
		{ch, "GET", "/core/v1/outbox", routers.ErrPathNotFound},
		{core, "GET", "/core/v1/nothing", routers.ErrPathNotFound},
		{core, "POST", "/core/v1/outbox", routers.ErrMethodNotAllowed},
		{core, "GET", "/v1/accounts", routers.ErrPathNotFound},
	} {
		if _, _, err := tc.doc.router.FindRoute(httptest.NewRequest(tc.method, tc.path, nil)); !errors.Is(err, tc.want) {
			t.Errorf("FindRoute(%s %s) = %v, want %v", tc.method, tc.path, err, tc.want)
		}
	}
}

// TestOpenAPICore drives every route of the core API through the statuses
// it can reach cheaply, and checks each request and answer against
// openapi/core.yaml.
func TestOpenAPICore(t *testing.T) {
	doc := loadAPIDoc(t, bhttp.CoreOpenAPI())
	rec := &apiRecorder{doc: doc}
	ctx := context.Background()
	store, err := sqlite.OpenLedger(ctx, filepath.Join(t.TempDir(), "core.db"))
	if err != nil {
		t.Fatal(err)
	}
	// No limit on amounts but int64's, so that a balance can overflow.
	l, err := ledger.Open(ctx, store, ledger.Config{AmountMax: math.MaxInt64})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rec.wrap(bhttp.NewCoreServer(l, token, nil)))
	t.Cleanup(func() { srv.Close(); l.Close(); store.Close() })

	c := func(method, path, body string, status int, code string) apiCall {
		return apiCall{srv: srv, auth: "Bearer " + token, method: method, path: path, body: body, status: status, code: code}
	}
	dl := time.Now().Add(time.Minute).UTC().Format(time.RFC3339Nano)
	past := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339Nano)
	tooFar := time.Now().Add(2 * time.Hour).UTC().Format(time.RFC3339Nano)
	const half = "4611686018427387904" // 2^62: two of them overflow an int64
	tr := func(id, from, to, amount, deadline string) string {
		return fmt.Sprintf(`{"transfer_id":%q,"from_account":%q,"to_account":%q,"amount":%s,"deadline":%q,"memo":"lunch"}`, id, from, to, amount, deadline)
	}
	dep := func(ref, account, amount string) string {
		return fmt.Sprintf(`{"external_ref":%q,"account_id":%q,"amount":%s,"sender":"kb-bank"}`, ref, account, amount)
	}
	batch := func(items ...string) string { return `{"deposits":[` + strings.Join(items, ",") + `]}` }
	huge := `{"memo":"` + strings.Repeat("x", 70<<10) + `"}`
	text := []string{"Content-Type", "text/plain"}

	for _, call := range []apiCall{
		c("POST", "/core/v1/accounts", `{"owner":"c1","account_id":"a"}`, 201, ""),
		c("POST", "/core/v1/accounts", `{"owner":"c1","account_id":"a"}`, 200, ""),
		c("POST", "/core/v1/accounts", `{"owner":"c2"}`, 201, ""),
		c("POST", "/core/v1/accounts", `{"owner":"c2","account_id":"b"}`, 201, ""),
		c("POST", "/core/v1/accounts", `{"owner":"c3","account_id":"big"}`, 201, ""),
		c("POST", "/core/v1/accounts", `{"owner":"c3","account_id":"big2"}`, 201, ""),
		c("POST", "/core/v1/accounts", `{"owner":"c2","account_id":"a"}`, 409, banksync.EACCOUNTEXISTS),
		c("POST", "/core/v1/accounts", `{"account_id":"x"}`, 400, banksync.EINVALID).refused(),
		c("POST", "/core/v1/accounts", `{"owner":"c1","account_id":"../x"}`, 400, banksync.EINVALID).refused(),
		c("POST", "/core/v1/accounts", `{"owner":"c1"}`, 415, "unsupported_media_type").with(text...).refused(),
		c("POST", "/core/v1/accounts", huge, 413, banksync.ETOOLARGE).refused(),
		c("POST", "/core/v1/accounts", `{"owner":"c1"}`, 401, banksync.EUNAUTHORIZED).as("").refused(),
		c("POST", "/core/v1/accounts", `{"owner":"c1"}`, 401, banksync.EUNAUTHORIZED).as("Bearer wrong"),
		c("GET", "/core/v1/accounts?owner=c2", "", 200, ""),
		c("GET", "/core/v1/accounts?owner=nobody", "", 200, ""),
		c("GET", "/core/v1/accounts", "", 400, banksync.EINVALID).refused(),
		c("GET", "/core/v1/accounts?owner=c2", "", 401, banksync.EUNAUTHORIZED).as("").refused(),
		c("GET", "/core/v1/accounts/a", "", 200, ""),
		c("GET", "/core/v1/accounts/zz", "", 404, banksync.ENOTFOUND),
		c("GET", "/core/v1/accounts/a", "", 401, banksync.EUNAUTHORIZED).as("").refused(),

		c("POST", "/core/v1/deposits", dep("kb-1", "a", "500"), 200, "").want("status", "completed"),
		c("POST", "/core/v1/deposits", dep("kb-1", "a", "500"), 200, ""),
		c("POST", "/core/v1/deposits", dep("kb-1", "a", "501"), 422, banksync.EIDEMPOTENCY),
		c("POST", "/core/v1/deposits", dep("kb-2", "zz", "5"), 404, banksync.EACCOUNTMISSING),
		c("POST", "/core/v1/deposits", dep("kb-big", "big", half), 200, ""),
		c("POST", "/core/v1/deposits", dep("kb-big-again", "big", half), 422, banksync.EOVERFLOW),
		c("POST", "/core/v1/deposits", dep("kb-big2", "big2", half), 200, ""),
		c("POST", "/core/v1/deposits", `{"external_ref":"kb-3","account_id":"a","amount":5}`, 400, banksync.EINVALID).refused(),
		c("POST", "/core/v1/deposits", `{"external_ref":"toss-1","account_id":"b","amount":5,"sender":"(주)토스 급여"}`, 200, "").want("status", "completed"),
		c("POST", "/core/v1/deposits", `{"external_ref":"toss-2","account_id":"b","amount":5,"sender":"`+strings.Repeat("김", 65)+`"}`, 400, banksync.EINVALID).refused(),
		c("POST", "/core/v1/deposits", `{"external_ref":"toss-2","account_id":"b","amount":5,"sender":""}`, 400, banksync.EINVALID).refused(),
		c("POST", "/core/v1/deposits", `{"external_ref":"toss-2","account_id":"b","amount":5,"sender":"김\u200b철수"}`, 400, banksync.EINVALID),
		c("POST", "/core/v1/deposits", dep("kb-3", "a", "0"), 422, banksync.EINVALIDAMOUNT).refused(),
		c("POST", "/core/v1/deposits", dep("kb-3", "a", `"5"`), 422, banksync.EINVALIDAMOUNT).refused(),
		c("POST", "/core/v1/deposits", dep("kb-3", "a", "5"), 415, "unsupported_media_type").with(text...).refused(),
		c("POST", "/core/v1/deposits", huge, 413, banksync.ETOOLARGE).refused(),
		c("POST", "/core/v1/deposits", dep("kb-3", "a", "5"), 401, banksync.EUNAUTHORIZED).as("").refused(),

		// Each item succeeds or fails on its own: booked, missing account,
		// reused reference, overflow.
		c("POST", "/core/v1/deposits/batch", batch(dep("kb-4", "a", "5"), dep("kb-5", "zz", "5"), dep("kb-1", "a", "501"), dep("kb-6", "big", half)), 200, ""),
		c("POST", "/core/v1/deposits/batch", batch(dep("kb-4", "a", "5"), dep("kb-5", "zz", "5"), dep("kb-1", "a", "501"), dep("kb-6", "big", half)), 200, ""),
		c("POST", "/core/v1/deposits/batch", batch(), 400, banksync.EINVALID).refused(),
		c("POST", "/core/v1/deposits/batch", `{}`, 400, banksync.EINVALID).refused(),
		c("POST", "/core/v1/deposits/batch", batch(dep("kb-7", "a", "5"), `{"external_ref":"kb-8","account_id":"a","amount":5}`), 400, banksync.EINVALID).refused(),
		c("POST", "/core/v1/deposits/batch", batch(dep("kb-7", "a", "5"), dep("kb-8", "a", "0")), 422, banksync.EINVALIDAMOUNT).refused(),
		c("POST", "/core/v1/deposits/batch", batch(dep("kb-7", "a", "5")), 415, "unsupported_media_type").with(text...).refused(),
		c("POST", "/core/v1/deposits/batch", `{"deposits":[`+dep("kb-7", "a", "5")+strings.Repeat(" ", 1<<20)+`]}`, 413, banksync.ETOOLARGE), // sizes are not the document's
		c("POST", "/core/v1/deposits/batch", batch(dep("kb-7", "a", "5")), 401, banksync.EUNAUTHORIZED).as("").refused(),

		c("GET", "/core/v1/accounts/a/entries", "", 200, ""),
		c("GET", "/core/v1/accounts/a/entries?after_seq=1&limit=1", "", 200, ""),
		c("GET", "/core/v1/accounts/a/entries?after_seq=x", "", 400, banksync.EINVALID).refused(),
		c("GET", "/core/v1/accounts/a/entries?after_seq=-1", "", 400, banksync.EINVALID).refused(),
		c("GET", "/core/v1/accounts/a/entries?limit=100000", "", 400, banksync.EINVALID).refused(),
		c("GET", "/core/v1/accounts/zz/entries", "", 404, banksync.ENOTFOUND),
		c("GET", "/core/v1/accounts/a/entries", "", 401, banksync.EUNAUTHORIZED).as("").refused(),

		c("POST", "/core/v1/transfers", tr("t1", "a", "b", "200", dl), 200, "").want("status", "completed"),
		c("POST", "/core/v1/transfers", tr("t1", "a", "b", "200", dl), 200, "").want("status", "completed"),
		c("POST", "/core/v1/transfers", tr("t1", "a", "b", "201", dl), 422, banksync.EIDEMPOTENCY),
		c("POST", "/core/v1/transfers", tr("t2", "b", "a", "999", dl), 200, "").want("status", "rejected", "reason", banksync.ReasonInsufficientFunds),
		c("POST", "/core/v1/transfers", tr("t3", "a", "zz", "1", dl), 200, "").want("status", "rejected", "reason", banksync.ReasonAccountNotFound),
		c("POST", "/core/v1/transfers", tr("t4", "a", "b", "1", past), 200, "").want("status", "rejected", "reason", banksync.ReasonExpired),
		c("POST", "/core/v1/transfers", tr("t5", "big2", "big", half, dl), 200, "").want("status", "rejected", "reason", banksync.ReasonBalanceOverflow),
		c("POST", "/core/v1/transfers", tr("t6", "a", "a", "1", dl), 422, banksync.ESAMEACCOUNT),
		c("POST", "/core/v1/transfers", tr("t6", "a", "b", "0", dl), 422, banksync.EINVALIDAMOUNT).refused(),
		c("POST", "/core/v1/transfers", tr("t6", "a", "b", "1", tooFar), 400, banksync.EINVALID), // the horizon is configuration
		c("POST", "/core/v1/transfers", `{"transfer_id":"t6","from_account":"a","to_account":"b","amount":1}`, 400, banksync.EINVALID).refused(),
		c("POST", "/core/v1/transfers", tr("t6", "a", "b", "1", "tomorrow"), 400, banksync.EINVALID).refused(),
		c("POST", "/core/v1/transfers", tr("t6", "a", "b", "1", dl), 415, "unsupported_media_type").with(text...).refused(),
		c("POST", "/core/v1/transfers", huge, 413, banksync.ETOOLARGE).refused(),
		c("POST", "/core/v1/transfers", tr("t6", "a", "b", "1", dl), 401, banksync.EUNAUTHORIZED).as("").refused(),

		c("GET", "/core/v1/transfers/t1", "", 200, "").want("status", "completed"),
		c("GET", "/core/v1/transfers/t2", "", 200, "").want("status", "rejected"),
		c("GET", "/core/v1/transfers/nope", "", 200, "").want("status", "unknown"),
		c("GET", "/core/v1/transfers/%20x", "", 400, banksync.EINVALID).refused(),
		c("GET", "/core/v1/transfers/t1", "", 401, banksync.EUNAUTHORIZED).as("").refused(),
		c("POST", "/core/v1/transfers/nope/fence", "", 200, "").want("status", "rejected", "reason", banksync.ReasonFenced),
		c("POST", "/core/v1/transfers/t1/fence", "", 200, "").want("status", "completed"),
		c("POST", "/core/v1/transfers/%20x/fence", "", 400, banksync.EINVALID).refused(),
		c("POST", "/core/v1/transfers/t1/fence", "", 401, banksync.EUNAUTHORIZED).as("").refused(),
		c("POST", "/core/v1/transfers", tr("nope", "a", "b", "1", dl), 200, "").want("status", "rejected", "reason", banksync.ReasonFenced),

		c("GET", "/core/v1/outbox", "", 200, ""),
		c("GET", "/core/v1/outbox", "", 401, banksync.EUNAUTHORIZED).as("").refused(),

		// Not in the document, and not served.
		c("GET", "/core/v1/nothing", "", 404, banksync.ENOTFOUND).refused(),
		c("POST", "/core/v1/outbox", `{}`, 405, "method_not_allowed").refused(),
	} {
		rec.run(t, call)
	}

	// A batch answers each deposit as it alone would be answered.
	var results []string
	for _, x := range rec.all() {
		if x.op == "POST /core/v1/deposits/batch" && x.status == 200 {
			var m struct {
				Results []map[string]any `json:"results"`
			}
			json.Unmarshal(x.respBody, &m)
			for _, r := range m.Results {
				results = append(results, fmt.Sprintf("%v %s", r["status"], errCode(r)))
			}
			break
		}
	}
	if want := []string{"completed ", "<nil> account_not_found", "<nil> idempotency_key_reused", "<nil> balance_overflow"}; !slices.Equal(results, want) {
		t.Errorf("batch results = %q, want %q", results, want)
	}

	// The ledger stopping: writes are unavailable.
	l.Close()
	for _, call := range []apiCall{
		c("POST", "/core/v1/accounts", `{"owner":"c9","account_id":"late"}`, 503, banksync.EUNAVAILABLE),
		c("POST", "/core/v1/deposits", dep("kb-9", "a", "5"), 503, banksync.EUNAVAILABLE),
		c("POST", "/core/v1/transfers", tr("t9", "a", "b", "1", dl), 503, banksync.EUNAVAILABLE),
		c("POST", "/core/v1/transfers/t9/fence", "", 503, banksync.EUNAVAILABLE),
	} {
		rec.run(t, call)
	}
	// Its store failing: reads are internal errors.
	store.Close()
	for _, call := range []apiCall{
		c("GET", "/core/v1/accounts?owner=c1", "", 500, banksync.EINTERNAL),
		c("GET", "/core/v1/accounts/a", "", 500, banksync.EINTERNAL),
		c("GET", "/core/v1/accounts/a/entries", "", 500, banksync.EINTERNAL),
		c("GET", "/core/v1/transfers/t1", "", 500, banksync.EINTERNAL),
		c("GET", "/core/v1/outbox", "", 500, banksync.EINTERNAL),
	} {
		rec.run(t, call)
	}
	reportCoverage(t, doc, rec.all())
}

// openAPIDLQ is a dead-letter topic with fixed letters, or one that fails.
type openAPIDLQ struct {
	letters          []bhttp.DeadLetterView
	listErr, replErr error
}

func (d *openAPIDLQ) List(context.Context) ([]bhttp.DeadLetterView, error) {
	return d.letters, d.listErr
}

func (d *openAPIDLQ) Replay(context.Context, string) (kafka.ReplayResult, error) {
	if d.replErr != nil {
		return kafka.ReplayResult{}, d.replErr
	}
	return kafka.ReplayResult{Applied: len(d.letters) - 1, Parked: 1}, nil
}

// TestOpenAPIChannel drives every route of the channel's customer and
// operator APIs, over a real channel and core, through the statuses it can
// reach cheaply, and checks each request and answer against
// openapi/channel.yaml, and each call the channel makes to core against
// openapi/core.yaml.
func TestOpenAPIChannel(t *testing.T) {
	doc := loadAPIDoc(t, bhttp.ChannelOpenAPI())
	rec := &apiRecorder{doc: doc}
	toCore := &apiRecorder{doc: loadAPIDoc(t, bhttp.CoreOpenAPI())}
	var hang, down atomic.Bool // core holds transfers; core answers nothing but 503
	s := newStack(t, stackOptions{
		coreFront: func(t *testing.T, core http.Handler) http.Handler {
			checked := toCore.wrap(core)
			hanging := hangingTransfers(t, checked)
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch {
				case down.Load():
					http.Error(w, "core is down", http.StatusServiceUnavailable)
				case hang.Load():
					hanging.ServeHTTP(w, r)
				default:
					checked.ServeHTTP(w, r)
				}
			})
		},
		channel: channel.Config{CoreTimeout: 500 * time.Millisecond, ReadSyncTimeout: 500 * time.Millisecond,
			Deadline: time.Second, ReconcileGrace: time.Millisecond},
	})
	s.setup(t, []string{"a1:cust-a", "a2:cust-a", "a3:cust-a", "b1:cust-b", "c1:cust-c", "d1:cust-d"},
		"a1=1000", "a1=5", "a3=50")
	ctx := context.Background()
	serve := func(h http.Handler) *httptest.Server {
		srv := httptest.NewServer(rec.wrap(h))
		t.Cleanup(srv.Close)
		return srv
	}
	cursors := channel.NewCursors([]byte("openapi test cursor secret"))
	api := serve(bhttp.NewChannelServer(s.ch, bhttp.ChannelServerConfig{Auth: s.auth, Cursors: cursors}))
	perMinute := bhttp.RateLimit{Rate: 1.0 / 60, Burst: 1}
	limited := serve(bhttp.NewChannelServer(s.ch, bhttp.ChannelServerConfig{Auth: s.auth, Cursors: cursors,
		TransferLimit: perMinute, ReadLimit: perMinute}))
	const adminToken = "openapi-admin-token"
	lag := kafka.GroupLag{Group: "g", Topic: banksync.TopicLedgerEntries, Lag: 7,
		Partitions: []kafka.PartitionLag{{Partition: 0, Committed: 3, End: 10, Lag: 7}, {Partition: 1, Committed: -1, End: -1, Lag: -1, Error: "not leader"}}}
	letters := &openAPIDLQ{letters: []bhttp.DeadLetterView{
		{AccountID: "a1", Key: "a1", Seq: 3, EventID: 9, Reason: "history store down", Attempts: 5, At: time.Now().UTC(), FromPartition: 2, FromOffset: 41,
			Partition: 1, Offset: 0, Headers: []bhttp.HeaderView{{Key: kafka.HeaderDLQReason, Value: "history store down"}}, State: kafka.LetterWaiting},
		{AccountID: "b1", Key: "b1", Seq: 1, EventID: 2, Reason: "history store down", Attempts: 5, FromPartition: 0, FromOffset: 7,
			Partition: 0, Offset: 3, Headers: []bhttp.HeaderView{}, State: kafka.LetterReplayed, Replayed: true, InHistory: true},
		{AccountID: "c1", Key: "c1", Undecodable: "decode ledger event: unsupported version 2 type \"ledger.entry\"", Reason: "undecodable",
			FromPartition: 3, FromOffset: 9, Partition: 0, Offset: 4, Headers: []bhttp.HeaderView{}, State: kafka.LetterParked, Replayed: true},
	}}
	admin := serve(bhttp.NewAdminServer(bhttp.AdminConfig{Token: adminToken, Channel: s.ch, Consumer: fixedLag{lag: lag},
		Core: bhttp.NewCoreClient(s.coreURL, token, nil), DeadLetters: letters}))
	bare := serve(bhttp.NewAdminServer(bhttp.AdminConfig{Token: adminToken}))
	failing := serve(bhttp.NewAdminServer(bhttp.AdminConfig{Token: adminToken, Channel: s.ch,
		Consumer:    fixedLag{err: errors.New("broker down")},
		DeadLetters: &openAPIDLQ{listErr: errors.New("broker down"), replErr: errors.New("letter 1 still fails")}}))

	bearer := func(customer string) string {
		tok, err := s.auth.Issue(customer, 10*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		return "Bearer " + tok
	}
	custA, custC, custD := bearer("cust-a"), bearer("cust-c"), bearer("cust-d")
	c := func(method, path, body string, status int, code string) apiCall {
		return apiCall{srv: api, auth: custA, method: method, path: path, body: body, status: status, code: code}
	}
	submit := func(key, body string, status int, code string) apiCall {
		return c("POST", "/v1/transfers", body, status, code).with("Idempotency-Key", key)
	}
	ad := func(srv *httptest.Server, method, path, body string, status int, code string) apiCall {
		return apiCall{srv: srv, auth: "Bearer " + adminToken, method: method, path: path, body: body, status: status, code: code}
	}
	tr := func(from, to string, amount int) string {
		return fmt.Sprintf(`{"from_account":%q,"to_account":%q,"amount":%d,"memo":"rent"}`, from, to, amount)
	}
	huge := `{"memo":"` + strings.Repeat("x", 70<<10) + `"}`
	text := []string{"Content-Type", "text/plain"}
	run := func(calls ...apiCall) []map[string]any {
		t.Helper()
		var out []map[string]any
		for _, call := range calls {
			out = append(out, rec.run(t, call))
		}
		return out
	}

	// Reads, and a completed, a failed and a refused transfer.
	page := run(
		c("GET", "/v1/accounts", "", 200, ""),
		c("GET", "/v1/accounts/a1/transactions?limit=1", "", 200, ""),
	)[1]
	cursor, _ := page["next_cursor"].(string)
	if cursor == "" {
		t.Fatalf("first page of a1 has no next_cursor: %v", page)
	}
	done := run(submit("k-1", tr("a1", "b1", 300), 200, "").want("state", channel.StateCompleted))[0]
	failed := run(submit("k-2", tr("a3", "b1", 100), 422, banksync.EFAILED))[0]
	failedID, _ := failed["transfer"].(map[string]any)["transfer_id"].(string)
	run(
		c("GET", "/v1/accounts/a1/transactions?limit=1&cursor="+cursor, "", 200, ""),
		c("GET", "/v1/accounts/a1/transactions", "", 200, ""),
		c("GET", "/v1/accounts/a1/transactions?kind=in&q=kb", "", 200, ""),
		c("GET", "/v1/accounts/a1/transactions?kind=sideways", "", 400, banksync.EINVALID).refused(),
		submit("k-1", tr("a1", "b1", 300), 200, "").want("transfer_id", done["transfer_id"].(string)),
		c("GET", "/v1/transfers/"+done["transfer_id"].(string), "", 200, "").want("state", channel.StateCompleted),
		submit("k-1", tr("a1", "b1", 301), 422, banksync.EIDEMPOTENCY),
		submit("k-2", tr("a3", "b1", 100), 422, banksync.EFAILED),
		c("GET", "/v1/transfers/"+failedID, "", 200, "").want("state", channel.StateFailed, "reason", banksync.ReasonInsufficientFunds),
		submit("k-3", tr("a1", "zz", 1), 422, banksync.EFAILED),
		submit("k-3b", `{"from_account":"a2","to_account":"b1","amount":1}`, 422, banksync.EFAILED), // no memo; a2 has no money
		submit("k-4", tr("a1", "a1", 1), 422, banksync.ESAMEACCOUNT),
		submit("k-5", tr("a1", "b1", 0), 422, banksync.EINVALIDAMOUNT).refused(),
		submit("k-5", `{"from_account":"a1","to_account":"b1","amount":"1"}`, 422, banksync.EINVALIDAMOUNT).refused(),
		c("POST", "/v1/transfers", tr("a1", "b1", 1), 400, banksync.EINVALID).refused(),
		submit(strings.Repeat("k", 129), tr("a1", "b1", 1), 400, banksync.EINVALID).refused(),
		submit("k-5", tr("a1", "b1", 1), 400, banksync.EINVALID).with("Idempotency-Key", "k-6"), // two keys: the document cannot say "once"
		submit("k-5", `{"from_account":`, 400, banksync.EINVALID).refused(),
		submit("k-5", `{"from_account":"a1","to_account":"b1","amount":1,"fee":0}`, 400, banksync.EINVALID).refused(),
		submit("k-5", `{"from_account":"a1","to_account":"b1"}`, 400, banksync.EINVALID).refused(),
		submit("k-5", `{"from_account":"a1","to_account":"b1","amount":1,"memo":"`+strings.Repeat("m", 141)+`"}`, 400, banksync.EINVALID).refused(),
		submit("k-5", tr("b1", "a1", 1), 404, banksync.ENOTFOUND),
		submit("k-5", tr("zz", "a1", 1), 404, banksync.ENOTFOUND),
		submit("k-5", tr("a1", "b1", 1), 415, "unsupported_media_type").with(text...).refused(),
		submit("k-5", huge, 413, banksync.ETOOLARGE).refused(),
		submit("k-5", tr("a1", "b1", 1), 401, banksync.EUNAUTHORIZED).as("").refused(),
		submit("k-5", tr("a1", "b1", 1), 401, banksync.EUNAUTHORIZED).as("Bearer not-a-jwt"),
		c("GET", "/v1/transfers/nope", "", 404, banksync.ENOTFOUND),
		c("GET", "/v1/transfers/nope", "", 401, banksync.EUNAUTHORIZED).as("").refused(),
		c("GET", "/v1/accounts", "", 401, banksync.EUNAUTHORIZED).as("").refused(),
		c("GET", "/v1/accounts/b1/transactions", "", 404, banksync.ENOTFOUND),
		c("GET", "/v1/accounts/zz/transactions", "", 404, banksync.ENOTFOUND),
		c("GET", "/v1/accounts/b1/statement?from=2026-01-01&to=2026-01-31", "", 404, banksync.ENOTFOUND),
		c("GET", "/v1/accounts/a1/statement?from=2026-02-01&to=2026-01-31", "", 400, banksync.EINVALID),
		c("GET", "/v1/accounts/a1/statement?to=2026-01-31", "", 400, banksync.EINVALID).refused(),
		c("GET", "/v1/accounts/b1/stream", "", 404, banksync.ENOTFOUND),
		c("POST", "/v1/accounts/a1/stream-ticket", "", 200, ""),
		c("POST", "/v1/accounts/b1/stream-ticket", "", 404, banksync.ENOTFOUND),
		c("GET", "/v1/accounts/a1/stream?after=x", "", 400, banksync.EINVALID).refused(),
		c("GET", "/v1/accounts/a1/transactions?limit=0", "", 400, banksync.EINVALID).refused(),
		c("GET", "/v1/accounts/a1/transactions?limit=abc", "", 400, banksync.EINVALID).refused(),
		c("GET", "/v1/accounts/a1/transactions?limit=1&limit=2", "", 400, banksync.EINVALID), // nor "once" here
		c("GET", "/v1/accounts/a1/transactions?cursor=not-a-cursor", "", 400, banksync.EINVALID),
		c("GET", "/v1/accounts/a3/transactions?cursor="+cursor, "", 400, banksync.EINVALID),
		c("GET", "/v1/accounts/a1/transactions", "", 401, banksync.EUNAUTHORIZED).as("").refused(),
		c("POST", "/v1/accounts/a1/sync", "", 200, ""),
		c("POST", "/v1/accounts/zz/sync", "", 404, banksync.ENOTFOUND),
		c("POST", "/v1/accounts/a1/sync", "", 401, banksync.EUNAUTHORIZED).as("").refused(),
		c("POST", "/v1/accounts/a1/sync", `{}`, 200, "").refused(), // a body where none belongs: ignored
		// Not in the document, and not served.
		c("GET", "/v1/nothing", "", 404, banksync.ENOTFOUND).refused(),
		c("DELETE", "/v1/accounts", "", 405, "method_not_allowed").refused(),
	)

	// A transfer core does not answer in time stays pending; the account
	// takes no other until it is settled.
	hang.Store(true)
	pending := run(submit("k-10", tr("a1", "b1", 100), 202, "").want("state", channel.StatePending))[0]
	pendingID := pending["transfer_id"].(string)
	run(
		submit("k-10", tr("a1", "b1", 100), 202, "").want("transfer_id", pendingID),
		submit("k-11", tr("a1", "b1", 5), 409, banksync.EINPROGRESS),
		c("GET", "/v1/transfers/"+pendingID, "", 200, "").want("state", channel.StatePending),
	)
	hang.Store(false)
	history := run(c("GET", "/v1/accounts/a1/transactions", "", 200, ""))[0]
	if ps, _ := history["pending_transfers"].([]any); len(ps) != 1 {
		t.Fatalf("a1's history lists %d pending transfers, want 1: %v", len(ps), history)
	}

	// Core down: what needs core now is unavailable; lists still answer.
	down.Store(true)
	run(
		c("POST", "/v1/accounts/a1/sync", "", 503, banksync.EUNAVAILABLE),
		c("GET", "/v1/accounts/d1/transactions", "", 503, banksync.EUNAVAILABLE).as(custD),
		c("POST", "/v1/transfers", tr("d1", "b1", 1), 503, banksync.EUNAVAILABLE).as(custD).with("Idempotency-Key", "d-1"),
		c("GET", "/v1/accounts", "", 200, ""),
		c("GET", "/v1/accounts/a1/transactions", "", 200, ""), // answered from the channel, flagged stale
		ad(admin, "GET", "/admin/v1/overview", "", 200, ""),   // core's backlog null, with its error
	)
	down.Store(false)

	// Over a customer's budgets.
	l := func(method, path, body string, status int, code string) apiCall {
		return apiCall{srv: limited, auth: custC, method: method, path: path, body: body, status: status, code: code}
	}
	run(
		l("POST", "/v1/transfers", tr("c1", "b1", 1), 422, banksync.EFAILED).with("Idempotency-Key", "c-1"), // c1 has no money
		l("POST", "/v1/transfers", tr("c1", "b1", 1), 429, banksync.ERATELIMITED).with("Idempotency-Key", "c-2"),
		l("GET", "/v1/accounts", "", 200, ""),
		l("GET", "/v1/accounts", "", 429, banksync.ERATELIMITED),
		l("GET", "/v1/transfers/"+pendingID, "", 429, banksync.ERATELIMITED),
		l("GET", "/v1/accounts/c1/transactions", "", 429, banksync.ERATELIMITED),
		l("POST", "/v1/accounts/c1/sync", "", 429, banksync.ERATELIMITED),
	)

	// The operator API.
	if err := s.chStore.MarkStale(ctx, "b1", time.Now()); err != nil {
		t.Fatal(err)
	}
	overview := run(ad(admin, "GET", "/admin/v1/overview", "", 200, ""))[0]
	if ps, _ := overview["pending_transfers"].([]any); len(ps) != 1 {
		t.Fatalf("overview lists %d pending transfers, want 1: %v", len(ps), overview)
	}
	run(
		ad(admin, "GET", "/admin/v1/overview", "", 401, banksync.EUNAUTHORIZED).as("").refused(),
		ad(admin, "GET", "/admin/v1/overview", "", 401, banksync.EUNAUTHORIZED).as(custA),
		ad(admin, "GET", "/admin/v1/dlq", "", 200, ""),
		ad(admin, "GET", "/admin/v1/dlq", "", 401, banksync.EUNAUTHORIZED).as("").refused(),
		ad(admin, "POST", "/admin/v1/dlq/replay", `{"all":true}`, 200, ""),
		ad(admin, "POST", "/admin/v1/dlq/replay", `{"account":"a1"}`, 200, ""),
		ad(admin, "POST", "/admin/v1/dlq/replay", `{}`, 400, banksync.EINVALID).refused(),
		ad(admin, "POST", "/admin/v1/dlq/replay", `{"all":true,"account":"a1"}`, 400, banksync.EINVALID).refused(),
		ad(admin, "POST", "/admin/v1/dlq/replay", `{"account":"../x"}`, 400, banksync.EINVALID).refused(),
		ad(admin, "POST", "/admin/v1/dlq/replay", `{"all":true,"force":true}`, 400, banksync.EINVALID).refused(),
		ad(admin, "POST", "/admin/v1/dlq/replay", `{"all":true}`, 415, "unsupported_media_type").with(text...).refused(),
		ad(admin, "POST", "/admin/v1/dlq/replay", huge, 413, banksync.ETOOLARGE).refused(),
		ad(admin, "POST", "/admin/v1/dlq/replay", `{"all":true}`, 401, banksync.EUNAUTHORIZED).as("").refused(),
		ad(bare, "GET", "/admin/v1/overview", "", 503, banksync.EUNAVAILABLE),
		ad(bare, "GET", "/admin/v1/dlq", "", 503, banksync.EUNAVAILABLE),
		ad(bare, "POST", "/admin/v1/dlq/replay", `{"all":true}`, 503, banksync.EUNAVAILABLE),
		ad(failing, "GET", "/admin/v1/overview", "", 200, ""), // the lag's error, no core
		ad(failing, "GET", "/admin/v1/dlq", "", 500, banksync.EINTERNAL),
		ad(failing, "POST", "/admin/v1/dlq/replay", `{"all":true}`, 503, banksync.EUNAVAILABLE),
		ad(admin, "GET", "/admin/v1/nothing", "", 404, banksync.ENOTFOUND).refused(),
	)

	// Past the deadline the reconciler fences the pending transfer and
	// repairs the stale account; the overview lists both decisions.
	stored, ok, err := s.chStore.Transfer(ctx, pendingID)
	if err != nil || !ok {
		t.Fatalf("pending transfer %s: found %v, %v", pendingID, ok, err)
	}
	time.Sleep(time.Until(stored.Deadline.Add(10 * time.Millisecond)))
	if _, err := s.ch.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	overview = run(
		ad(admin, "GET", "/admin/v1/overview", "", 200, ""),
		c("GET", "/v1/transfers/"+pendingID, "", 200, "").want("state", channel.StateFailed, "reason", banksync.ReasonFenced),
	)[0]
	var actions []string
	for _, d := range overview["reconciler"].([]any) {
		actions = append(actions, d.(map[string]any)["action"].(string))
	}
	if !slices.Contains(actions, channel.DecisionFenced) || !slices.Contains(actions, channel.DecisionRepaired) {
		t.Fatalf("reconciler decisions %q, want %s and %s among them", actions, channel.DecisionFenced, channel.DecisionRepaired)
	}

	// The channel's store failing: internal errors.
	if err := s.chStore.Close(); err != nil {
		t.Fatal(err)
	}
	run(
		c("GET", "/v1/transfers/"+pendingID, "", 500, banksync.EINTERNAL),
		c("GET", "/v1/accounts", "", 500, banksync.EINTERNAL),
		c("GET", "/v1/accounts/a1/transactions", "", 500, banksync.EINTERNAL),
		c("POST", "/v1/accounts/a1/sync", "", 500, banksync.EINTERNAL),
		submit("k-20", tr("a1", "b1", 1), 500, banksync.EINTERNAL),
		ad(admin, "GET", "/admin/v1/overview", "", 500, banksync.EINTERNAL),
	)

	reportCoverage(t, doc, rec.all())
	t.Run("the channel's calls to core conform", func(t *testing.T) {
		xs := toCore.all()
		for _, x := range xs {
			if x.reqErr != nil || x.respErr != nil || x.routeMismatch() != nil {
				t.Errorf("%s %s = %d: request %v; answer %v; route %v", x.req.Method, x.req.URL, x.status, x.reqErr, x.respErr, x.routeMismatch())
			}
			if x.route == "" {
				t.Errorf("%s %s: the core server did not name its route", x.req.Method, x.req.URL)
			}
		}
		reached, _ := coverage(toCore.doc, xs)
		t.Logf("%d calls to core: %v", len(xs), reached)
		for _, op := range []string{"GET /core/v1/accounts", "GET /core/v1/accounts/{id}", "GET /core/v1/accounts/{id}/entries",
			"POST /core/v1/transfers", "POST /core/v1/transfers/{id}/fence", "GET /core/v1/outbox"} {
			if reached[op] == nil {
				t.Errorf("the channel never called %s", op)
			}
		}
	})
	t.Run("an answer with a field the document does not name fails", func(t *testing.T) {
		// Take balance out of AccountState in a fresh copy of the document:
		// the sync answers recorded above no longer conform.
		mutated := loadAPIDoc(t, bhttp.ChannelOpenAPI())
		st := mutated.doc.Components.Schemas["AccountState"].Value
		delete(st.Properties, "balance")
		st.Required = slices.DeleteFunc(slices.Clone(st.Required), func(f string) bool { return f == "balance" })
		var syncs int
		for _, x := range rec.all() {
			if x.op != "POST /v1/accounts/{id}/sync" || x.status != 200 {
				continue
			}
			syncs++
			again := *x
			mutated.check(&again)
			if again.respErr == nil || !strings.Contains(again.respErr.Error(), "balance") {
				t.Errorf("sync answer %s passes a document without balance: %v", x.respBody, again.respErr)
			}
		}
		if syncs == 0 {
			t.Fatal("no sync answer was recorded")
		}
	})
}
