package http

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// healthCheckTimeout bounds each readiness check.
const healthCheckTimeout = 2 * time.Second

// Check is one readiness check: nil when the dependency is usable.
type Check func(ctx context.Context) error

// Healthz answers 200 while the process serves at all: the liveness probe.
func Healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

// Readyz runs every check at once and answers 200 when all pass, else 503;
// the body names each check's result: the readiness probe.
func Readyz(checks map[string]Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), healthCheckTimeout)
		defer cancel()
		var (
			mu      sync.Mutex
			wg      sync.WaitGroup
			results = make(map[string]string, len(checks))
			ready   = true
		)
		for name, check := range checks {
			wg.Go(func() {
				res := "ok"
				if err := check(ctx); err != nil {
					res = err.Error()
				}
				mu.Lock()
				defer mu.Unlock()
				results[name] = res
				ready = ready && res == "ok"
			})
		}
		wg.Wait()
		status, word := http.StatusOK, "ready"
		if !ready {
			status, word = http.StatusServiceUnavailable, "not ready"
		}
		writeJSON(w, status, struct {
			Status string            `json:"status"`
			Checks map[string]string `json:"checks"`
		}{word, results})
	})
}
