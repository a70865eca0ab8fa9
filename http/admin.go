package http

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"banksync"
)

// DeadLetterView is one dead letter as the admin API shows it.
type DeadLetterView struct {
	AccountID     string    `json:"account_id"`
	Seq           int64     `json:"seq"`
	EventID       int64     `json:"event_id"`
	Reason        string    `json:"reason"`
	Attempts      int       `json:"attempts"`
	At            time.Time `json:"dead_lettered_at,omitzero"`
	FromPartition int32     `json:"from_partition"`
	FromOffset    int64     `json:"from_offset"`
	Replayed      bool      `json:"replayed"`
}

// DeadLetters is what the admin API needs of the dead-letter topic.
type DeadLetters interface {
	List(ctx context.Context) ([]DeadLetterView, error)
	// Replay re-applies letters: all not yet replayed (account ""), or one
	// account's; it returns how many it applied.
	Replay(ctx context.Context, account string) (applied int, err error)
}

// AdminServer serves the channel's operator API under /admin/v1/, guarded by
// the service token.
type AdminServer struct {
	token []byte
	dlq   DeadLetters
	log   *slog.Logger
	mux   *http.ServeMux
}

// NewAdminServer returns the admin API. dlq may be nil when the channel
// consumes no Kafka: the DLQ endpoints then answer unavailable.
func NewAdminServer(serviceToken string, dlq DeadLetters, log *slog.Logger) *AdminServer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &AdminServer{token: []byte(serviceToken), dlq: dlq, log: log, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /admin/v1/dlq", s.list)
	s.mux.HandleFunc("POST /admin/v1/dlq/replay", s.replay)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, s.log, banksync.Errorf(banksync.ENOTFOUND, "no such endpoint"))
	})
	return s
}

func (s *AdminServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !bearerMatches(r, s.token) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="banksync-admin"`)
		writeError(w, r, s.log, banksync.Errorf(banksync.EUNAUTHORIZED, "a valid service token is required"))
		return
	}
	if s.dlq == nil {
		writeError(w, r, s.log, banksync.Errorf(banksync.EUNAVAILABLE, "this channel consumes no Kafka topic"))
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *AdminServer) list(w http.ResponseWriter, r *http.Request) {
	letters, err := s.dlq.List(r.Context())
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if letters == nil {
		letters = []DeadLetterView{}
	}
	writeJSON(w, http.StatusOK, struct {
		DeadLetters []DeadLetterView `json:"dead_letters"`
	}{letters})
}

func (s *AdminServer) replay(w http.ResponseWriter, r *http.Request) {
	var req struct {
		All     bool   `json:"all"`
		Account string `json:"account"`
	}
	if err := decode(w, r, &req); err != nil {
		writeError(w, r, s.log, err)
		return
	}
	if req.All == (req.Account != "") || (req.Account != "" && !banksync.ValidID(req.Account)) {
		writeError(w, r, s.log, banksync.Errorf(banksync.EINVALID, `give exactly one of "all": true and a valid "account"`))
		return
	}
	applied, err := s.dlq.Replay(r.Context(), req.Account)
	if err != nil {
		s.log.Warn("dead-letter replay stopped", "account", req.Account, "applied", applied, "err", err)
		writeError(w, r, s.log, banksync.Errorf(banksync.EUNAVAILABLE, "replay stopped after %d letters: a letter still fails to apply", applied))
		return
	}
	s.log.Info("dead letters replayed", "account", req.Account, "applied", applied)
	writeJSON(w, http.StatusOK, struct {
		Applied int `json:"applied"`
	}{applied})
}
