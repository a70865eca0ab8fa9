package http

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"banksync"
	"banksync/channel"
	"banksync/kafka"
)

// DeadLetterView is one dead letter as the admin API shows it. A letter
// that cannot be decoded has Undecodable set, its account taken from its
// key (when that is an account id) and no seq or event id.
type DeadLetterView struct {
	AccountID     string       `json:"account_id"`
	Key           string       `json:"key"`
	Seq           int64        `json:"seq"`
	EventID       int64        `json:"event_id"`
	Undecodable   string       `json:"undecodable,omitempty"` // why its value is no event this version reads
	Reason        string       `json:"reason"`
	Attempts      int          `json:"attempts"`
	At            time.Time    `json:"dead_lettered_at,omitzero"`
	FromPartition int32        `json:"from_partition"`
	FromOffset    int64        `json:"from_offset"`
	Partition     int32        `json:"dlq_partition"`
	Offset        int64        `json:"dlq_offset"`
	Headers       []HeaderView `json:"headers"`
	State         string       `json:"state"`      // waiting, held, replayed or parked
	Replayed      bool         `json:"replayed"`   // a replay is done with it: applied (replayed) or parked
	InHistory     bool         `json:"in_history"` // the account's history holds its entry, however it got there
}

// HeaderView is one header of a dead letter's record.
type HeaderView struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// DeadLetters is what the admin API needs of the dead-letter topic.
type DeadLetters interface {
	List(ctx context.Context) ([]DeadLetterView, error)
	// Replay re-applies letters: all not yet replayed (account ""), or one
	// account's.
	Replay(ctx context.Context, account string) (kafka.ReplayResult, error)
}

// AdminConfig wires the channel's operator API. Without a Token the API is
// off: every call is refused. What else is missing is answered unavailable
// (the dead letters) or left out of the overview.
type AdminConfig struct {
	// Token is the operators' bearer token. It must not be the service
	// token the channel uses at core: the operations page keeps it in a
	// browser, and core's token can book money.
	Token       string
	DeadLetters DeadLetters      // nil when the channel consumes no Kafka
	Channel     *channel.Channel // pending transfers, stale accounts, applied rate, reconciler
	Consumer    ConsumerLag      // nil when the channel consumes no Kafka
	Core        *CoreClient      // core's outbox backlog
	Logger      *slog.Logger
}

// ConsumerLag is what the overview needs of the Kafka consumer.
type ConsumerLag interface {
	Lag(ctx context.Context) (kafka.GroupLag, error)
}

// AdminServer serves the channel's operator API under /admin/v1/, guarded by
// the admin token.
type AdminServer struct {
	cfg     AdminConfig
	replica string
	token   []byte
	log     *slog.Logger
	mux     *http.ServeMux
}

// NewAdminServer returns the admin API.
func NewAdminServer(cfg AdminConfig) *AdminServer {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &AdminServer{cfg: cfg, token: []byte(cfg.Token), log: cfg.Logger, mux: http.NewServeMux(), replica: replicaName()}
	s.mux.HandleFunc("GET /admin/v1/overview", s.overview)
	s.mux.HandleFunc("GET /admin/v1/dlq", s.list)
	s.mux.HandleFunc("POST /admin/v1/dlq/replay", s.replay)
	s.mux.HandleFunc("/", NoRoute(s.mux, s.log))
	return s
}

func (s *AdminServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !bearerMatches(r, s.token) { // an empty token matches nothing
		w.Header().Set("WWW-Authenticate", `Bearer realm="banksync-admin"`)
		writeError(w, r, s.log, banksync.Errorf(banksync.EUNAUTHORIZED, "a valid admin token is required"))
		return
	}
	s.mux.ServeHTTP(w, r)
}

// overviewPartTimeout bounds each remote part of the overview (the lag from
// Kafka, the backlog from core), so one slow part does not hold the page.
const overviewPartTimeout = 2 * time.Second

