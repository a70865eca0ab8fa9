package http

import (
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"banksync"
	"banksync/channel"
)

// ChannelServerConfig wires the customer API.
type ChannelServerConfig struct {
	Auth    *Authenticator  // required; nil refuses every request
	Cursors channel.Cursors // history cursor key, the same on every replica
	Logger  *slog.Logger

	// Per-customer budgets, per replica: transfers (POST /v1/transfers),
	// and everything else (reads and syncs). Zero is no limit.
	TransferLimit, ReadLimit RateLimit
	// Tracer, set, gives each live push of an entry that was applied
	// within a trace a span in that trace; nil traces nothing.
	Tracer trace.Tracer
}

// ChannelServer serves the customer-facing API of the channel tier. Every
// call needs a customer's bearer token; a customer sees only their own
// accounts and transfers, and anyone else's is answered exactly like one
// that does not exist.
type ChannelServer struct {
	ch        *channel.Channel
	auth      *Authenticator
	cursors   channel.Cursors
	log       *slog.Logger
	mux       *http.ServeMux
	transfers *limiter
	reads     *limiter
	tracer    trace.Tracer
}

// NewChannelServer returns the customer API over ch.
func NewChannelServer(ch *channel.Channel, cfg ChannelServerConfig) *ChannelServer {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &ChannelServer{ch: ch, auth: cfg.Auth, cursors: cfg.Cursors, log: cfg.Logger, mux: http.NewServeMux(),
		transfers: newLimiter(cfg.TransferLimit), reads: newLimiter(cfg.ReadLimit), tracer: cfg.Tracer}
	s.mux.HandleFunc("POST /v1/transfers", s.submit)
	s.mux.HandleFunc("GET /v1/transfers/{id}", s.transfer)
	s.mux.HandleFunc("GET /v1/accounts", s.accounts)
	s.mux.HandleFunc("GET /v1/accounts/{id}/transactions", s.history)
	s.mux.HandleFunc("GET /v1/accounts/{id}/statement", s.statement)
	s.mux.HandleFunc("GET /v1/accounts/{id}/stream", s.stream)
	s.mux.HandleFunc("POST /v1/accounts/{id}/stream-ticket", s.streamTicket)
	s.mux.HandleFunc("POST /v1/accounts/{id}/sync", s.sync)
	s.mux.HandleFunc("/", NoRoute(s.mux, s.log))
	return s
}

// ServeHTTP authenticates the customer, takes the request from their
// budget, then routes.
func (s *ChannelServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	customer, err := s.authenticate(r)
	if err != nil {
		s.log.DebugContext(r.Context(), "customer not authenticated", "method", r.Method, "path", r.URL.Path, "err", err)
		w.Header().Set("WWW-Authenticate", "Bearer")
		writeError(w, r, s.log, err)
		return
	}
	addLog(r.Context(), LogCustomer, customer)
	budget := s.reads
	if r.Method == http.MethodPost && r.URL.Path == "/v1/transfers" {
		budget = s.transfers
	}
	if ok, retryAfter := budget.allow(customer, time.Now()); !ok {
		s.log.InfoContext(r.Context(), "customer rate limited", "method", r.Method, "path", r.URL.Path)
		writeRateLimited(w, r, s, retryAfter)
		return
	}
	s.mux.ServeHTTP(w, r.WithContext(WithCustomer(r.Context(), customer)))
}

func customerOf(r *http.Request) string {
	c, _ := CustomerFrom(r.Context())
	return c // ServeHTTP put it there
}

// transferFailed is the answer to a transfer core refused: the error, and
// the transfer with its reason so the app can show it.
type transferFailed struct {
	errorBody
	Transfer channel.Transfer `json:"transfer"`
}

func (s *ChannelServer) submit(w http.ResponseWriter, r *http.Request) {
	keys := r.Header.Values("Idempotency-Key")
	if len(keys) != 1 {
		writeError(w, r, s.log, banksync.Errorf(banksync.EINVALID, "exactly one Idempotency-Key header is required"))
		return
	}
	var req struct {
		FromAccount *string `json:"from_account"`
		ToAccount   *string `json:"to_account"`
		Amount      *int64  `json:"amount"`
		Memo        string  `json:"memo"`
	}
	if err := decode(w, r, &req); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if err := required("from_account", req.FromAccount != nil, "to_account", req.ToAccount != nil,
		"amount", req.Amount != nil); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	addLog(r.Context(), LogAccount, *req.FromAccount)
	t, err := s.ch.Submit(r.Context(), channel.SubmitRequest{
		Customer: customerOf(r), IdempotencyKey: keys[0], FromAccount: *req.FromAccount,
		ToAccount: *req.ToAccount, Amount: *req.Amount, Memo: req.Memo,
	})
	addLog(r.Context(), LogTransferID, t.ID)
	switch {
	case banksync.ErrorCode(err) == banksync.EFAILED:
		body := transferFailed{Transfer: t}
		body.Error.Code = banksync.EFAILED
		body.Error.Message = banksync.ErrorMessage(err)
		writeJSON(w, statusOf[banksync.EFAILED], body)
	case err != nil:
		writeError(w, r, s.log, err)
	case t.State == channel.StateCompleted:
		writeJSON(w, http.StatusOK, t)
	case t.State == channel.StatePending:
		writeJSON(w, http.StatusAccepted, t)
	default:
		writeError(w, r, s.log, banksync.Errorf(banksync.EINTERNAL, "transfer %s answered in state %q", t.ID, t.State))
	}
}

