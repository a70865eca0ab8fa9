package http

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

	jsonv2 "github.com/go-json-experiment/json"

	"banksync"
	"banksync/channel"
)

// responseSizeMax caps what the client reads from core: a page of entries
// is well under it. CallTimeoutMax backstops callers that set no deadline,
// and cuts any longer one: a channel's --core-timeout cannot go past it.
const (
	responseSizeMax = 4 << 20
	CallTimeoutMax  = 30 * time.Second
)

// CoreClient is the channel's client for the core API.
type CoreClient struct {
	base  string
	token string
	// rt sends each call straight, not through an http.Client: core never
	// redirects and sets no cookies, and the client's redirect bookkeeping
	// (a copy of the headers every call) is a cost on every transfer.
	rt http.RoundTripper
}

var _ channel.Core = (*CoreClient)(nil)

// NewCoreClient returns a client for the core API at baseURL. rt may be nil
// for the default transport; tests put a fault-injecting one there.
func NewCoreClient(baseURL, serviceToken string, rt http.RoundTripper) *CoreClient {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return &CoreClient{base: baseURL, token: serviceToken, rt: rt}
}

// do sends one call. Anything that leaves the outcome unknown — a transport
// error, a timeout, a 5xx, an unreadable answer — is EUNAVAILABLE; core's
// 4xx answers keep their code.
func (c *CoreClient) do(ctx context.Context, method, path string, body, out any) error {
	ctx, cancel := context.WithTimeout(ctx, CallTimeoutMax) // bounds reading the answer too
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if id := RequestID(ctx); id != "" {
		req.Header.Set(HeaderRequestID, id)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.rt.RoundTrip(req)
	if err != nil {
		return unavailable(method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, responseSizeMax))
	if err != nil {
		return unavailable(method, path, err)
	}
	switch {
	case resp.StatusCode >= 500:
		return unavailable(method, path, fmt.Errorf("status %d", resp.StatusCode))
	case resp.StatusCode >= 400:
		var eb errorBody
		if json.Unmarshal(raw, &eb) != nil || eb.Error.Code == "" {
			return unavailable(method, path, fmt.Errorf("status %d without an error code", resp.StatusCode))
		}
		return &banksync.Error{Code: eb.Error.Code, Message: "core: " + eb.Error.Message}
	}
	// The answer is core's own JSON, so the faster decoder reads it as
	// encoding/json would: core writes exact names, once each, valid UTF-8.
	if err := jsonv2.Unmarshal(raw, out); err != nil {
		return unavailable(method, path, fmt.Errorf("decode answer: %w", err))
	}
	return nil
}

func unavailable(method, path string, cause error) error {
	if errors.Is(cause, context.Canceled) {
		return cause
	}
	return fmt.Errorf("core %s %s: %w", method, path,
		errors.Join(banksync.Errorf(banksync.EUNAVAILABLE, "core did not answer"), cause))
}

// transferBody is what Transfer sends; a struct encodes at a fraction of a
// map's cost.
type transferBody struct {
	TransferID  string `json:"transfer_id"`
	FromAccount string `json:"from_account"`
	ToAccount   string `json:"to_account"`
	Amount      int64  `json:"amount"`
	Deadline    string `json:"deadline"`
	Memo        string `json:"memo"`
}

func (c *CoreClient) Transfer(ctx context.Context, t banksync.TransferRequest) (banksync.TransferOutcome, error) {
	var out banksync.TransferOutcome
	err := c.do(ctx, "POST", "/core/v1/transfers", transferBody{
		TransferID: t.TransferID, FromAccount: t.FromAccount, ToAccount: t.ToAccount,
		Amount: t.Amount, Deadline: t.Deadline.UTC().Format(time.RFC3339Nano), Memo: t.Memo,
	}, &out)
	return out, err
}

func (c *CoreClient) Fence(ctx context.Context, id string) (banksync.TransferOutcome, error) {
	var out banksync.TransferOutcome
	err := c.do(ctx, "POST", "/core/v1/transfers/"+url.PathEscape(id)+"/fence", nil, &out)
	return out, err
}

func (c *CoreClient) Entries(ctx context.Context, account string, afterSeq int64, limit int) ([]banksync.Entry, error) {
	var out struct {
		Entries []banksync.Entry `json:"entries"`
	}
	q := url.Values{"after_seq": {strconv.FormatInt(afterSeq, 10)}, "limit": {strconv.Itoa(limit)}}
	err := c.do(ctx, "GET", "/core/v1/accounts/"+url.PathEscape(account)+"/entries?"+q.Encode(), nil, &out)
	return out.Entries, err
}

func (c *CoreClient) Account(ctx context.Context, id string) (banksync.Account, error) {
	var out banksync.Account
	err := c.do(ctx, "GET", "/core/v1/accounts/"+url.PathEscape(id), nil, &out)
	return out, err
}

func (c *CoreClient) AccountsOf(ctx context.Context, owner string) ([]banksync.Account, error) {
	var out struct {
		Accounts []banksync.Account `json:"accounts"`
	}
	err := c.do(ctx, "GET", "/core/v1/accounts?"+url.Values{"owner": {owner}}.Encode(), nil, &out)
	return out.Accounts, err
}

// Outbox is core's transactional outbox as the operations view shows it.
type Outbox struct {
	Backlog int64 `json:"backlog"` // committed entries not yet published
}

// Outbox reads core's outbox backlog.
func (c *CoreClient) Outbox(ctx context.Context) (Outbox, error) {
	var out Outbox
	err := c.do(ctx, "GET", "/core/v1/outbox", nil, &out)
	return out, err
}

// DepositResult is one deposit of a batch as core answered it: Outcome if
// Err is nil, else a *banksync.Error carrying core's code.
type DepositResult struct {
	Outcome banksync.DepositOutcome
	Err     error
}

// Deposits books a batch of at most ledger.DepositsBatchMax deposits and
// returns one result per deposit, in order. A batch core refuses whole
// (invalid input) is the error, and then nothing was booked; EUNAVAILABLE
// leaves each deposit's fate unknown. Every deposit is idempotent by its
// ExternalRef, so sending the batch again is safe either way.
func (c *CoreClient) Deposits(ctx context.Context, ds []banksync.DepositRequest) ([]DepositResult, error) {
	const path = "/core/v1/deposits/batch"
	items := make([]map[string]any, len(ds))
	for i, d := range ds {
		items[i] = map[string]any{"external_ref": d.ExternalRef, "account_id": d.AccountID, "amount": d.Amount, "sender": d.Sender}
	}
	var out struct {
		Results []depositResultJSON `json:"results"`
	}
	if err := c.do(ctx, "POST", path, map[string]any{"deposits": items}, &out); err != nil {
		return nil, err
	}
	if len(out.Results) != len(ds) {
		return nil, unavailable("POST", path, fmt.Errorf("%d results for %d deposits", len(out.Results), len(ds)))
	}
	results := make([]DepositResult, len(ds))
	for i, r := range out.Results {
		switch {
		case r.ExternalRef != ds[i].ExternalRef:
			return nil, unavailable("POST", path, fmt.Errorf("result %d is for %q, not %q", i, r.ExternalRef, ds[i].ExternalRef))
		case r.Error != nil && r.Error.Code != "":
			results[i].Err = &banksync.Error{Code: r.Error.Code, Message: "core: " + r.Error.Message}
		case r.Error == nil && r.Entry != nil && r.Status != "":
			results[i].Outcome = banksync.DepositOutcome{ExternalRef: r.ExternalRef, Status: r.Status, Entry: *r.Entry}
		default:
			return nil, unavailable("POST", path, fmt.Errorf("result %d has neither an outcome nor an error code", i))
		}
	}
	return results, nil
}
