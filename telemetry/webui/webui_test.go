package webui

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, method string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest(method, "/metrics", nil))
	return rec.Result()
}

func body(t *testing.T) string {
	t.Helper()
	resp := get(t, http.MethodGet)
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	scriptRE = regexp.MustCompile(`(?is)<script\b([^>]*)>(.*?)</script\s*>`)
	styleRE  = regexp.MustCompile(`(?is)<style\b([^>]*)>(.*?)</style\s*>`)
)

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// TestHeaders checks every security header and the exact policy, with the
// hashes computed here from the served page's own inline elements.
func TestHeaders(t *testing.T) {
	t.Parallel()
	resp := get(t, http.MethodGet)
	html := body(t)
	scripts := scriptRE.FindAllStringSubmatch(html, -1)
	styles := styleRE.FindAllStringSubmatch(html, -1)
	if len(scripts) != 1 || len(styles) != 1 {
		t.Fatalf("want exactly one inline <script> and one <style>, got %d and %d", len(scripts), len(styles))
	}
	wantCSP := "default-src 'none'; script-src " + sha(scripts[0][2]) + "; style-src " + sha(styles[0][2]) +
		"; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'" +
		"; require-trusted-types-for 'script'; trusted-types 'none'"
	want := map[string]string{
		"Content-Type":            "text/html; charset=utf-8",
		"Content-Security-Policy": wantCSP,
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"Cache-Control":           "no-store",
		"X-Frame-Options":         "DENY",
	}
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
	if cl := resp.Header.Get("Content-Length"); cl == "" || cl == "0" {
		t.Errorf("Content-Length %q", cl)
	}
}

func TestHeadAndMethods(t *testing.T) {
	t.Parallel()
	resp := get(t, http.MethodHead)
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || len(b) != 0 || resp.Header.Get("Content-Security-Policy") == "" {
		t.Errorf("HEAD: %d, %d body bytes, CSP %q", resp.StatusCode, len(b), resp.Header.Get("Content-Security-Policy"))
	}
	resp = get(t, http.MethodPost)
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// TestNothingInlineOutsideThePolicy: no event handler attributes, no
// javascript: URLs, no style attributes (a style hash does not cover
// them), no script or style but the two hashed ones, and no external
// resource (the page works offline and behind any proxy prefix).
func TestNothingInlineOutsideThePolicy(t *testing.T) {
	t.Parallel()
	html := body(t)
	// The markup outside the inline script and style.
	markup := scriptRE.ReplaceAllString(styleRE.ReplaceAllString(html, "<style></style>"), "<script></script>")
	checks := []struct {
		re   string
		what string
	}{
		{`(?i)\son[a-z]+\s*=`, "inline event handler attribute"},
		{`(?i)javascript:`, "javascript: URL"},
		{`(?i)\sstyle\s*=`, "style attribute"},
		{`(?i)<script\b[^>]*\ssrc\s*=`, "external script"},
		{`(?i)<link\b[^>]*rel\s*=\s*"?stylesheet`, "external style sheet"},
		{`(?i)(src|href|action)\s*=\s*"?(https?:)?//`, "absolute or protocol-relative URL"},
		{`(?i)<(iframe|object|embed|form|base)\b`, "iframe/object/embed/form/base element"},
	}
	for _, c := range checks {
		if m := regexp.MustCompile(c.re).FindString(markup); m != "" {
			t.Errorf("page has a %s: %q", c.what, m)
		}
	}
	for _, want := range []string{`href="api/debug/pprof/"`, `href="api/metrics"`, `id="worker-rows"`, `id="banner"`} {
		if !strings.Contains(markup, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	// Every sortable column the issue names has a header button.
	for _, col := range []string{"cpu_percent", "rss_bytes", "idle_seconds", "uptime_seconds"} {
		if !regexp.MustCompile(`<th [^>]*data-sort="` + col + `"[^>]*><button type="button">`).MatchString(markup) {
			t.Errorf("no sortable header for %s", col)
		}
	}
	css := styleRE.FindStringSubmatch(html)[2]
	if m := regexp.MustCompile(`(?i)@import|url\(`).FindString(css); m != "" {
		t.Errorf("style sheet loads a resource: %q", m)
	}
}

// TestScriptNeverParsesData is the unit-level XSS guard: the script has no
// HTML sink and no string-to-code path, so a worker-controlled string can
// only ever become text. (The browser test renders hostile strings for
// real; Trusted Types in the policy turn a sink that slips in into an
// error instead of an injection.)
func TestScriptNeverParsesData(t *testing.T) {
	t.Parallel()
	js, err := files.ReadFile("app.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, sink := range []string{
		"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "createContextualFragment",
		"DOMParser", "srcdoc", "eval(", "new Function", "setTimeout('", `setTimeout("`, "setInterval('",
		`setInterval("`, ".html(", "javascript:",
	} {
		if strings.Contains(string(js), sink) {
			t.Errorf("app.js uses %q", sink)
		}
	}
	// Attributes the script sets: only on elements it creates, and the
	// only dynamic ones are fixed SVG geometry names.
	for _, m := range regexp.MustCompile(`setAttribute\(\s*([^,]+),`).FindAllStringSubmatch(string(js), -1) {
		switch strings.TrimSpace(m[1]) {
		case "k", "'aria-label'", "'aria-sort'", "'aria-pressed'", "'aria-hidden'", "'d'":
		default:
			t.Errorf("app.js sets attribute %s; check it cannot carry markup or script", m[1])
		}
	}
	if !strings.Contains(string(js), "textContent") {
		t.Error("app.js does not use textContent")
	}
}

// TestBuildInlinesOnce: the style sheet and the script are inlined
// exactly once each, and nothing can close their elements early (Build
// refuses such files).
func TestBuildInlinesOnce(t *testing.T) {
	t.Parallel()
	p, err := buildPage()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(p.html), "<script>") != 1 || strings.Count(string(p.html), "</script>") != 1 {
		t.Error("inlined script is not exactly one element")
	}
	if strings.Contains(string(p.html), stylePlaceholder) || strings.Contains(string(p.html), scriptPlaceholder) {
		t.Error("placeholder left in the page")
	}
	if got := policy("'sha256-a'", "'sha256-b'"); !strings.Contains(got, "script-src 'sha256-a'; style-src 'sha256-b';") {
		t.Errorf("policy: %s", got)
	}
}