func (s *ChannelServer) transfer(w http.ResponseWriter, r *http.Request) {
	addLog(r.Context(), LogTransferID, r.PathValue("id"))
	t, err := s.ch.Transfer(r.Context(), customerOf(r), r.PathValue("id"))
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *ChannelServer) accounts(w http.ResponseWriter, r *http.Request) {
	accts, err := s.ch.Accounts(r.Context(), customerOf(r))
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if accts == nil {
		accts = []channel.AccountState{}
	}
	writeJSON(w, http.StatusOK, struct {
		Accounts []channel.AccountState `json:"accounts"`
	}{accts})
}

func (s *ChannelServer) history(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if len(q["limit"]) > 1 || len(q["cursor"]) > 1 || len(q["kind"]) > 1 || len(q["q"]) > 1 {
		writeError(w, r, s.log, banksync.Errorf(banksync.EINVALID, "limit, cursor, kind and q may be given once each"))
		return
	}
	filter := channel.HistoryFilter{Direction: q.Get("kind"), Text: q.Get("q")}
	if filter.Direction == "all" {
		filter.Direction = channel.DirectionAll
	}
	limit := channel.HistoryPageDefault
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > channel.HistoryPageMax {
			writeError(w, r, s.log, banksync.Errorf(banksync.EINVALID, "limit must be a whole number between 1 and %d", channel.HistoryPageMax))
			return
		}
		limit = n
	}
	addLog(r.Context(), LogAccount, r.PathValue("id"))
	page, err := s.ch.FilteredHistory(r.Context(), s.cursors, customerOf(r), r.PathValue("id"), q.Get("cursor"), limit, filter)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *ChannelServer) sync(w http.ResponseWriter, r *http.Request) {
	addLog(r.Context(), LogAccount, r.PathValue("id"))
	st, err := s.ch.ManualSync(r.Context(), customerOf(r), r.PathValue("id"))
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// Route names the route r takes, such as "POST /v1/transfers", for metrics;
// "/" for a request no route takes.
func (s *ChannelServer) Route(r *http.Request) string {
	_, pattern := s.mux.Handler(r)
	return pattern
}

// authenticate returns the customer a request is from: its bearer token's
// subject, or, for GET /v1/accounts/{id}/stream with no Authorization
// header, the customer its ticket query parameter was made for (an
// EventSource cannot send a header, and a bearer token in a URL would land
// in every proxy's access log).
func (s *ChannelServer) authenticate(r *http.Request) (string, error) {
	account, stream := streamAccount(r.URL.Path)
	if tickets := r.URL.Query()["ticket"]; stream && r.Method == http.MethodGet && len(tickets) == 1 && r.Header.Get("Authorization") == "" {
		return s.cursors.CheckStreamTicket(tickets[0], account, time.Now())
	}
	return s.auth.Authenticate(r)
}

// streamAccount returns the account of a /v1/accounts/{id}/stream path.
func streamAccount(path string) (string, bool) {
	id, ok := strings.CutPrefix(path, "/v1/accounts/")
	if !ok {
		return "", false
	}
	id, ok = strings.CutSuffix(id, "/stream")
	return id, ok && id != "" && !strings.Contains(id, "/")
}

// streamTicket answers POST /v1/accounts/{id}/stream-ticket with a ticket
// that opens the account's live stream: {"ticket", "expires_at"}.
func (s *ChannelServer) streamTicket(w http.ResponseWriter, r *http.Request) {
	account := r.PathValue("id")
	addLog(r.Context(), LogAccount, account)
	ticket, exp, err := s.ch.StreamTicket(r.Context(), s.cursors, customerOf(r), account)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Ticket    string    `json:"ticket"`
		ExpiresAt time.Time `json:"expires_at"`
	}{ticket, exp.UTC()})
}
