package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	bhttp "banksync/http"
	"banksync/kafka"
	"banksync/metrics"
)

// Server timeouts: slow clients cannot hold connections open.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 15 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 120 * time.Second
	headerBytesMax    = 16 << 10
	shutdownTimeout   = 15 * time.Second
	relayFlushTimeout = 5 * time.Second
	// kafkaReachTimeout bounds the wait at startup for a broker to answer:
	// long enough for a broker started at the same moment to come up, short
	// enough that a wrong --kafka fails the start rather than logging
	// warnings for ever (clients connect lazily and retry without end).
	kafkaReachTimeout = 10 * time.Second
)

// reachKafka waits, within kafkaReachTimeout, for one of conn's brokers to
// answer; a refused credential or certificate fails at once. Stopped by ctx
// (a signal), it returns ctx's error, a clean exit.
func reachKafka(ctx context.Context, conn kafka.Conn) error {
	reachCtx, cancel := context.WithTimeout(ctx, kafkaReachTimeout)
	defer cancel()
	err := kafka.Reach(reachCtx, conn)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case reachCtx.Err() != nil:
		return fmt.Errorf("reach kafka %v (tried for %s): %w", conn.Brokers, kafkaReachTimeout, err)
	}
	return fmt.Errorf("reach kafka %v: %w", conn.Brokers, err)
}

// server is one HTTP server on its own address: a service's API, or its
// operator listener (--ops-listen).
type server struct {
	ln  net.Listener
	srv *http.Server
}

// serve listens on addr and serves h there — over TLS when tlsCfg is set —
// until shutdown; wg waits for it. Every request gets an id, an access
// line and its HTTP metrics, named by route.
func serve(wg *sync.WaitGroup, name, addr string, h http.Handler, route func(*http.Request) string,
	tlsCfg *tls.Config, m *metrics.HTTP, log *slog.Logger) (*server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("serve %s: %w", name, err)
	}
	s := &server{ln: ln, srv: &http.Server{
		Handler: bhttp.Observe(h, bhttp.ObserveConfig{Logger: log, Route: route, Done: m.Observe,
			Quiet: map[string]bool{"GET /healthz": true, "GET /readyz": true, "GET /metrics": true}}),
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    headerBytesMax,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}
	wg.Go(func() {
		// ServeTLS wraps ln, which keeps the address, and offers HTTP/2;
		// Shutdown closes the wrapped listener as it would the plain one.
		var err error
		if tlsCfg != nil {
			err = s.srv.ServeTLS(ln, "", "")
		} else {
			err = s.srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("server stopped", "server", name, "addr", ln.Addr().String(), "err", err)
		}
	})
	return s, nil
}

// Addr is the address s listens on; "" for no server.
func (s *server) Addr() string {
	if s == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// shutdown stops every server taking requests at once and waits, within
// one shutdownTimeout for them all, for those in flight. Nil servers are
// skipped.
func shutdown(servers ...*server) error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		if s != nil {
			wg.Go(func() { errs[i] = s.srv.Shutdown(ctx) })
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// muxRoute names a request's route by mux's pattern, or by sub's own Route
// when the pattern hands it to one of subs (the APIs, whose catch-all
// pattern would say nothing).
func muxRoute(mux *http.ServeMux, subs ...interface {
	http.Handler
	Route(*http.Request) string
}) func(*http.Request) string {
	return func(r *http.Request) string {
		h, pattern := mux.Handler(r)
		for _, s := range subs {
			if h == http.Handler(s) {
				return s.Route(r)
			}
		}
		return pattern
	}
}

// abort closes every server at once: listeners and connections, requests
// in flight cut off. Nil servers are skipped.
func abort(servers ...*server) error {
	var errs []error
	for _, s := range servers {
		if s != nil {
			errs = append(errs, s.srv.Close())
		}
	}
	return errors.Join(errs...)
}

// running is what a core and a channel replica both run: their HTTP
// servers and the loops behind them.
type running struct {
	api  *server
	ops  *server // OpsListen's, if set
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// background is the context the loops run under until halt.
func (r *running) background() context.Context {
	ctx, stop := context.WithCancel(context.Background())
	r.stop = stop
	return ctx
}

// halt stops taking requests — finishing those in flight, or, abruptly,
// cutting them off — then stops the loops, and also, while they stop, runs
// the others' stop functions, and waits for them all.
func (r *running) halt(abruptly bool, others ...func()) error {
	var err error
	if abruptly {
		err = abort(r.api, r.ops)
	} else {
		err = shutdown(r.api, r.ops)
	}
	if r.stop != nil {
		r.stop()
	}
	for _, stop := range others {
		stop()
	}
	r.wg.Wait()
	return err
}

// Addr is the address of the service's API.
func (r *running) Addr() string { return r.api.Addr() }

// OpsAddr is the address of its operator listener; "" without one.
func (r *running) OpsAddr() string { return r.ops.Addr() }
