//go:build linux

package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/workerscope/workerscope/telemetry/webui"
	"net/http/httptest"
)

// shellWorker is the lightweight test worker of the fleet-size test: one
// /bin/sh per worker (about a megabyte, no fork per command) that answers
// every command, says something hostile on stderr at start, crashes on
// "crash" and holds a command on "hold" (a busy worker).
const shellWorker = `#!/bin/sh
printf '%s\n' "<img src=x onerror=alert('stderr')> worker $WORKERSCOPE_WORKER_ID up" >&2
while IFS= read -r line; do
  id=${line#*\"id\":\"}
  id=${id%%\"*}
  case "$line" in
  *'"type":"crash"'*) echo "crashing <script>alert('crash')</script>" >&2; exit 3 ;;
  *'"type":"hold"'*) read -r _ ;;
  esac
  printf '{"type":"response","id":"%s","success":true}\n' "$id"
done
`

// fleetSize is how many workers TestMetricsPageAtFleetSize starts
// (WORKERSCOPE_PAGE_WORKERS; the figure is at 2,000).
func fleetSize(t *testing.T) int {
	n := 2000
	if v := os.Getenv("WORKERSCOPE_PAGE_WORKERS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 20 {
			t.Fatalf("WORKERSCOPE_PAGE_WORKERS=%q: want a count of at least 20", v)
		}
	}
	return n
}

// getBytes fetches path with the token and the given Accept-Encoding and
// returns the body as sent (compressed or not) and decoded.
func getBytes(t *testing.T, url, encoding string) (wire, plain []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept-Encoding", encoding) // set: the transport does not decompress
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	wire, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, wire)
	}
	if resp.Header.Get("Vary") != "Accept-Encoding" {
		t.Errorf("GET %s: Vary %q", url, resp.Header.Get("Vary"))
	}
	plain = wire
	if resp.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(wire))
		if err != nil {
			t.Fatal(err)
		}
		plain, _ = io.ReadAll(zr)
	} else if encoding == "gzip" {
		t.Errorf("GET %s with Accept-Encoding gzip: not compressed", url)
	}
	return wire, plain
}

