//go:build linux

package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/sandbox"
	"github.com/workerscope/workerscope/workers/workerstest"

	"github.com/workerscope/workerscope/httpapi"
	"github.com/workerscope/workerscope/workers"
	"github.com/workerscope/workerscope/workers/demoworker"
)

func TestMain(m *testing.M) {
	if os.Getenv(sandbox.RoleEnv) != "" { // the sandbox helper of isolated workers
		os.Exit(sandbox.Main())
	}
	demoworker.TestMain(m)
}

const testToken = "routes-test-token-0123456789"

// newStack wires the real manager, telemetry and API as serve does.
func newStack(t *testing.T) (*httptest.Server, *workers.Manager) {
	t.Helper()
	return newStackEnv(t, map[string]string{"OTEL_METRICS_EXPORTER": "none"})
}

// newStackEnv is newStack with the OTEL_* environment given.
func newStackEnv(t *testing.T, env map[string]string) (*httptest.Server, *workers.Manager) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := &config{Worker: workers.Config{MaxWorkers: 64}, Getenv: func(k string) string { return env[k] }}
	tel, err := startTelemetry(context.Background(), cfg, "test", log, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tel.shutdown(context.Background()) })
	mgr := workerstest.NewDemoManager(t, func(c *workers.Config) { c.Logger = log; tel.wire(c) })
	api, err := httpapi.New(httpapi.Options{Token: testToken, Manager: mgr, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	obs := observed{sseClients: api.SSEClients, started: time.Now()}
	if err := tel.observe(cfg, mgr, obs, log); err != nil {
		t.Fatal(err)
	}
	tel.mount(api, mgr, obs, "test")
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	return srv, mgr
}

func get(t *testing.T, url, auth, accept string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestEveryTelemetryRouteNeedsTheToken(t *testing.T) {
	srv, _ := newStack(t)
	paths := []string{
		"/api/metrics", "/metrics",
		"/api/debug/pprof/", "/api/debug/pprof/heap", "/api/debug/pprof/goroutine?debug=1",
		"/api/debug/pprof/allocs", "/api/debug/pprof/mutex", "/api/debug/pprof/block",
		"/api/debug/pprof/threadcreate", "/api/debug/pprof/cmdline", "/api/debug/pprof/symbol",
		"/api/debug/pprof/profile?seconds=1", "/api/debug/pprof/trace?seconds=0.2",
	}
	for _, p := range paths {
		for _, auth := range []string{"", "Bearer wrong", "Basic " + basic("x", "wrong")} {
			if code, h, _ := get(t, srv.URL+p, auth, ""); code != 401 || h.Get("WWW-Authenticate") == "" {
				t.Errorf("%s with %q: %d", p, auth, code)
			}
		}
	}
	for _, p := range paths {
		if p == "/metrics" {
			continue // HTML page: its own test
		}
		code, _, body := get(t, srv.URL+p, "Basic "+basic("anyone", testToken), "")
		if code != 200 {
			t.Errorf("%s with the token: %d %s", p, code, body[:min(len(body), 200)])
		}
	}
}

func basic(user, pass string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(user, pass)
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

func TestPprofIndexLinksWorkUnderAPI(t *testing.T) {
	srv, _ := newStack(t)
	auth := "Bearer " + testToken
	code, _, body := get(t, srv.URL+"/api/debug/pprof/", auth, "")
	if code != 200 || !strings.Contains(body, "href='heap?debug=1'") {
		t.Fatalf("index: %d\n%s", code, body[:min(len(body), 500)])
	}
	code, _, body = get(t, srv.URL+"/api/debug/pprof/heap?debug=1", auth, "")
	if code != 200 || !strings.Contains(body, "heap profile") {
		t.Fatalf("heap via the index link: %d %s", code, body[:min(len(body), 200)])
	}
	code, _, body = get(t, srv.URL+"/api/debug/pprof/heap", auth, "")
	if code != 200 || len(body) < 2 || body[0] != 0x1f || body[1] != 0x8b {
		t.Fatalf("heap profile is not gzip'd protobuf: %d", code)
	}
}

func TestMetricsNegotiatesPrometheus(t *testing.T) {
	srv, mgr := newStack(t)
	if _, err := mgr.Send(context.Background(), "alpha", []byte(`{"type":"get_state"}`)); err != nil {
		t.Fatal(err)
	}
	auth := "Bearer " + testToken
	code, h, body := get(t, srv.URL+"/metrics", auth, "text/plain;version=0.0.4")
	if code != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Fatalf("prometheus: %d %s", code, h.Get("Content-Type"))
	}
	for _, want := range []string{"workerscope_worker_memory_usage_bytes{", `workerscope_worker_key="alpha"`, "workerscope_worker_count{", "workerscope_worker_cpu_time_seconds_total{", "process_cpu_time_seconds_total{", "go_schedule_duration_seconds_bucket{"} {
		if !strings.Contains(body, want) {
			t.Errorf("prometheus output lacks %s", want)
		}
	}
	code, h, _ = get(t, srv.URL+"/metrics", auth, "text/html,application/xhtml+xml,*/*;q=0.8")
	if strings.HasPrefix(h.Get("Content-Type"), "text/plain") || strings.Contains(h.Get("Content-Type"), "openmetrics") {
		t.Fatalf("a browser got %d %s", code, h.Get("Content-Type"))
	}
}

func TestAPIMetricsFromRealWorkers(t *testing.T) {
	srv, mgr := newStack(t)
	if _, err := mgr.Send(context.Background(), "busy", []byte(`{"type":"prompt","cpu_ms":200,"mem_mib":8,"events":1}`)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // past the sampler's min interval
	_, _, body := get(t, srv.URL+"/api/metrics", "Bearer "+testToken, "")
	var out struct {
		Workers []struct {
			Key        string   `json:"key"`
			PID        int      `json:"pid"`
			CPUPercent *float64 `json:"cpu_percent"`
			RSSBytes   *int64   `json:"rss_bytes"`
			Processes  *int     `json:"processes"`
		} `json:"workers"`
		Process map[string]any `json:"process"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err, body)
	}
	if len(out.Workers) != 1 || out.Workers[0].Key != "busy" || out.Workers[0].PID == 0 ||
		out.Workers[0].RSSBytes == nil || *out.Workers[0].RSSBytes < 8<<20 || out.Workers[0].CPUPercent == nil {
		t.Fatalf("report %s", body)
	}
	if out.Process["go_version"] == "" || out.Process["open_fds"] == nil {
		t.Fatalf("process %v", out.Process)
	}
}

// TestPrometheusWithSDKDisabled: with OTEL_SDK_DISABLED=true nothing is
// recorded, so a scraper gets 503 with the reason instead of an empty 200;
// the page still works.
func TestPrometheusWithSDKDisabled(t *testing.T) {
	srv, _ := newStackEnv(t, map[string]string{"OTEL_SDK_DISABLED": "true"})
	code, _, body := get(t, srv.URL+"/metrics", "Bearer "+testToken, "text/plain;version=0.0.4")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "OTEL_SDK_DISABLED") {
		t.Fatalf("scrape with the SDK disabled: %d %q", code, body)
	}
	if code, _, body := get(t, srv.URL+"/metrics", "Bearer "+testToken, "text/html"); code != 200 || !strings.Contains(body, "<html") {
		t.Fatalf("page with the SDK disabled: %d", code)
	}
}

// TestSpanProfiles: with tracing and Pyroscope on, a command's context
// carries its span id as a pprof label, so the supervisor's CPU samples
// taken during the command link to its span; with Pyroscope off it does not.
func TestSpanProfiles(t *testing.T) {
	ingest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }))
	t.Cleanup(ingest.Close)
	for _, profilingOn := range []bool{true, false} {
		env := map[string]string{
			"OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
			"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1",
		}
		if profilingOn {
			env["PYROSCOPE_SERVER_ADDRESS"] = ingest.URL
			env["PYROSCOPE_PROFILE_TYPES"] = "cpu"
		}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		cfg := &config{Worker: workers.Config{MaxWorkers: 8}, Getenv: func(k string) string { return env[k] }, PyroscopeServer: env["PYROSCOPE_SERVER_ADDRESS"]}
		tel, err := startTelemetry(context.Background(), cfg, "test", log, log)
		if err != nil {
			t.Fatal(err)
		}
		var wcfg workers.Config
		tel.wire(&wcfg)
		ctx, span := wcfg.Tracer.StartCommand(context.Background(), "alice", "prompt")
		spanID, labelled := pprof.Label(ctx, "span_id")
		span.End(workers.RPCResult{Key: "alice", Type: "prompt"})
		sctx, cancel := context.WithTimeout(context.Background(), time.Second) // nothing listens at the endpoint
		_ = tel.shutdown(sctx)
		cancel()
		if labelled != profilingOn || (profilingOn && len(spanID) != 16) {
			t.Errorf("profiling %v: span_id label %q present %v", profilingOn, spanID, labelled)
		}
	}
}
