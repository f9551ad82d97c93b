//go:build linux

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Helpers of the fleet tests (routing through nginx; several supervisors
// behind one gateway collector).

// requiredTool finds an external program: $env, else name on PATH, else
// the fallback paths. Missing, the test skips with the reason, or fails
// under WORKERSCOPE_E2E=required (as in CI).
func requiredTool(t testing.TB, env, name, why string, fallbacks ...string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("$%s=%s: %v", env, p, err)
		}
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range fallbacks {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("%s not found (set $%s or install it: %s)", name, env, why)
	if os.Getenv("WORKERSCOPE_E2E") == "required" {
		t.Fatal(msg)
	}
	t.Skip(msg + "; skipping")
	return ""
}

// startAppBin starts an already built workerscope binary (so several
// instances share one build) and waits for its URL.
func startAppBin(t testing.TB, bin string, env []string, args ...string) *app {
	t.Helper()
	env = append([]string{
		"WORKERSCOPE_TOKEN=" + token,
		"OTEL_METRIC_EXPORT_INTERVAL=500",
		"OTEL_EXPORTER_OTLP_TIMEOUT=2000",
	}, env...)
	args = append([]string{"--listen", "127.0.0.1:0", "--demo-load=false", "--stop-grace", "2s", "--drain", "0s"}, args...)
	p := start(t, bin, env, args...)
	return &app{proc: p, url: waitServing(t, p)}
}

// workerMarkers lists the live processes whose environment carries a
// WORKERSCOPE_WORKER_ID marker starting with one of the prefixes (a
// supervisor's worker ids are "<instance>-<seq>"): pid → marker.
func workerMarkers(prefixes ...string) map[int]string {
	out := map[int]string{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		b, err := os.ReadFile(d + "/environ")
		if err != nil {
			continue
		}
		for _, kv := range strings.Split(string(b), "\x00") {
			v, ok := strings.CutPrefix(kv, "WORKERSCOPE_WORKER_ID=")
			if !ok {
				continue
			}
			for _, p := range prefixes {
				if strings.HasPrefix(v, p+"-") {
					var pid int
					fmt.Sscan(filepath.Base(d), &pid)
					out[pid] = v
				}
			}
		}
	}
	return out
}

// instancePrefix is the supervisor-instance part of a worker id
// ("w3fa9c1d2-17" → "w3fa9c1d2").
func instancePrefix(workerID string) string {
	if i := strings.LastIndexByte(workerID, '-'); i > 0 {
		return workerID[:i]
	}
	return workerID
}

// httpDo sends one request with the token and returns status and body.
func httpDo(t testing.TB, method, url, body string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// sseStream is an open Server-Sent Events stream.
type sseStream struct {
	resp  *http.Response
	lines chan string
}

func openSSE(t testing.TB, url string) *sseStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Accept-Encoding", "gzip") // nginx must not compress the stream anyway
	tr := &http.Transport{DisableCompression: true}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close(); tr.CloseIdleConnections() })
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	s := &sseStream{resp: resp, lines: make(chan string, 1024)}
	go func() {
		defer close(s.lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
	}()
	return s
}

// next returns the next line matching match within d.
func (s *sseStream) next(t testing.TB, d time.Duration, what string, match func(string) bool) string {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-s.lines:
			if !ok {
				t.Fatalf("event stream ended while waiting for %s", what)
			}
			if match(l) {
				return l
			}
		case <-timer.C:
			t.Fatalf("no %s on the event stream within %s", what, d)
		}
	}
}

// eventType is the "type" of an SSE data line, or "".
func eventType(line string) string {
	data, ok := strings.CutPrefix(line, "data: ")
	if !ok {
		return ""
	}
	var ev struct{ Type string }
	_ = json.Unmarshal([]byte(data), &ev)
	return ev.Type
}
