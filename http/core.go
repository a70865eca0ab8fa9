package http

import (
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"banksync"
	"banksync/ledger"
)

// entriesPageDefault is the page size of an entries read without a limit.
const entriesPageDefault = 100

// CoreServer serves the core ledger API to the channel tier. Every call needs
// the service token.
type CoreServer struct {
	ledger *ledger.Ledger
	token  []byte
	log    *slog.Logger
	mux    *http.ServeMux
}

// NewCoreServer returns the core API over l, guarded by serviceToken.
func NewCoreServer(l *ledger.Ledger, serviceToken string, log *slog.Logger) *CoreServer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &CoreServer{ledger: l, token: []byte(serviceToken), log: log, mux: http.NewServeMux()}
	s.mux.HandleFunc("POST /core/v1/accounts", s.createAccount)
	s.mux.HandleFunc("GET /core/v1/accounts", s.accountsOf)
	s.mux.HandleFunc("GET /core/v1/accounts/{id}", s.account)
	s.mux.HandleFunc("GET /core/v1/accounts/{id}/entries", s.entries)
	s.mux.HandleFunc("POST /core/v1/deposits", s.deposit)
	s.mux.HandleFunc("POST /core/v1/deposits/batch", s.depositsBatch)
	s.mux.HandleFunc("POST /core/v1/transfers", s.transfer)
	s.mux.HandleFunc("GET /core/v1/transfers/{id}", s.transferStatus)
	s.mux.HandleFunc("POST /core/v1/transfers/{id}/fence", s.fence)
	s.mux.HandleFunc("GET /core/v1/outbox", s.outbox)
	s.mux.HandleFunc("/", NoRoute(s.mux, s.log))
	return s
}