// TestMetricsPageAtFleetSize opens the page of the real binary over 2,000
// live workers (a shell script each) in Chromium and checks what the
// issue "the page at fleet size" asks: only the rows in view are in the
// DOM; one poll's render (performance.now() around the update, with its
// style and layout) is measured and logged (docs/performance.md); natural sort, also as the
// tie-breaker; the filter and the chips; the view in the URL, restored
// from it by a reload; the detail view with the worker's stderr tail
// (markup, shown as text); and the bytes per worker of a poll.
func TestMetricsPageAtFleetSize(t *testing.T) {
	chromiumPath(t)
	n := fleetSize(t)
	script := filepath.Join(t.TempDir(), "worker.sh")
	if err := os.WriteFile(script, []byte(shellWorker), 0o755); err != nil {
		t.Fatal(err)
	}
	a := startAppArgs(t, freePort(t), []string{"OTEL_METRICS_EXPORTER=none", "OTEL_TRACES_EXPORTER=none", "OTEL_LOGS_EXPORTER=none"},
		"--worker-cmd", "/bin/sh "+script, "--worker-sandbox", "off", "--cgroups", "off",
		"--max-workers", strconv.Itoa(n+16), "--idle-ttl", "1h")

	// n sessions s1 … sn, eight at a time.
	began := time.Now()
	queue := make(chan int)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []string
	for range 8 {
		wg.Go(func() {
			for i := range queue {
				code, body, _, err := timedDo("POST", fmt.Sprintf("%s/api/sessions/s%d/rpc", a.url, i), `{"type":"get_state"}`)
				if err != nil || code != 200 {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("s%d: %d %v %s", i, code, err, body))
					mu.Unlock()
				}
			}
		})
	}
	for i := 1; i <= n; i++ {
		queue <- i
	}
	close(queue)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d spawns failed, first: %s", len(failed), failed[0])
	}
	t.Logf("%d workers up in %s", n, time.Since(began).Round(time.Millisecond))
	// s7 crashed once (restarts 1); s3, s5 and s11 are busy (a command held).
	if code, _ := a.do(t, "POST", "/api/sessions/s7/rpc", `{"type":"crash"}`); code != http.StatusBadGateway {
		t.Fatalf("crash: %d", code)
	}
	a.rpc(t, "s7", `{"type":"get_state"}`)
	holdCtx, release := context.WithCancel(context.Background())
	t.Cleanup(release)
	for _, k := range []string{"s3", "s5", "s11"} {
		go func() {
			req, _ := http.NewRequestWithContext(holdCtx, "POST", a.url+"/api/sessions/"+k+"/rpc", strings.NewReader(`{"type":"hold"}`))
			req.Header.Set("Authorization", "Bearer "+token)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}

	b := newBrowser(t, token)
	b.do(chromedp.Navigate(a.url + "/metrics"))
	total := fmt.Sprintf("%s workers", strconv.FormatFloat(float64(n), 'f', 0, 64))
	if n >= 1000 {
		total = fmt.Sprintf("%d,%03d workers", n/1000, n%1000)
	}
	b.waitJS(60*time.Second, "the summary "+total, `document.getElementById('worker-summary').textContent.startsWith('`+total+`')`)
	b.waitJS(30*time.Second, "three busy workers", `document.querySelector('#chips [data-chip="busy"] .n').textContent === '3'`)

	// Only the rows in view are in the DOM.
	if rows := eval[int](b, `document.querySelectorAll('#worker-rows tr.w').length`); rows == 0 || rows > 120 {
		t.Errorf("%d worker rows in the DOM for %d workers; want the visible window only", rows, n)
	}

	// One poll's render time, over ten polls.
	var renders []float64
	for range 10 {
		b.waitPolls(1)
		v, err := strconv.ParseFloat(eval[string](b, `document.body.dataset.renderMs || ''`), 64)
		if err != nil {
			t.Fatalf("no render time on the page: %v", err)
		}
		renders = append(renders, v)
	}
	slices.Sort(renders)
	median := renders[len(renders)/2]
	t.Logf("render of one poll at %d workers (performance.now() around the update, style and layout included): median %.1f ms, min %.1f, max %.1f over %d polls",
		n, median, renders[0], renders[len(renders)-1], len(renders))
	// The figure is reported, not asserted: a test asserts behaviour, and
	// a loaded machine (CI beside a CPU hog) says nothing about the page.
	// What keeps the render small is asserted above: only the visible
	// rows are in the DOM. The goal (< 50 ms on the reference machine) and
	// the measured figures are in docs/performance.md.

	// The page's own poll: its request, and its bytes on the wire.
	pollURL := eval[string](b, `performance.getEntriesByType('resource').map((e) => e.name).filter((u) => /api\/metrics\?fields=/.test(u)).pop() || ''`)
	if pollURL == "" {
		t.Fatal("the page's poll is not in the resource timings")
	}
	sizes := eval[map[string]float64](b, `(() => { const e = performance.getEntriesByType('resource').filter((e) => /api\/metrics\?fields=/.test(e.name)).pop();
		return { encoded: e.encodedBodySize, decoded: e.decodedBodySize }; })()`)
	fullPlain, _ := getBytes(t, a.url+"/api/metrics", "identity")
	fullGz, _ := getBytes(t, a.url+"/api/metrics", "gzip")
	pagePlain, _ := getBytes(t, pollURL, "identity")
	pageGz, decoded := getBytes(t, pollURL, "gzip")
	if !bytes.Equal(decoded[:100], pagePlain[:100]) {
		t.Errorf("the gzip body does not decode to the plain one")
	}
	per := func(b int) float64 { return float64(b) / float64(n) }
	t.Logf("GET /api/metrics at %d workers, bytes per worker: full %.0f plain / %.0f gzip; the page's poll (?fields=) %.0f plain / %.0f gzip; in Chromium: %.0f on the wire, %.0f decoded",
		n, per(len(fullPlain)), per(len(fullGz)), per(len(pagePlain)), per(len(pageGz)), per(int(sizes["encoded"])), per(int(sizes["decoded"])))
	if sizes["encoded"] <= 0 || sizes["encoded"] >= sizes["decoded"]/2 {
		t.Errorf("the page's poll: %v bytes on the wire for %v decoded; want it compressed", sizes["encoded"], sizes["decoded"])
	}

	// Natural order: by CPU, workers of equal CPU in natural key order.
	rows := b.rows()
	for i := 1; i < len(rows); i++ {
		if rows[i].CPU == rows[i-1].CPU && natLess(rows[i].Key, rows[i-1].Key) {
			t.Errorf("equal CPU, keys out of natural order: %s before %s", rows[i-1].Key, rows[i].Key)
		}
	}
	// By session: s1, s2, … s12 (not s1, s10, s100, s1000).
	b.do(chromedp.Click(chromedp.CSS(`th[data-sort="key"] button`)))
	rows = b.rows()
	if len(rows) < 12 {
		t.Fatalf("%d rows", len(rows))
	}
	for i, r := range rows[:12] {
		if want := fmt.Sprintf("s%d", i+1); r.Key != want {
			t.Errorf("row %d by session: %s, want %s (natural order)", i, r.Key, want)
		}
	}
	// Scrolled to the end: the last sessions, still a window of rows.
	eval[bool](b, `(() => { const s = document.getElementById('table-scroll'); s.scrollTop = s.scrollHeight; return true; })()`)
	last := fmt.Sprintf("s%d", n)
	b.waitJS(10*time.Second, "the last session's row after scrolling", `!!document.querySelector('#worker-rows tr[data-key="`+last+`"]')`)
	if rows := eval[int](b, `document.querySelectorAll('#worker-rows tr.w').length`); rows > 120 {
		t.Errorf("%d rows in the DOM after scrolling", rows)
	}
	// The header sticks to the top of the scrolled table.
	if off := eval[float64](b, `document.querySelector('#workers thead th').getBoundingClientRect().top -
		document.getElementById('table-scroll').getBoundingClientRect().top`); off < -1 || off > 2 {
		t.Errorf("header %.1f px from the top of the scrolled table; want it sticky", off)
	}

	// Chips: busy (3), then crashed too (any chip matches: 4).
	b.do(chromedp.Click(chromedp.CSS(`#chips [data-chip="busy"]`)))
	if got := keys(b.rows()); !slices.Equal(got, []string{"s3", "s5", "s11"}) {
		t.Errorf("busy rows %v, want s3 s5 s11", got)
	}
	b.do(chromedp.Click(chromedp.CSS(`#chips [data-chip="crashed"]`)))
	if got := keys(b.rows()); !slices.Equal(got, []string{"s3", "s5", "s7", "s11"}) {
		t.Errorf("busy or crashed rows %v, want s3 s5 s7 s11", got)
	}
	b.do(chromedp.Click(chromedp.CSS(`#chips [data-chip="busy"]`)), chromedp.Click(chromedp.CSS(`#chips [data-chip="crashed"]`)))

	// The filter: one session among n.
	target := fmt.Sprintf("s%d", n-1)
	b.do(chromedp.SendKeys(chromedp.CSS(`#filter`), target))
	b.waitJS(10*time.Second, "one row for "+target, `(() => { const r = document.querySelectorAll('#worker-rows tr.w');
		return r.length === 1 && r[0].dataset.key === '`+target+`'; })()`)
	// Its detail: the stderr tail (markup, as text), the last command.
	b.do(chromedp.Click(chromedp.CSS(`#worker-rows tr.w td.who`)))
	b.waitJS(20*time.Second, "the detail view with the stderr tail", `(() => {
		const d = document.getElementById('detail');
		return !d.hidden && /<img src=x onerror=alert\('stderr'\)> worker .+ up/.test(document.getElementById('detail-stderr').textContent) &&
			/get_state/.test(document.getElementById('detail-commands').textContent);
	})()`)
	hash := eval[string](b, `location.hash`)
	for _, want := range []string{"q=" + target, "sort=key", "dir=asc", "worker="} {
		if !strings.Contains(hash, want) {
			t.Errorf("URL fragment %q lacks %s", hash, want)
		}
	}
	b.screenshot("fleet-detail.png")
	b.checkClean()

	// A reload of that URL (a shared link) shows the same view.
	b.do(chromedp.Reload())
	b.waitJS(60*time.Second, "the same view after a reload", `(() => {
		const r = document.querySelectorAll('#worker-rows tr.w');
		return document.getElementById('filter').value === '`+target+`' && r.length === 1 && r[0].dataset.key === '`+target+`' &&
			document.querySelector('th[data-sort="key"]').getAttribute('aria-sort') === 'ascending' &&
			!document.getElementById('detail').hidden && document.getElementById('detail-title').textContent === '`+target+`' &&
			/onerror/.test(document.getElementById('detail-stderr').textContent);
	})()`)
	if n := eval[int](b, `document.querySelectorAll('img, iframe').length + document.querySelectorAll('script').length - 1`); n != 0 {
		t.Errorf("%d injected elements", n)
	}
	b.checkClean()
}

// natLess is natural order of session keys "s<n>".
func natLess(a, b string) bool {
	na, errA := strconv.Atoi(strings.TrimPrefix(a, "s"))
	nb, errB := strconv.Atoi(strings.TrimPrefix(b, "s"))
	if errA != nil || errB != nil {
		return a < b
	}
	return na < nb
}

// TestMetricsPageWithoutJavaScript: with scripts off, the page says why it
// needs them and where the data is instead.
func TestMetricsPageWithoutJavaScript(t *testing.T) {
	chromiumPath(t)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", webui.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	b := newBrowser(t, "")
	if _, err := chromedp.Call(b.ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	b.do(chromedp.Navigate(srv.URL + "/metrics"))
	text, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(`body`)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"This page needs JavaScript, because", "as text", "api/metrics"} {
		if !strings.Contains(text, want) {
			t.Errorf("page text without JavaScript lacks %q:\n%s", want, tail(text, 1500))
		}
	}
}
