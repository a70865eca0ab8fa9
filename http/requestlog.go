package http

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"banksync"
)

// HeaderRequestID carries a request's id: taken from the caller when it is
// a sane one (so a gateway's id, or the channel's on its calls to core,
// follows the request), made up otherwise, and always echoed in the answer.
const HeaderRequestID = "X-Request-Id"

// Log attribute keys every service uses for the same things.
const (
	LogRequestID  = "request_id"
	LogCustomer   = "customer"
	LogAccount    = "account"
	LogTransferID = "transfer_id"
)

// logFields are the attributes a request has gathered so far: its id, then
// the customer once authenticated, the account and transfer it is about. A
// handler built by LogHandler puts them on every line logged with the
// request's context, and the access line carries them too.
type logFields struct {
	mu    sync.Mutex
	attrs []slog.Attr
}

type logFieldsKey struct{}

// addLog sets key to value on the request ctx belongs to; outside a request
// it does nothing. Every value is an id, so one that is not a valid id (a
// request's field not yet validated) is left out rather than logged.
func addLog(ctx context.Context, key, value string) {
	f, ok := ctx.Value(logFieldsKey{}).(*logFields)
	if !ok || !banksync.ValidID(value) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.attrs {
		if f.attrs[i].Key == key {
			f.attrs[i].Value = slog.StringValue(value)
			return
		}
	}
	f.attrs = append(f.attrs, slog.String(key, value))
}

func (f *logFields) snapshot() []slog.Attr {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.attrs)
}

// RequestID returns the id of the request ctx belongs to, or "".
func RequestID(ctx context.Context) string {
	f, ok := ctx.Value(logFieldsKey{}).(*logFields)
	if !ok {
		return ""
	}
	for _, a := range f.snapshot() {
		if a.Key == LogRequestID {
			return a.Value.String()
		}
	}
	return ""
}

// LogHandler wraps h so a line logged with a request's context carries the
// request's attributes, those the line does not set itself.
func LogHandler(h slog.Handler) slog.Handler { return contextHandler{h} }

type contextHandler struct{ slog.Handler }

func (h contextHandler) Handle(ctx context.Context, r slog.Record) error {
	if f, ok := ctx.Value(logFieldsKey{}).(*logFields); ok {
		have := map[string]bool{}
		r.Attrs(func(a slog.Attr) bool {
			have[a.Key] = true
			return true
		})
		r = r.Clone()
		for _, a := range f.snapshot() {
			if !have[a.Key] {
				r.AddAttrs(a)
			}
		}
	}
	return h.Handler.Handle(ctx, r)
}

func (h contextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return contextHandler{h.Handler.WithAttrs(attrs)}
}

func (h contextHandler) WithGroup(name string) slog.Handler {
	return contextHandler{h.Handler.WithGroup(name)}
}

// ObserveConfig says how Observe reports a server's requests.
type ObserveConfig struct {
	Logger *slog.Logger
	// Route names a request's route, such as "POST /v1/transfers".
	Route func(*http.Request) string
	// Quiet routes (probes, scrapes) are logged at debug level.
	Quiet map[string]bool
	// Done, if set, is told of every request answered (the HTTP metrics).
	Done func(route string, status int, took time.Duration)
}

// Observe wraps a server's handler: each request gets its id (the caller's
// X-Request-Id if it is 1-64 letters, digits or ._:-, else a new one),
// echoed in the answer and put on every log line of the request; when it is
// answered, one access line is logged — method, route, status, duration,
// and the request's attributes — and cfg.Done is told.
func Observe(next http.Handler, cfg ObserveConfig) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(HeaderRequestID)
		if !banksync.ValidID(id) {
			id = newRequestID()
		}
		w.Header().Set(HeaderRequestID, id)
		fields := &logFields{attrs: []slog.Attr{slog.String(LogRequestID, id)}}
		ctx := context.WithValue(r.Context(), logFieldsKey{}, fields)
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r.WithContext(ctx))
		took := time.Since(start)
		route := cfg.Route(r)
		level := slog.LevelInfo
		switch {
		case rec.status >= 500:
			level = slog.LevelWarn
		case cfg.Quiet[route]:
			level = slog.LevelDebug
		}
		cfg.Logger.LogAttrs(ctx, level, "request", slog.String("method", r.Method), slog.String("route", route),
			slog.Int("status", rec.status), slog.Duration("took", took))
		if cfg.Done != nil {
			cfg.Done(route, rec.status, took)
		}
	})
}

func newRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// statusRecorder remembers the status a handler answered with.
type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
