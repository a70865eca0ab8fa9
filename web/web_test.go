package web

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func serve(t *testing.T, method, target string, header http.Header) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, req)
	return rec.Result()
}

func checkSecurityHeaders(t *testing.T, target string, res *http.Response) {
	t.Helper()
	want := map[string]string{
		"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
	}
	for k, v := range want {
		if got := res.Header.Get(k); got != v {
			t.Errorf("%s: %s = %q, want %q", target, k, got, v)
		}
	}
}

func TestPagesAndAssets(t *testing.T) {
	cases := []struct {
		path, ctype, contains string
	}{
		{"/app/", "text/html; charset=utf-8", `id="history"`},
		{"/app/?customer=alice", "text/html; charset=utf-8", `id="transfer-form"`},
		{"/ops/", "text/html; charset=utf-8", `id="dead-letters"`},
		{"/assets/style.css", "text/css; charset=utf-8", ".tx"},
		{"/assets/app.js", "text/javascript; charset=utf-8", "Idempotency-Key"},
		{"/assets/ops.js", "text/javascript; charset=utf-8", "/admin/v1/overview"},
		{"/assets/common.js", "text/javascript; charset=utf-8", "export"},
		{"/assets/icon.svg", "image/svg+xml", "<svg"},
	}
	for _, c := range cases {
		res := serve(t, http.MethodGet, c.path, nil)
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200", c.path, res.StatusCode)
			continue
		}
		if got := res.Header.Get("Content-Type"); got != c.ctype {
			t.Errorf("GET %s: Content-Type %q, want %q", c.path, got, c.ctype)
		}
		if got := res.Header.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("GET %s: Cache-Control %q, want no-cache", c.path, got)
		}
		if !strings.Contains(string(body), c.contains) {
			t.Errorf("GET %s: body lacks %q", c.path, c.contains)
		}
		checkSecurityHeaders(t, c.path, res)

		// HEAD answers the same headers without a body.
		head := serve(t, http.MethodHead, c.path, nil)
		if head.StatusCode != http.StatusOK || head.Header.Get("Content-Type") != c.ctype {
			t.Errorf("HEAD %s: status %d, Content-Type %q", c.path, head.StatusCode, head.Header.Get("Content-Type"))
		}
		if b, _ := io.ReadAll(head.Body); len(b) != 0 {
			t.Errorf("HEAD %s: %d body bytes", c.path, len(b))
		}

		// The ETag revalidates.
		etag := res.Header.Get("ETag")
		if etag == "" {
			t.Errorf("GET %s: no ETag", c.path)
			continue
		}
		again := serve(t, http.MethodGet, c.path, http.Header{"If-None-Match": {etag}})
		if again.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with If-None-Match: status %d, want 304", c.path, again.StatusCode)
		}
	}
}

func TestUnknownPathsAreNotFound(t *testing.T) {
	for _, p := range []string{
		"/", "/index.html", "/app/index.html", "/app/x", "/app/assets/app.js", "/ops/x",
		"/assets/", "/assets", "/assets/nope.js", "/assets/../app.html", "/assets/%2e%2e/app.html",
		"/static/app.html", "/assets/static/assets/app.js", "/v1/accounts",
	} {
		res := serve(t, http.MethodGet, p, nil)
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", p, res.StatusCode)
		}
		checkSecurityHeaders(t, p, res)
	}
}

func TestRedirectsAndMethods(t *testing.T) {
	for _, p := range []string{"/app", "/ops"} {
		res := serve(t, http.MethodGet, p, nil)
		if res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != p+"/" {
			t.Errorf("GET %s: status %d Location %q, want 301 to %s/", p, res.StatusCode, res.Header.Get("Location"), p)
		}
	}
	res := serve(t, http.MethodPost, "/app/", nil)
	if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /app/: status %d Allow %q, want 405 with Allow: GET, HEAD", res.StatusCode, res.Header.Get("Allow"))
	}
	checkSecurityHeaders(t, "POST /app/", res)
}

// TestPagesFollowTheCSP checks what the policy would block: inline scripts,
// inline styles and handlers in the pages, and references to other origins.
func TestPagesFollowTheCSP(t *testing.T) {
	inlineScript := regexp.MustCompile(`<script(?:\s[^>]*)?>\s*[^<\s]`)
	scriptTag := regexp.MustCompile(`<script\b[^>]*>`)
	handler := regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	external := regexp.MustCompile(`(?i)(?:src|href)\s*=\s*["']?(?:https?:)?//`)
	for _, name := range []string{"static/app.html", "static/ops.html"} {
		b, err := static.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		for _, bad := range []struct {
			what string
			re   *regexp.Regexp
		}{
			{"inline script", inlineScript},
			{"inline event handler", handler},
			{"reference to another origin", external},
		} {
			if m := bad.re.FindString(s); m != "" {
				t.Errorf("%s: %s: %q", name, bad.what, m)
			}
		}
		for _, tag := range scriptTag.FindAllString(s, -1) {
			if !strings.Contains(tag, ` src="/assets/`) {
				t.Errorf("%s: script not loaded from /assets/: %s", name, tag)
			}
		}
		if strings.Contains(s, "style=") || strings.Contains(s, "<style") {
			t.Errorf("%s: inline style", name)
		}
	}
	// Scripts build the DOM from text, never from markup.
	err := fs.WalkDir(static, "static/assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(p) != ".js" {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("} {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s uses %s", p, bad)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestScriptsParse runs node --check on each script, as an ES module.
func TestScriptsParse(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not on PATH; scripts not syntax-checked")
	}
	dir := t.TempDir()
	entries, err := fs.ReadDir(static, "static/assets")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".js" {
			continue
		}
		b, err := static.ReadFile("static/assets/" + e.Name())
		if err != nil {
			t.Fatal(err)
		}
		// .mjs: node parses the file as a module whatever its version.
		p := filepath.Join(dir, strings.TrimSuffix(e.Name(), ".js")+".mjs")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(node, "--check", p).CombinedOutput()
		if err != nil {
			t.Errorf("node --check %s: %v\n%s", e.Name(), err, out)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no scripts found")
	}
}
