package webui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"sync"
)

//go:embed page.html style.css app.js
var files embed.FS

// Placeholders in page.html replaced by the inlined style sheet and script.
const (
	stylePlaceholder  = "<!--STYLE-->"
	scriptPlaceholder = "<!--SCRIPT-->"
)

// page is the built page: the HTML with its style and script inlined, and
// the Content-Security-Policy that admits exactly those two.
type page struct {
	html []byte
	csp  string
}

// buildPage assembles the page from the embedded files.
func buildPage() (*page, error) {
	html, err := files.ReadFile("page.html")
	if err != nil {
		return nil, err
	}
	css, err := files.ReadFile("style.css")
	if err != nil {
		return nil, err
	}
	js, err := files.ReadFile("app.js")
	if err != nil {
		return nil, err
	}
	// An inlined file must not be able to close its own element early.
	if bytes.Contains(bytes.ToLower(css), []byte("</style")) {
		return nil, fmt.Errorf("webui: style.css contains </style")
	}
	if bytes.Contains(bytes.ToLower(js), []byte("</script")) || bytes.Contains(js, []byte("<!--")) {
		return nil, fmt.Errorf("webui: app.js contains </script or <!--")
	}
	for _, ph := range []string{stylePlaceholder, scriptPlaceholder} {
		if n := bytes.Count(html, []byte(ph)); n != 1 {
			return nil, fmt.Errorf("webui: page.html has %d %s placeholders, want 1", n, ph)
		}
	}
	html = bytes.Replace(html, []byte(stylePlaceholder), concat("<style>", css, "</style>"), 1)
	html = bytes.Replace(html, []byte(scriptPlaceholder), concat("<script>", js, "</script>"), 1)
	return &page{html: html, csp: policy(hash(js), hash(css))}, nil
}

func concat(open string, body []byte, end string) []byte {
	out := make([]byte, 0, len(open)+len(body)+len(end))
	return append(append(append(out, open...), body...), end...)
}

// hash is a CSP hash source for an inline element's content.
func hash(b []byte) string {
	sum := sha256.Sum256(b)
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// policy is the page's Content-Security-Policy given the hash sources of
// its one inline script and one inline style sheet. Nothing else may run
// or load: no other script (inline, event handler attribute, eval or
// remote), no style attribute, no frame, no form target, no base URL; data
// may only be fetched from the page's own origin; Trusted Types turn any
// string assignment to an HTML sink (innerHTML …) into an error.
func policy(scriptHash, styleHash string) string {
	return "default-src 'none'; script-src " + scriptHash + "; style-src " + styleHash +
		"; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'" +
		"; frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'"
}

var build = sync.OnceValues(buildPage)

// Handler serves the page (GET and HEAD; other methods get 405). It panics
// if the embedded files are inconsistent, which the package's tests rule
// out.
func Handler() http.Handler {
	p, err := build()
	if err != nil {
		panic(err)
	}
	length := strconv.Itoa(len(p.html))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", p.csp)
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Length", length)
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(p.html)
	})
}