// ServeHTTP checks the service token, then routes.
func (s *CoreServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !bearerMatches(r, s.token) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="banksync-core"`)
		writeError(w, r, s.log, banksync.Errorf(banksync.EUNAUTHORIZED, "a valid service token is required"))
		return
	}
	s.mux.ServeHTTP(w, r)
}

// bearerMatches compares the bearer token in constant time.
func bearerMatches(r *http.Request, token []byte) bool {
	h := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(token) == 0 || len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(h[len(prefix):]), token) == 1
}

func (s *CoreServer) createAccount(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Owner     *string `json:"owner"`
		AccountID string  `json:"account_id"`
	}
	if err := decode(w, r, &req); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if err := required("owner", req.Owner != nil); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	acct, created, err := s.ledger.CreateAccount(r.Context(), req.AccountID, *req.Owner)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, acct)
}

func (s *CoreServer) accountsOf(w http.ResponseWriter, r *http.Request) {
	accts, err := s.ledger.AccountsOf(r.Context(), r.URL.Query().Get("owner"))
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if accts == nil {
		accts = []banksync.Account{}
	}
	writeJSON(w, http.StatusOK, struct {
		Accounts []banksync.Account `json:"accounts"`
	}{accts})
}

func (s *CoreServer) account(w http.ResponseWriter, r *http.Request) {
	addLog(r.Context(), LogAccount, r.PathValue("id"))
	acct, err := s.ledger.Account(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, acct)
}

func (s *CoreServer) entries(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	afterSeq, err := intParam(q.Get("after_seq"), 0)
	if err != nil {
		writeError(w, r, s.log, banksync.Errorf(banksync.EINVALID, "after_seq must be a whole number"))
		return
	}
	limit, err := intParam(q.Get("limit"), entriesPageDefault)
	if err != nil {
		writeError(w, r, s.log, banksync.Errorf(banksync.EINVALID, "limit must be a whole number"))
		return
	}
	addLog(r.Context(), LogAccount, r.PathValue("id"))
	entries, err := s.ledger.Entries(r.Context(), r.PathValue("id"), afterSeq, int(min(limit, 1<<20)))
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if entries == nil {
		entries = []banksync.Entry{}
	}
	writeJSON(w, http.StatusOK, struct {
		AccountID string           `json:"account_id"`
		Entries   []banksync.Entry `json:"entries"`
	}{r.PathValue("id"), entries})
}

func intParam(s string, def int64) (int64, error) {
	if s == "" {
		return def, nil
	}
	return strconv.ParseInt(s, 10, 64)
}

// depositJSON is a deposit as the API takes it, alone or in a batch.
type depositJSON struct {
	ExternalRef *string `json:"external_ref"`
	AccountID   *string `json:"account_id"`
	Amount      *int64  `json:"amount"`
	Sender      *string `json:"sender"`
}

func (d depositJSON) request() (banksync.DepositRequest, error) {
	if err := required("external_ref", d.ExternalRef != nil, "account_id", d.AccountID != nil,
		"amount", d.Amount != nil, "sender", d.Sender != nil); err != nil {
		return banksync.DepositRequest{}, err
	}
	return banksync.DepositRequest{ExternalRef: *d.ExternalRef, AccountID: *d.AccountID, Amount: *d.Amount, Sender: *d.Sender}, nil
}

func (s *CoreServer) deposit(w http.ResponseWriter, r *http.Request) {
	var req depositJSON
	if err := decode(w, r, &req); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	d, err := req.request()
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	addLog(r.Context(), LogAccount, d.AccountID)
	out, err := s.ledger.Deposit(r.Context(), d)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// depositResultJSON is one item of a batch answer: the outcome POST
// /core/v1/deposits answers for that deposit, or the error it would answer.
type depositResultJSON struct {
	ExternalRef string          `json:"external_ref"`
	Status      string          `json:"status,omitempty"`
	Entry       *banksync.Entry `json:"entry,omitempty"`
	Error       *errorDetail    `json:"error,omitempty"`
}

// depositsBatch books up to ledger.DepositsBatchMax deposits, a payroll file
// say. A bad batch is refused whole with nothing written; otherwise the
// answer is 200 with one result per deposit, in request order, each
// succeeding or failing on its own.
func (s *CoreServer) depositsBatch(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Deposits *[]depositJSON `json:"deposits"`
	}
	if err := decodeLimit(w, r, &req, depositsBatchBodySizeMax); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if err := required("deposits", req.Deposits != nil); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	ds := make([]banksync.DepositRequest, len(*req.Deposits))
	for i, d := range *req.Deposits {
		var err error
		if ds[i], err = d.request(); err != nil {
			writeError(w, r, s.log, banksync.Errorf(banksync.ErrorCode(err), "deposits[%d]: %s", i, banksync.ErrorMessage(err)))
			return
		}
	}
	results, err := s.ledger.Deposits(r.Context(), ds)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	out := make([]depositResultJSON, len(results))
	for i, res := range results {
		out[i].ExternalRef = ds[i].ExternalRef
		if res.Err != nil {
			_, detail := describeError(r, s.log, res.Err, "external_ref", ds[i].ExternalRef)
			out[i].Error = &detail
			continue
		}
		out[i].Status = res.Outcome.Status
		out[i].Entry = &res.Outcome.Entry
	}
	writeJSON(w, http.StatusOK, struct {
		Results []depositResultJSON `json:"results"`
	}{out})
}

// transferJSON is a transfer as POST /core/v1/transfers takes it.
type transferJSON struct {
	TransferID  *string   `json:"transfer_id"`
	FromAccount *string   `json:"from_account"`
	ToAccount   *string   `json:"to_account"`
	Amount      *int64    `json:"amount"`
	Deadline    *timeJSON `json:"deadline"`
	Memo        string    `json:"memo"`
}

func (s *CoreServer) transfer(w http.ResponseWriter, r *http.Request) {
	var req transferJSON
	if err := decode(w, r, &req); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if err := required("transfer_id", req.TransferID != nil, "from_account", req.FromAccount != nil,
		"to_account", req.ToAccount != nil, "amount", req.Amount != nil, "deadline", req.Deadline != nil); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	addLog(r.Context(), LogTransferID, *req.TransferID)
	addLog(r.Context(), LogAccount, *req.FromAccount)
	out, err := s.ledger.Transfer(r.Context(), banksync.TransferRequest{
		TransferID: *req.TransferID, FromAccount: *req.FromAccount, ToAccount: *req.ToAccount,
		Amount: *req.Amount, Deadline: time.Time(*req.Deadline), Memo: req.Memo,
	})
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *CoreServer) transferStatus(w http.ResponseWriter, r *http.Request) {
	addLog(r.Context(), LogTransferID, r.PathValue("id"))
	out, err := s.ledger.TransferStatus(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// outbox answers how many committed entries are not yet published to Kafka.
func (s *CoreServer) outbox(w http.ResponseWriter, r *http.Request) {
	n, err := s.ledger.OutboxBacklog(r.Context())
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, Outbox{Backlog: n})
}

func (s *CoreServer) fence(w http.ResponseWriter, r *http.Request) {
	addLog(r.Context(), LogTransferID, r.PathValue("id"))
	out, err := s.ledger.Fence(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// Route names the route r takes, such as "POST /v1/transfers", for metrics;
// "/" for a request no route takes.
func (s *CoreServer) Route(r *http.Request) string {
	_, pattern := s.mux.Handler(r)
	return pattern
}
