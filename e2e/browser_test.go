//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/workerscope/workerscope/telemetry/webui"
)

// chromiumPath finds Debian's chromium ($WORKERSCOPE_CHROMIUM or
// /usr/bin/chromium). Without it the test skips, unless
// WORKERSCOPE_E2E=required (as in CI), where that is a failure.
func chromiumPath(t *testing.T) string {
	t.Helper()
	path := os.Getenv("WORKERSCOPE_CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("WORKERSCOPE_E2E") == "required" {
			t.Fatalf("chromium %s: %v (apt-get install chromium)", path, err)
		}
		t.Skipf("chromium %s not installed (apt-get install chromium); skipping browser test", path)
	}
	return path
}

// browser is one headless Chromium tab and what the test watches in it.
type browser struct {
	ctx context.Context
	t   *testing.T

	authAnswers atomic.Int32 // Basic challenges answered
	mu          sync.Mutex
	console     []string // exceptions and console/browser errors
	exceptions  int
	dialogs     []string // alert/confirm/prompt messages (there must be none)
}

// recorder runs in every document before the page's own script (scripts
// the DevTools protocol adds are not subject to the page's CSP): it keeps
// every CSP violation and turns alert() into a record instead of a dialog.
const recorder = `
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || '') + ' ' + (e.sample || ''));
});
window.__alerts = [];
window.alert = (m) => { window.__alerts.push(String(m)); };
`

// newBrowser starts Chromium with exactly the flags a machine without
// outside network needs, and a fresh profile. With password != "" it
// answers HTTP Basic challenges the way a user fills in the browser's
// sign-in dialog (the Fetch domain); with "" it cancels them, as a user
// who dismisses the dialog.
func newBrowser(t *testing.T, password string) *browser {
	t.Helper()
	exe := chromiumPath(t)
	var out strings.Builder
	var outMu sync.Mutex
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(t.TempDir()),
		// Nothing else may try the network or a keyring.
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("metrics-recording-only", true),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		chromedp.WindowSize(1440, 900),
		chromedp.CombinedOutput(writerFunc(func(b []byte) (int, error) {
			outMu.Lock()
			defer outMu.Unlock()
			return out.Write(b)
		})),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc()
		if t.Failed() {
			outMu.Lock()
			t.Logf("chromium output:\n%s", tail(out.String(), 4000))
			outMu.Unlock()
		}
	})
	b := &browser{ctx: ctx, t: t}
	if err := chromedp.Do(ctx); err != nil { // start the browser and the tab
		t.Fatalf("start chromium: %v", err)
	}

	// Subscribe before enabling anything, so no event is lost.
	paused := chromedp.Events(ctx, fetch.RequestPaused)
	auth := chromedp.Events(ctx, fetch.AuthRequired)
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	console := chromedp.Console(ctx)
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			go chromedp.Call(ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
		}
	}()
	go func() {
		for ev, err := range auth {
			if err != nil {
				return
			}
			resp := &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseCancelAuth}
			// A wrong password would be challenged again and again.
			if password != "" && b.authAnswers.Add(1) <= 5 {
				resp = &fetch.AuthChallengeResponse{
					Response: fetch.AuthChallengeResponseResponseProvideCredentials,
					Username: "operator", Password: password,
				}
			}
			go chromedp.Call(ctx, fetch.ContinueWithAuth, fetch.ContinueWithAuthParams{RequestID: ev.RequestID, AuthChallengeResponse: resp})
		}
	}()
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.dialogs = append(b.dialogs, ev.Message)
			b.mu.Unlock()
			go chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			b.mu.Lock()
			if m.IsException() {
				b.exceptions++
			}
			if m.IsException() || m.Type == "error" || m.Type == "warning" {
				b.console = append(b.console, string(m.Type)+": "+m.Text)
			}
			b.mu.Unlock()
		}
	}()
	if _, err := chromedp.Call(ctx, fetch.Enable, fetch.EnableParams{HandleAuthRequests: ptr(true)}); err != nil {
		t.Fatalf("Fetch.enable: %v", err)
	}
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: recorder}); err != nil {
		t.Fatalf("add recorder: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b.mu.Lock()
			t.Logf("browser console:\n%s", strings.Join(b.console, "\n"))
			b.mu.Unlock()
		}
	})
	return b
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func ptr[T any](v T) *T { return &v }

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatal(err)
	}
}

