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
	s.mux.HandleFunc("POST /core/v1/transfers", s.transfer)
	s.mux.HandleFunc("GET /core/v1/transfers/{id}", s.transferStatus)
	s.mux.HandleFunc("POST /core/v1/transfers/{id}/fence", s.fence)
	s.mux.HandleFunc("/", s.notFound)
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

func (s *CoreServer) notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, r, s.log, banksync.Errorf(banksync.ENOTFOUND, "no such endpoint"))
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

func (s *CoreServer) deposit(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ExternalRef *string `json:"external_ref"`
		AccountID   *string `json:"account_id"`
		Amount      *int64  `json:"amount"`
		Sender      *string `json:"sender"`
	}
	if err := decode(w, r, &req); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if err := required("external_ref", req.ExternalRef != nil, "account_id", req.AccountID != nil,
		"amount", req.Amount != nil, "sender", req.Sender != nil); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	out, err := s.ledger.Deposit(r.Context(), banksync.DepositRequest{
		ExternalRef: *req.ExternalRef, AccountID: *req.AccountID, Amount: *req.Amount, Sender: *req.Sender,
	})
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *CoreServer) transfer(w http.ResponseWriter, r *http.Request) {
	var req struct {
		TransferID  *string    `json:"transfer_id"`
		FromAccount *string    `json:"from_account"`
		ToAccount   *string    `json:"to_account"`
		Amount      *int64     `json:"amount"`
		Deadline    *time.Time `json:"deadline"`
		Memo        string     `json:"memo"`
	}
	if err := decode(w, r, &req); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if err := required("transfer_id", req.TransferID != nil, "from_account", req.FromAccount != nil,
		"to_account", req.ToAccount != nil, "amount", req.Amount != nil, "deadline", req.Deadline != nil); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	out, err := s.ledger.Transfer(r.Context(), banksync.TransferRequest{
		TransferID: *req.TransferID, FromAccount: *req.FromAccount, ToAccount: *req.ToAccount,
		Amount: *req.Amount, Deadline: *req.Deadline, Memo: req.Memo,
	})
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *CoreServer) transferStatus(w http.ResponseWriter, r *http.Request) {
	out, err := s.ledger.TransferStatus(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *CoreServer) fence(w http.ResponseWriter, r *http.Request) {
	out, err := s.ledger.Fence(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
