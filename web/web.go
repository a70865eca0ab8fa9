// Package web serves banksync's browser pages: the customer app at /app/ and
// the operations page at /ops/, with their stylesheets and scripts under
// /assets/. The files are embedded in the binary; there is no build step.
//
// Mount the handler for the three prefixes, for example
//
//	h := web.Handler()
//	mux.Handle("/app/", h)
//	mux.Handle("/ops/", h)
//	mux.Handle("/assets/", h)
//
// It expects the full request path (do not strip the prefix).
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"sync"
	"time"
)

//go:embed static
var static embed.FS

// Security headers set on every response, found or not.
const (
	contentSecurityPolicy = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
)

// contentTypes are the only kinds of file served; any other file is not.
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

type file struct {
	name  string
	body  []byte
	ctype string
	etag  string
}

// files maps request paths to embedded files; it is built once.
var files = sync.OnceValue(func() map[string]file {
	m := map[string]file{}
	add := func(urlPath, name string) {
		body, err := static.ReadFile(name)
		if err != nil {
			panic("web: embedded file missing: " + name)
		}
		ctype, ok := contentTypes[path.Ext(name)]
		if !ok {
			return
		}
		sum := sha256.Sum256(body)
		m[urlPath] = file{name: path.Base(name), body: body, ctype: ctype, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
	}
	add("/app/", "static/app.html")
	add("/ops/", "static/ops.html")
	entries, err := fs.ReadDir(static, "static/assets")
	if err != nil {
		panic("web: embedded assets missing: " + err.Error())
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			add("/assets/"+e.Name(), "static/assets/"+e.Name())
		}
	}
	return m
})

// Handler serves the app page at /app/, the operations page at /ops/ and
// their assets under /assets/. Any other path answers 404; /app and /ops
// redirect to the pages. Only GET and HEAD are allowed.
func Handler() http.Handler {
	m := files()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")

		p := r.URL.Path
		f, ok := m[p]
		if !ok {
			if p == "/app" || p == "/ops" {
				if r.Method == http.MethodGet || r.Method == http.MethodHead {
					http.Redirect(w, r, p+"/", http.StatusMovedPermanently)
					return
				}
			}
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "405 method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.Set("Content-Type", f.ctype)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", f.etag)
		if f.ctype == contentTypes[".html"] {
			h.Set("X-Frame-Options", "DENY") // for browsers without frame-ancestors
		}
		http.ServeContent(w, r, f.name, time.Time{}, bytes.NewReader(f.body))
	})
}