// eval evaluates a JavaScript expression through the DevTools protocol
// (not subject to the page's CSP, unlike chromedp.Poll, which compiles its
// predicate with new Function inside the page) and decodes the result.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitJS waits until expr is truthy.
func (b *browser) waitJS(d time.Duration, what, expr string) {
	b.t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool]("!!("+expr+")"))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			html, _ := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ''`))
			b.t.Fatalf("timed out after %s waiting for %s (last error: %v); page text:\n%s", d, what, err, tail(html, 3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// polls is how many polls the page has finished.
func (b *browser) polls() int {
	n, _ := strconv.Atoi(eval[string](b, `document.body.dataset.polls || '0'`))
	return n
}

// waitPolls waits for n more polls: a re-render with fresh data.
func (b *browser) waitPolls(n int) {
	b.t.Helper()
	want := b.polls() + n
	b.waitJS(time.Duration(n)*2*time.Second+10*time.Second, fmt.Sprintf("%d more polls", n),
		fmt.Sprintf(`Number(document.body.dataset.polls || 0) >= %d`, want))
}

// row is what the test reads back of one table row.
// Cells are the text of each cell: 0 session key and worker ID, 1 PID,
// 2 state, 3 CPU, 4 RSS, 5 VMS, 6 threads, 7 FDs, 8 processes, 9 defunct,
// 10 uptime, 11 idle, 12 requests, 13 restarts, 14 error.
type row struct {
	Key, ID, State, Zombie, Defunct, CPU, RSS string // data attributes
	KeyText, IDText, Text                     string // shown text
	Cells                                     []string
}

const readRows = `Array.from(document.querySelectorAll('#worker-rows tr[data-worker-id]')).map((tr) => ({
  Key: tr.dataset.key, ID: tr.dataset.workerId, State: tr.dataset.state, Zombie: tr.dataset.zombie,
  Defunct: tr.dataset.defunct, CPU: tr.dataset.cpu, RSS: tr.dataset.rss, Text: tr.innerText,
  KeyText: tr.querySelector('.k').textContent, IDText: tr.querySelector('.wid').textContent,
  Cells: Array.from(tr.cells).map((td) => td.textContent),
}))`

func (b *browser) rows() []row { return eval[[]row](b, readRows) }

func (b *browser) screenshot(name string) string {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(b.t.ArtifactDir(), name)
	if dir := os.Getenv("WORKERSCOPE_ARTIFACTS"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err == nil {
			path = filepath.Join(dir, name)
		}
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
	return path
}

// checkClean fails the test on a CSP violation, an alert or dialog, or an
// uncaught exception in the page.
func (b *browser) checkClean() {
	b.t.Helper()
	if v := eval[[]string](b, `window.__csp || ['recorder missing']`); len(v) > 0 {
		b.t.Errorf("CSP violations: %q", v)
	}
	if v := eval[[]string](b, `window.__alerts || []`); len(v) > 0 {
		b.t.Errorf("alert() called: %q", v)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.dialogs) > 0 {
		b.t.Errorf("dialogs opened: %q", b.dialogs)
	}
	if b.exceptions > 0 {
		b.t.Errorf("%d uncaught exceptions in the page: %q", b.exceptions, b.console)
	}
}

// sortedBy reports whether the rows are ordered by field, missing values
// last.
func sortedBy(rows []row, field func(row) string, desc bool) bool {
	var prev *float64
	seenMissing := false
	for _, r := range rows {
		s := field(r)
		if s == "" {
			seenMissing = true
			continue
		}
		if seenMissing {
			return false
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return false
		}
		if prev != nil && ((desc && v > *prev) || (!desc && v < *prev)) {
			return false
		}
		prev = &v
	}
	return true
}

func keys(rows []row) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.Key
	}
	return out
}

// TestMetricsPageInBrowser opens GET /metrics of the real binary in
// headless Chromium, signed in with HTTP Basic as a user would be, against
// real demo workers: a busy one, one holding memory, and a zombie (it
// ignores SIGTERM, went idle past the TTL, and the long stop grace keeps it
// alive). It checks the rows, the zombie flag, sorting that survives
// refreshes, sparklines, and the banner when the server goes away.
func TestMetricsPageInBrowser(t *testing.T) {
	chromiumPath(t) // skip before building anything
	a := startAppArgs(t, freePort(t), []string{"OTEL_METRICS_EXPORTER=none"},
		"--idle-ttl", "2s", "--stop-grace", "120s", "--worker-memory-max", "1GiB", "--cgroups", "off")

	a.rpc(t, "stuck", `{"type":"ignore_sigterm"}`)
	a.rpc(t, "busy", `{"type":"prompt","message":"spin","cpu_ms":150000,"events":750}`)
	a.rpc(t, "mem", `{"type":"prompt","message":"hold","mem_mib":96,"cpu_ms":20,"events":1}`)
	ws := a.workers(t)
	instance, _, _ := strings.Cut(ws["stuck"].ID, "-")
	if instance == "" {
		t.Fatalf("no worker ID for stuck: %+v", ws)
	}

	// A crash whose stderr tail is markup: the worker leaves the pool (so
	// its text never reaches /api/metrics; TestMetricsPageRendersHostileStrings
	// renders such text), but the page must stay clean all the same.
	a.do(t, "POST", "/api/sessions/crash/rpc", `{"type":"crash","message":"<img src=x onerror=alert(1)><script>alert(2)</script>"}`)

	// Keep "mem" from being reaped: any command resets its idle time.
	keepCtx, stopKeep := context.WithCancel(context.Background())
	var keepWG sync.WaitGroup
	keepWG.Go(func() {
		for {
			select {
			case <-keepCtx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
			req, _ := http.NewRequestWithContext(keepCtx, "POST", a.url+"/api/sessions/mem/rpc", strings.NewReader(`{"type":"get_state"}`))
			req.Header.Set("Authorization", "Bearer "+token)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	})

	// Stopping the app: SIGTERM, then SIGKILL after a few seconds (the
	// zombie would hold shutdown for the whole 60 s grace). Workers have a
	// parent-death signal, so none may survive; each carries the marker.
	var stopOnce sync.Once
	stopApp := func() {
		stopOnce.Do(func() {
			stopKeep()
			keepWG.Wait()
			_ = a.cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = a.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
				<-done
			}
			waitFor(t, 15*time.Second, "no worker process left", func() bool {
				left := workerProcesses(instance + "-")
				if len(left) > 0 {
					t.Logf("still alive: %v", left)
				}
				return len(left) == 0
			})
		})
	}
	t.Cleanup(stopApp)

	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("workerscope output:\n%s", tail(a.output(), 4000))
		}
	})
	b := newBrowser(t, token)
	b.do(chromedp.Navigate(a.url + "/metrics"))
	b.waitJS(30*time.Second, "rows for busy, mem and stuck", `['busy','mem','stuck'].every((k) =>
		document.querySelector('#worker-rows tr[data-key="' + k + '"]'))`)
	if n := b.authAnswers.Load(); n != 1 {
		t.Errorf("answered %d Basic challenges; want 1 (the page's own polls must reuse the credentials)", n)
	}
	// A running worker's idle time counts from its last command: the page
	// shows it for idle workers only.
	b.waitJS(30*time.Second, "busy's idle cell to show a dash", `(() => {
		const td = document.querySelector('#worker-rows tr[data-key="busy"] td:nth-child(12)');
		return td && td.textContent === '—';
	})()`)
	// Limits: the tier in a card, each worker's RSS as a share of the limit.
	b.waitJS(30*time.Second, "the limits card and the RSS share of the limit", `(() => {
		const c = document.querySelector('[data-card="limits"]');
		const rss = document.querySelector('#worker-rows tr[data-key="mem"] td:nth-child(5)');
		return c && c.querySelector('.value').textContent === 'watchdog' && /memory 1\.0 GiB/.test(c.textContent) &&
			rss && /% of 1\.0 GiB/.test(rss.textContent);
	})()`)

	// A worker's last commands with their cost (the tree's CPU), as text,
	// in its detail view; Escape closes it.
	b.do(chromedp.Click(chromedp.CSS(`#worker-rows tr[data-key="mem"] td.who`)))
	b.waitJS(30*time.Second, "mem's last commands with their CPU cost", `(() => {
		const rows = document.querySelectorAll('#detail-commands tbody tr');
		return !document.getElementById('detail').hidden && document.getElementById('detail-title').textContent === 'mem' &&
			[...rows].some((tr) => tr.cells.length === 5 && tr.cells[0].textContent === 'get_state' && /\d/.test(tr.cells[2].textContent));
	})()`)
	b.do(chromedp.KeyEvent("\x1b"))
	b.waitJS(5*time.Second, "the detail view to close", `document.getElementById('detail').hidden`)

	// The zombie: flagged by attribute, class and visible text. The flag
	// (idle past the TTL) can show a poll before the reaper's next round
	// moves the worker to stopping, so wait for both.
	b.waitJS(30*time.Second, "stuck to be shown as a stopping zombie",
		`document.querySelector('#worker-rows tr[data-key="stuck"][data-zombie="true"][data-state="stopping"].zombie')`)
	for _, r := range b.rows() {
		switch r.Key {
		case "stuck":
			if !strings.Contains(strings.ToLower(r.Text), "zombie") || r.State != "stopping" {
				t.Errorf("zombie row: state %q, text %q", r.State, r.Text)
			}
		case "busy", "mem":
			if r.Zombie != "false" {
				t.Errorf("%s flagged as zombie: %+v", r.Key, r)
			}
		case "crash":
			t.Errorf("crashed worker still listed: %+v", r)
		}
	}

	// Sort by RSS (descending first): the worker holding 96 MiB leads.
	b.do(chromedp.Click(chromedp.CSS(`th[data-sort="rss_bytes"] button`)))
	rows := b.rows()
	if len(rows) < 3 || rows[0].Key != "mem" || !sortedBy(rows, func(r row) string { return r.RSS }, true) {
		t.Errorf("after sorting by RSS: %v", rows)
	}
	// The order survives refreshes.
	b.waitPolls(2)
	rows = b.rows()
	if rows[0].Key != "mem" || !sortedBy(rows, func(r row) string { return r.RSS }, true) {
		t.Errorf("RSS order lost after a refresh: %v", keys(rows))
	}
	if s := eval[string](b, `document.querySelector('th[data-sort="rss_bytes"]').getAttribute('aria-sort')`); s != "descending" {
		t.Errorf("RSS header aria-sort %q", s)
	}

	// Sort by CPU: descending (the spinning worker first), then ascending.
	// (Only relative: on a loaded machine the spinning worker may get
	// little CPU, but always more than the idle ones.)
	b.waitJS(30*time.Second, "busy to have the highest CPU rate", `(() => {
		const rows = Array.from(document.querySelectorAll('#worker-rows tr[data-worker-id]'));
		const busy = rows.find((tr) => tr.dataset.key === 'busy');
		return busy && Number(busy.dataset.cpu) > 1 && rows.every((tr) => tr === busy || tr.dataset.cpu === '' ||
			Number(tr.dataset.cpu) < Number(busy.dataset.cpu));
	})()`)
	b.do(chromedp.Click(chromedp.CSS(`th[data-sort="cpu_percent"] button`)))
	rows = b.rows()
	if rows[0].Key != "busy" || !sortedBy(rows, func(r row) string { return r.CPU }, true) {
		t.Errorf("after sorting by CPU (desc): %v", rows)
	}

	// Sparklines: after a few samples the busy worker has drawn lines.
	b.waitJS(30*time.Second, "CPU and RSS sparklines", `Array.from(document.querySelectorAll(
		'#worker-rows tr[data-key="busy"] svg.spark path.line')).filter((p) => /L/.test(p.getAttribute('d'))).length === 2`)
	if os.Getenv("WORKERSCOPE_UPDATE_SCREENSHOT") == "1" {
		time.Sleep(50 * time.Second) // longer sparklines for the picture
	}
	shot := b.screenshot("metrics-page.png")
	if os.Getenv("WORKERSCOPE_UPDATE_SCREENSHOT") == "1" {
		png, err := os.ReadFile(shot)
		if err == nil {
			err = os.WriteFile(filepath.Join(repoRoot(t), "docs", "metrics-page.png"), png, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	b.do(chromedp.Click(chromedp.CSS(`th[data-sort="cpu_percent"] button`)))
	rows = b.rows()
	if !sortedBy(rows, func(r row) string { return r.CPU }, false) || rows[len(rows)-1].Key != "busy" {
		t.Errorf("after sorting by CPU (asc): %v", rows)
	}
	if s := eval[string](b, `document.querySelector('th[data-sort="cpu_percent"]').getAttribute('aria-sort')`); s != "ascending" {
		t.Errorf("CPU header aria-sort %q", s)
	}
	if n := eval[int](b, `document.querySelectorAll('#worker-rows img, #worker-rows script').length`); n != 0 {
		t.Errorf("%d injected elements in the table", n)
	}
	b.checkClean()

	// The server goes away: the page says so and keeps the last data.
	stopApp()
	b.waitJS(20*time.Second, "the polling-failed banner", `(() => { const e = document.getElementById('banner');
		return !e.hidden && e.dataset.state === 'error' && /polling failed, retrying/i.test(e.textContent); })()`)
	if n := len(b.rows()); n < 3 {
		t.Errorf("rows after the server went away: %d, want the last data kept", n)
	}
	b.screenshot("metrics-page-offline.png")
}

// workerProcesses lists live (not defunct) processes whose
// WORKERSCOPE_WORKER_ID (the worker marker docs/api.md names; spelled out,
// not imported from workers) starts with prefix.
func workerProcesses(prefix string) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		if i := strings.LastIndexByte(string(stat), ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' {
			continue
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			continue
		}
		for kv := range strings.SplitSeq(string(env), "\x00") {
			if v, ok := strings.CutPrefix(kv, "WORKERSCOPE_WORKER_ID="); ok && strings.HasPrefix(v, prefix) {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

// hostileStderr is a worker's stderr tail made of markup and script.
const hostileStderr = "panic: <img src=x onerror=alert('stderr')>\n<script>alert('stderr2')</script>\n</pre><iframe src=\"javascript:alert(3)\">\n"

// hostile is a report whose every string is markup or script.
func hostileReport() map[string]any {
	s := func(v string) *string { return &v }
	f := func(v float64) *float64 { return &v }
	return map[string]any{
		"sampled_at": time.Now().UTC().Format(time.RFC3339Nano), "window_seconds": 2.0,
		"sample_duration_seconds": 0.0004, "num_cpu": 4, "sampler_errors": 3,
		"error": s(`<iframe src="javascript:alert('report')"></iframe>`),
		"process": map[string]any{
			"goroutines": 42, "heap_alloc_bytes": 3 << 20, "heap_inuse_bytes": 4 << 20, "heap_sys_bytes": 12 << 20,
			"gc_count": 7, "gc_pause_last_seconds": 0.00012, "open_fds": 17, "sse_clients": 1,
			"uptime_seconds": 3723.0, "version": `<img src=x onerror=alert('version')>`, "go_version": "go1.26",
			`<b>watched_files</b>`: 9,
		},
		"workers": []map[string]any{
			{
				"id": `"><svg onload=alert('id')>`, "key": `<img src=x onerror=alert('key')>`, "pid": 4242,
				"state": `<b>stopping</b>`, "cpu_percent": f(12.5), "rss_bytes": 7 << 20, "vms_bytes": 900 << 20,
				"threads": 6, "fds": 9, "processes": 2, "defunct": 1, "uptime_seconds": 95.0, "idle_seconds": 61.0,
				"zombie": true, "requests": 3, "restarts": 1, "memory_max": 8 << 20, "pids_max": 0, "cpu_max": 0.5,
				"limit_hits": map[string]any{"memory": 2},
				"error":      s(`<img src=x onerror=alert(1)><script>alert(2)</script>`),
				"last_commands": []map[string]any{
					{"type": `<img src=x onerror=alert('type')>`, "duration_seconds": 0.25, "cpu_seconds": 0.125,
						"error_type": `<script>alert('et')</script>`, "trace_id": `"><img src=x onerror=alert('trace')>`},
				},
				"agent": map[string]any{"total_tokens": 10, "cost_usd": 0.5, "model_calls": 1, "tool_calls": 1,
					"over_budget": `<b>spend</b>`, "last_tools": []map[string]any{{"name": `<img src=x onerror=alert('tool')>`, "duration_seconds": 0.1}}},
				"stderr_tail": hostileStderr,
			},
			{
				"id": "w1-2", "key": `javascript:alert('k2')`, "pid": 4243, "state": "idle",
				"cpu_percent": nil, "rss_bytes": nil, "vms_bytes": nil, "threads": nil, "fds": nil, "processes": nil,
				"defunct": nil, "uptime_seconds": 1.5, "idle_seconds": 1.5, "zombie": false, "requests": 0, "restarts": 0,
				"error": s("open /proc/4243/fd: permission denied"),
			},
		},
		"totals": map[string]any{"workers": 2, "zombies": 1, "cpu_percent": 12.5, "rss_bytes": 5 << 20,
			"vms_bytes": 900 << 20, "threads": 6, "fds": 9, "processes": 2, "defunct": 1},
	}
}

// TestMetricsPageRendersHostileStrings serves the real page next to a fake
// /api/metrics whose every string is markup (session keys, states, worker
// IDs, error texts, the version, even a gauge name) and checks, in
// Chromium, that each one shows up as literal text: no element injected,
// no script run, no CSP violation. It then checks the banners for a
// failing server (HTTP 500) and for expired credentials (401), and that
// they clear when polling recovers.
// TestMetricsPageWithCredentialsInURL opens the page as
// http://user:token@host/metrics, as a user may paste it: the page's own
// requests must not carry the credentials in their URL (fetch refuses
// those), so rows appear and no error banner shows.
func TestMetricsPageWithCredentialsInURL(t *testing.T) {
	chromiumPath(t)
	a := startAppArgs(t, freePort(t), []string{"OTEL_METRICS_EXPORTER=none"})
	a.rpc(t, "alice", `{"type":"get_state"}`)
	b := newBrowser(t, "")
	u := strings.Replace(a.url, "http://", "http://anyone:"+token+"@", 1)
	b.do(chromedp.Navigate(u + "/metrics"))
	b.waitJS(30*time.Second, "the row for alice", `document.querySelector('#worker-rows tr[data-key="alice"]')`)
	b.waitPolls(1)
	if st := eval[string](b, `document.getElementById('banner') ? (document.getElementById('banner').dataset.state || '') : ''`); st == "error" {
		t.Fatalf("error banner with credentials in the URL")
	}
}

func TestMetricsPageRendersHostileStrings(t *testing.T) {
	chromiumPath(t)
	var mode atomic.Value
	mode.Store("ok")
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", webui.Handler())
	mux.HandleFunc("GET /api/metrics", func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case "500":
			http.Error(w, `{"error":"boom"}`, http.StatusInternalServerError)
		case "401":
			w.Header().Set("WWW-Authenticate", `Basic realm="workerscope"`)
			http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
		default:
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(hostileReport())
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	b := newBrowser(t, "") // no credentials: a 401 is "cancelled", as by a user
	b.do(chromedp.Navigate(srv.URL + "/metrics"))
	b.waitJS(20*time.Second, "two worker rows", `document.querySelectorAll('#worker-rows tr[data-worker-id]').length === 2`)
	b.waitPolls(1) // a second render over the first

	rep := hostileReport()
	ws := rep["workers"].([]map[string]any)
	rows := b.rows()
	byID := map[string]row{}
	for _, r := range rows {
		byID[r.ID] = r
	}
	evil, ok := byID[ws[0]["id"].(string)]
	if !ok {
		t.Fatalf("row for the hostile worker ID not found by its literal ID; rows: %+v", rows)
	}
	if evil.Key != ws[0]["key"] || evil.KeyText != ws[0]["key"] {
		t.Errorf("key shown as %q, want the literal %q", evil.KeyText, ws[0]["key"])
	}
	if evil.IDText != ws[0]["id"] {
		t.Errorf("id shown as %q", evil.IDText)
	}
	if !strings.HasPrefix(evil.Cells[2], "<b>stopping</b>") || !strings.Contains(evil.Cells[2], "zombie") {
		t.Errorf("state cell %q", evil.Cells[2])
	}
	if want := *(ws[0]["error"].(*string)); evil.Cells[14] != want {
		t.Errorf("error cell %q, want %q", evil.Cells[14], want)
	}
	if evil.Zombie != "true" || !strings.Contains(evil.Cells[9], "1 defunct") {
		t.Errorf("zombie/defunct flags: %+v", evil)
	}
	plain := byID["w1-2"]
	if plain.Key != "javascript:alert('k2')" {
		t.Errorf("second key %q", plain.Key)
	}
	for _, i := range []int{3, 4, 5, 6, 7, 8, 9} { // CPU … defunct are null
		if !strings.Contains(plain.Cells[i], "—") {
			t.Errorf("null cell %d shown as %q, want —", i, plain.Cells[i])
		}
	}
	body := eval[string](b, `document.body.textContent`)
	for _, lit := range []string{
		`<img src=x onerror=alert('version')>`,
		`<iframe src="javascript:alert('report')"></iframe>`,
		`<b>watched files</b>`,
	} {
		if !strings.Contains(body, lit) {
			t.Errorf("page text lacks the literal %q", lit)
		}
	}
	counts := eval[map[string]int](b, `({
		img: document.querySelectorAll('img').length,
		iframe: document.querySelectorAll('iframe').length,
		b: document.querySelectorAll('b').length,
		script: document.querySelectorAll('script').length,
		svg: document.querySelectorAll('svg:not(.spark)').length,
		links: Array.from(document.querySelectorAll('a')).filter((a) => !/^api\//.test(a.getAttribute('href'))).length,
	})`)
	want := map[string]int{"img": 0, "iframe": 0, "b": 0, "script": 1, "svg": 0, "links": 0}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("%d <%s> elements in the page, want %d", counts[k], k, v)
		}
	}
	b.checkClean()

	// The chips: only the worker at 87 % of its memory limit, then the
	// zombies too (any chip matches); the counts are on the chips.
	b.do(chromedp.Click(chromedp.CSS(`#chips [data-chip="limit"]`)))
	if r := b.rows(); len(r) != 1 || r[0].ID != ws[0]["id"] {
		t.Errorf("rows with the limit chip: %+v", r)
	}
	b.do(chromedp.Click(chromedp.CSS(`#chips [data-chip="zombie"]`)))
	if r := b.rows(); len(r) != 1 || !strings.Contains(eval[string](b, `location.hash`), "only=zombie%2Climit") {
		t.Errorf("rows with the limit and zombie chips: %d, hash %q", len(r), eval[string](b, `location.hash`))
	}
	if n := eval[string](b, `document.querySelector('#chips [data-chip="zombie"] .n').textContent`); n != "1" {
		t.Errorf("zombie chip count %q", n)
	}
	b.do(chromedp.Click(chromedp.CSS(`#chips [data-chip="limit"]`)), chromedp.Click(chromedp.CSS(`#chips [data-chip="zombie"]`)))
	if r := b.rows(); len(r) != 2 {
		t.Errorf("rows with no chip: %d", len(r))
	}

	// The filter matches the hostile key as text.
	b.do(chromedp.SendKeys(chromedp.CSS(`#filter`), "onerror=alert('key"))
	b.waitJS(10*time.Second, "one row left by the filter", `document.querySelectorAll('#worker-rows tr[data-worker-id]').length === 1`)
	if r := b.rows(); len(r) != 1 || r[0].Key != ws[0]["key"] {
		t.Errorf("filtered rows %+v", r)
	}
	// The detail view of the hostile worker: its key, its commands, its
	// agent's tools and its stderr tail, every one literal text.
	b.do(chromedp.Click(chromedp.CSS(`#worker-rows tr[data-worker-id] td.who`)))
	b.waitJS(10*time.Second, "the detail view with the stderr tail", `(() => { const d = document.getElementById('detail');
		return !d.hidden && document.getElementById('detail-stderr').textContent.startsWith('panic: '); })()`)
	got := eval[map[string]string](b, `({
		title: document.getElementById('detail-title').textContent,
		stderr: document.getElementById('detail-stderr').textContent,
		commands: document.getElementById('detail-commands').tBodies[0].textContent,
		agent: document.getElementById('detail-agent').textContent,
		limits: document.getElementById('detail-limits').textContent,
		hash: location.hash,
	})`)
	if got["title"] != ws[0]["key"] {
		t.Errorf("detail title %q, want the literal key", got["title"])
	}
	if got["stderr"] != hostileStderr {
		t.Errorf("detail stderr %q, want the literal %q", got["stderr"], hostileStderr)
	}
	for _, lit := range []string{`<img src=x onerror=alert('type')>`, `<script>alert('et')</script>`, `"><img src=x onerror=alert('trace')>`} {
		if !strings.Contains(got["commands"], lit) {
			t.Errorf("detail commands %q lack the literal %q", got["commands"], lit)
		}
	}
	if !strings.Contains(got["agent"], `tool <img src=x onerror=alert('tool')>`) || !strings.Contains(got["agent"], `over its <b>spend</b> budget`) {
		t.Errorf("detail agent %q", got["agent"])
	}
	if !strings.Contains(got["limits"], "8.0 MiB") || !strings.Contains(got["limits"], "memory 2") {
		t.Errorf("detail limits %q", got["limits"])
	}
	if !strings.Contains(got["hash"], "worker=") || !strings.Contains(got["hash"], "q=") {
		t.Errorf("URL fragment %q lacks the filter and the open worker", got["hash"])
	}
	counts = eval[map[string]int](b, `({
		img: document.querySelectorAll('img').length,
		iframe: document.querySelectorAll('iframe').length,
		b: document.querySelectorAll('b').length,
		script: document.querySelectorAll('script').length,
		svg: document.querySelectorAll('svg:not(.spark)').length,
		links: Array.from(document.querySelectorAll('a')).filter((a) => !/^api\//.test(a.getAttribute('href'))).length,
	})`)
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("with the detail open: %d <%s> elements in the page, want %d", counts[k], k, v)
		}
	}
	b.screenshot("hostile-detail.png")
	b.checkClean()
	b.do(chromedp.KeyEvent("\x1b")) // Escape closes it
	b.waitJS(5*time.Second, "the detail view to close", `document.getElementById('detail').hidden && !/worker=/.test(location.hash)`)
	eval[bool](b, `(() => { const f = document.getElementById('filter'); f.value = ''; return f.dispatchEvent(new Event('input')); })()`)
	b.waitJS(10*time.Second, "both rows back", `document.querySelectorAll('#worker-rows tr[data-worker-id]').length === 2`)

	// A failing server, then expired credentials, then recovery.
	mode.Store("500")
	b.waitJS(15*time.Second, "the polling-failed banner", `(() => { const e = document.getElementById('banner');
		return !e.hidden && e.dataset.state === 'error' && /polling failed, retrying/i.test(e.textContent) && /500/.test(e.textContent); })()`)
	if n := len(b.rows()); n != 2 {
		t.Errorf("rows while failing: %d, want the last data kept", n)
	}
	b.screenshot("hostile-polling-failed.png")
	mode.Store("401")
	b.waitJS(15*time.Second, "the authentication banner", `(() => { const e = document.getElementById('banner');
		return !e.hidden && e.dataset.state === 'auth' && /authentication required — reload to sign in/i.test(e.textContent); })()`)
	mode.Store("ok")
	b.waitJS(15*time.Second, "the banner to clear", `document.getElementById('banner').hidden`)
	b.checkClean()
	b.screenshot("hostile.png")
	// The dark theme, for a look at the artifact.
	if _, err := chromedp.Call(b.ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}},
	}); err != nil {
		t.Fatal(err)
	}
	b.screenshot("hostile-dark.png")
	if !slices.Contains(keys(b.rows()), "javascript:alert('k2')") {
		t.Error("rows gone after recovery")
	}
}
