package http

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// The OpenAPI 3.0 documents of the APIs, served as they are written.
// openapi_test.go checks every route of the real servers against them.
//
//go:embed openapi/*.yaml
var openAPIDocuments embed.FS

// CoreOpenAPI serves the core API's OpenAPI document (openapi/core.yaml).
func CoreOpenAPI() http.Handler { return openAPIDocument("openapi/core.yaml") }

// ChannelOpenAPI serves the OpenAPI document of the channel's customer API
// and its operator API under /admin/v1 (openapi/channel.yaml).
func ChannelOpenAPI() http.Handler { return openAPIDocument("openapi/channel.yaml") }

// openAPIDocument serves one embedded document to GET and HEAD, with an
// ETag so a client can keep its copy until the binary changes. Another
// method is answered 405, as the APIs answer a method a path does not take.
func openAPIDocument(name string) http.Handler {
	doc, err := openAPIDocuments.ReadFile(name)
	if err != nil {
		panic(fmt.Sprintf("http: embedded OpenAPI document %s: %v", name, err)) // a build without it is broken
	}
	sum := sha256.Sum256(doc)
	etag := `"` + hex.EncodeToString(sum[:16]) + `"`
	log := slog.New(slog.DiscardHandler)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, r, log, []string{http.MethodGet, http.MethodHead})
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		w.Header().Set("ETag", etag)
		w.Header().Set("Cache-Control", "no-cache") // revalidate: a new binary may serve a new document
		http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(doc))
	})
}
