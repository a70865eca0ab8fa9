package http

import (
	"log/slog"
	"net/http"
	"strings"

	"banksync"
)

// eMethodNotAllowed answers a path the API has, asked with a method it does
// not take there.
const eMethodNotAllowed = "method_not_allowed"

// NoRoute answers what none of mux's routes took: 405 method_not_allowed,
// with Allow, when the path is served for other methods; else 404
// not_found. Mount it at "/" of mux.
func NoRoute(mux *http.ServeMux, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if allow := allowedMethods(mux, r); len(allow) > 0 {
			methodNotAllowed(w, r, log, allow)
			return
		}
		writeError(w, r, log, banksync.Errorf(banksync.ENOTFOUND, "no such endpoint"))
	}
}

// allowedMethods lists the methods mux has a route other than its
// catch-all for, at r's path.
func allowedMethods(mux *http.ServeMux, r *http.Request) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe := *r
		probe.Method = m
		if _, pattern := mux.Handler(&probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	return allow
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request, log *slog.Logger, allow []string) {
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeError(w, r, log, banksync.Errorf(eMethodNotAllowed, "%s is not allowed here; this path takes %s", r.Method, strings.Join(allow, ", ")))
}