// Overview is what the operations page shows, in one answer. A part that
// could not be read carries its error and the rest is still shown.
type Overview struct {
	At               time.Time     `json:"at"`
	Replica          string        `json:"replica"`  // the process that answered: applied and reconciler are its own
	Consumer         *ConsumerView `json:"consumer"` // null when the channel consumes no Kafka
	Outbox           OutboxView    `json:"outbox"`
	channel.Overview               // applied, pending transfers, stale accounts, reconciler
}

// ConsumerView is the consumer group's lag, or why it could not be read.
type ConsumerView struct {
	kafka.GroupLag
	Error string `json:"error,omitempty"`
}

// OutboxView is core's outbox backlog, or why it could not be read.
type OutboxView struct {
	Backlog *int64 `json:"backlog"` // null when core did not answer
	Error   string `json:"error,omitempty"`
}

func (s *AdminServer) overview(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Channel == nil {
		writeError(w, r, s.log, banksync.Errorf(banksync.EUNAVAILABLE, "this server has no channel to show"))
		return
	}
	o := Overview{At: time.Now().UTC(), Replica: s.replica}
	var wg sync.WaitGroup
	if s.cfg.Consumer != nil {
		o.Consumer = &ConsumerView{}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), overviewPartTimeout)
			defer cancel()
			lag, err := s.cfg.Consumer.Lag(ctx)
			o.Consumer.GroupLag = lag
			if err != nil {
				o.Consumer.Error = err.Error()
			}
		})
	}
	if s.cfg.Core != nil {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), overviewPartTimeout)
			defer cancel()
			ob, err := s.cfg.Core.Outbox(ctx)
			if err != nil {
				o.Outbox.Error = banksync.ErrorMessage(err)
				return
			}
			o.Outbox.Backlog = &ob.Backlog
		})
	} else {
		o.Outbox.Error = "core is not configured"
	}
	ch, err := s.cfg.Channel.Overview(r.Context())
	wg.Wait()
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	o.Overview = ch
	writeJSON(w, http.StatusOK, o)
}

// deadLetters is the dead-letter topic, or an error when there is none.
func (s *AdminServer) deadLetters() (DeadLetters, error) {
	if s.cfg.DeadLetters == nil {
		return nil, banksync.Errorf(banksync.EUNAVAILABLE, "this channel consumes no Kafka topic")
	}
	return s.cfg.DeadLetters, nil
}

func (s *AdminServer) list(w http.ResponseWriter, r *http.Request) {
	dlq, err := s.deadLetters()
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	letters, err := dlq.List(r.Context())
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
	dlq, err := s.deadLetters()
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	addLog(r.Context(), LogAccount, req.Account)
	res, err := dlq.Replay(r.Context(), req.Account)
	if err != nil {
		s.log.WarnContext(r.Context(), "dead-letter replay stopped", "applied", res.Applied, "parked", res.Parked, "held", res.Held, "err", err)
		writeError(w, r, s.log, banksync.Errorf(banksync.EUNAVAILABLE, "replay stopped after %d letters applied: letters still fail to apply (is the history database or core down?)", res.Applied))
		return
	}
	s.log.InfoContext(r.Context(), "dead letters replayed", "applied", res.Applied, "parked", res.Parked, "held", res.Held)
	writeJSON(w, http.StatusOK, struct {
		Applied int `json:"applied"`
		Parked  int `json:"parked"`
		Held    int `json:"held"`
		Skipped int `json:"skipped"`
	}{res.Applied, res.Parked, res.Held, res.Skipped})
}

// replicaName names this process among the channel's replicas: host and pid.
func replicaName() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown-host"
	}
	return fmt.Sprintf("%s/%d", host, os.Getpid())
}

// Route names the route r takes, such as "POST /v1/transfers", for metrics;
// "/" for a request no route takes.
func (s *AdminServer) Route(r *http.Request) string {
	_, pattern := s.mux.Handler(r)
	return pattern
}
