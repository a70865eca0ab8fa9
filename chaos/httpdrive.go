package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"banksync"
	"banksync/channel"
	bhttp "banksync/http"
)

// Limits of the workload's HTTP clients. callTimeout backstops a call the
// server never answers: the workload then treats it as an unknown outcome,
// as it does an in-process call cut off by a fault. idleConnsMax keeps
// every customer's and reader's connection alive between calls, instead
// of Go's default two per host, which would churn through ports.
const (
	callTimeout      = 10 * time.Second
	idleConnsMax     = 64
	responseSizeMax  = 4 << 20
	customerTokenTTL = time.Minute
)

func newHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns, t.MaxIdleConnsPerHost = idleConnsMax, idleConnsMax
	return &http.Client{Transport: t, Timeout: callTimeout}
}

// httpReplica drives one channel replica through its customer API, as a
// customer's app does, with a token for each customer.
type httpReplica struct {
	base string
	auth *bhttp.Authenticator // signs customers' tokens (HS256)
	hc   *http.Client
}

var _ replica = (*httpReplica)(nil)

func newHTTPReplica(baseURL string, auth *bhttp.Authenticator, hc *http.Client) *httpReplica {
	return &httpReplica{base: baseURL, auth: auth, hc: hc}
}

func (r *httpReplica) Submit(ctx context.Context, req channel.SubmitRequest) (channel.Transfer, error) {
	body := map[string]any{"from_account": req.FromAccount, "to_account": req.ToAccount, "amount": req.Amount, "memo": req.Memo}
	var t channel.Transfer
	raw, err := r.call(ctx, "POST", "/v1/transfers", req.Customer, req.IdempotencyKey, body, &t)
	if banksync.ErrorCode(err) == banksync.EFAILED {
		// A refused transfer comes back beside the error, with its reason,
		// as Submit returns it in process.
		var failed struct {
			Transfer channel.Transfer `json:"transfer"`
		}
		if json.Unmarshal(raw, &failed) == nil {
			t = failed.Transfer
		}
	}
	return t, err
}

func (r *httpReplica) History(ctx context.Context, customer, account, cursor string, limit int) (channel.Page, error) {
	q := url.Values{"limit": {strconv.Itoa(limit)}}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	var p channel.Page
	_, err := r.call(ctx, "GET", "/v1/accounts/"+url.PathEscape(account)+"/transactions?"+q.Encode(), customer, "", nil, &p)
	return p, err
}

func (r *httpReplica) Sync(ctx context.Context, customer, account string) (channel.AccountState, error) {
	var st channel.AccountState
	_, err := r.call(ctx, "POST", "/v1/accounts/"+url.PathEscape(account)+"/sync", customer, "", nil, &st)
	return st, err
}

// call sends one request as customer and decodes a 2xx answer into out.
// It returns the raw answer and the error the channel returned in process:
// an error answer's code, kept; anything that leaves the outcome unknown
// (no answer, a timeout, an answer without a code or unreadable) is
// EUNAVAILABLE.
func (r *httpReplica) call(ctx context.Context, method, path, customer, key string, body, out any) ([]byte, error) {
	req, err := newRequest(ctx, method, r.base+path, body)
	if err != nil {
		return nil, err
	}
	tok, err := r.auth.Issue(customer, customerTokenTTL)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	return send(r.hc, req, out)
}

func newRequest(ctx context.Context, method, url string, body any) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode %s %s: %w", method, url, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req, nil
}

// send is one call: see call for how answers map to errors.
func send(hc *http.Client, req *http.Request, out any) ([]byte, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return nil, unknownOutcome(req, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, responseSizeMax))
	if err != nil {
		return nil, unknownOutcome(req, err)
	}
	if resp.StatusCode >= 300 {
		var eb struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(raw, &eb) != nil || eb.Error.Code == "" {
			return raw, unknownOutcome(req, fmt.Errorf("status %d without an error code", resp.StatusCode))
		}
		return raw, &banksync.Error{Code: eb.Error.Code, Message: eb.Error.Message}
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return raw, unknownOutcome(req, fmt.Errorf("decode answer: %w", err))
	}
	return raw, nil
}

// unknownOutcome is a call whose fate the client cannot know. The run
// ending (ctx cancelled) stays itself, as in process.
func unknownOutcome(req *http.Request, cause error) error {
	if errors.Is(cause, context.Canceled) {
		return cause
	}
	return fmt.Errorf("%s %s: %w", req.Method, req.URL.Path,
		errors.Join(banksync.Errorf(banksync.EUNAVAILABLE, "no answer"), cause))
}

// httpBank drives core through its API with the service token: deposits as
// the other banks send them, and entries read back through the channel's
// own client.
type httpBank struct {
	base  string
	token string
	hc    *http.Client
	core  *bhttp.CoreClient
}

var _ bank = (*httpBank)(nil)

func newHTTPBank(baseURL, serviceToken string, hc *http.Client) *httpBank {
	return &httpBank{base: baseURL, token: serviceToken, hc: hc, core: bhttp.NewCoreClient(baseURL, serviceToken, hc.Transport)}
}

// CreateAccount opens the account; CoreClient has no call for it, since a
// channel never opens accounts.
func (b *httpBank) CreateAccount(ctx context.Context, id, owner string) error {
	req, err := newRequest(ctx, "POST", b.base+"/core/v1/accounts", map[string]string{"account_id": id, "owner": owner})
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	var acct banksync.Account
	_, err = send(b.hc, req, &acct)
	return err
}

func (b *httpBank) Deposit(ctx context.Context, d banksync.DepositRequest) error {
	res, err := b.core.Deposits(ctx, []banksync.DepositRequest{d})
	if err != nil {
		return err
	}
	return res[0].Err
}

func (b *httpBank) Entry(ctx context.Context, account string, seq int64) (banksync.Entry, bool, error) {
	// The first entry after seq-1 is seq itself, or core has no entry seq
	// (as the store's Entry answers found false): past the head, or a hole.
	es, err := b.core.Entries(ctx, account, seq-1, 1)
	if err != nil || len(es) == 0 || es[0].Seq != seq {
		return banksync.Entry{}, false, err
	}
	return es[0], true, nil
}
