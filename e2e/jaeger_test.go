//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/modelstub"
)

// jaegerBinary finds Jaeger (v2, cmd/jaeger of github.com/jaegertracing/jaeger
// v1.75.0, `make jaeger`): $WORKERSCOPE_JAEGER, else the Makefile's cache.
// Its cold build takes about 13 CPU-minutes, so `make test` neither builds
// it nor runs this test: `make test-jaeger` does (WORKERSCOPE_JAEGER_TEST=
// required, where a missing binary fails; any other non-empty value runs
// the test when the binary is there).
func jaegerBinary(t *testing.T) string {
	t.Helper()
	if os.Getenv("WORKERSCOPE_JAEGER_TEST") == "" {
		t.Skip("the Jaeger test runs with make test-jaeger (WORKERSCOPE_JAEGER_TEST=required)")
	}
	path := os.Getenv("WORKERSCOPE_JAEGER")
	if path == "" {
		home, _ := os.UserHomeDir()
		path = filepath.Join(home, ".cache", "workerscope", "jaeger-v1.75.0", "jaeger")
	}
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("WORKERSCOPE_JAEGER_TEST") == "required" {
			t.Fatalf("jaeger binary %s: %v (run make jaeger)", path, err)
		}
		t.Skipf("jaeger binary %s not built (make jaeger); skipping", path)
	}
	return path
}

// jaeger is a running Jaeger all-in-one with in-memory storage.
type jaeger struct {
	*proc
	otlp, query string
}

// startJaeger runs Jaeger on free 127.0.0.1 ports: OTLP gRPC in, the
// query API out.
func startJaeger(t *testing.T) *jaeger {
	t.Helper()
	bin := jaegerBinary(t)
	j := &jaeger{otlp: freePort(t), query: freePort(t)}
	health := freePort(t)
	cfg := fmt.Sprintf(`service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: %s
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: %s
    grpc:
      endpoint: %s
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`, health, j.query, freePort(t), j.otlp)
	path := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	j.proc = start(t, bin, nil, "--config", path)
	waitFor(t, 60*time.Second, "jaeger's query API", func() bool {
		resp, err := http.Get("http://" + j.query + "/api/services")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, j.proc)
	return j
}

// jTrace is a trace as Jaeger's query API (/api/traces) returns it.
type jTrace struct {
	TraceID string  `json:"traceID"`
	Spans   []jSpan `json:"spans"`
}

type jSpan struct {
	SpanID        string `json:"spanID"`
	OperationName string `json:"operationName"`
	References    []struct {
		RefType string `json:"refType"`
		SpanID  string `json:"spanID"`
	} `json:"references"`
	StartTime int64 `json:"startTime"` // µs
	Duration  int64 `json:"duration"`  // µs
	Tags      []struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	} `json:"tags"`
}

func (s jSpan) parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

func (s jSpan) tag(k string) any {
	for _, t := range s.Tags {
		if t.Key == k {
			return t.Value
		}
	}
	return nil
}

func (s jSpan) num(k string) float64 {
	switch v := s.tag(k).(type) {
	case float64:
		return v
	case string:
		f, _ := strconv.ParseFloat(v, 64)
		return f
	}
	return math.NaN()
}

// traces queries Jaeger for service's traces that hold an operation.
func (j *jaeger) traces(t *testing.T, service, operation string) []jTrace {
	t.Helper()
	url := fmt.Sprintf("http://%s/api/traces?service=%s&operation=%s&limit=50&lookback=1h", j.query, service, strings.ReplaceAll(operation, " ", "%20"))
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Data []jTrace `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	return body.Data
}

// TestJaegerAgentRun is the GenAI trace end to end: the binary supervises
// the real pi, which a scripted OpenAI-compatible model drives through a
// bash tool call with a CPU burn; spans go over OTLP to the collector
// (the shipped config with an overlay that forwards traces) and on to
// Jaeger, whose query API must return the invoke_agent → chat /
// execute_tool tree with the scripted tokens, pi's cost and a tool CPU
// within 10 % of the burn's own /proc reading. A second session goes past
// its spend budget: its run is aborted, the trace says budget_exceeded,
// its next prompt is refused with 429 until DELETE resets it.
func TestJaegerAgentRun(t *testing.T) {
	collectorBinary(t)
	jg := startJaeger(t)
	pi := requiredTool(t, "WORKERSCOPE_PI_BIN", "pi", "npm install -g @mariozechner/pi-coding-agent@0.73.1",
		filepath.Join(os.Getenv("HOME"), ".cache", "workerscope", "pi-0.73.1", "node_modules", ".bin", "pi"))
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash for pi's bash tool")
	}

	dir := t.TempDir()
	stat := filepath.Join(dir, "burn.stat")
	burn := fmt.Sprintf(`i=0; while [ $i -lt 2000000 ]; do i=$((i+1)); done; cat /proc/$$/stat > %s`, stat)
	price := modelstub.Price{Input: 3, Output: 15, CacheRead: 0.3}
	u1 := modelstub.Usage{Prompt: 1200, Completion: 40, Cached: 200}
	u2 := modelstub.Usage{Prompt: 1500, Completion: 12, Cached: 1000}
	big := modelstub.Usage{Prompt: 200000, Completion: 2000}
	budget := (price.Cost(big) + price.Cost(u1) + price.Cost(u2)) / 2 // the burn session stays under it, one big call does not
	srv := modelstub.StartFunc(func(r modelstub.Request) modelstub.Reply {
		switch {
		case strings.Contains(r.LastUser, "burn") && r.ToolResults == 0:
			return modelstub.Reply{ToolCalls: []modelstub.ToolCall{{ID: "call_burn", Name: "bash", Arguments: map[string]any{"command": burn}}}, Usage: u1, Delay: 100 * time.Millisecond}
		case strings.Contains(r.LastUser, "burn"):
			return modelstub.Reply{Text: "The burn is done.", Usage: u2}
		case strings.Contains(r.LastUser, "expensive") && r.ToolResults == 0:
			return modelstub.Reply{ToolCalls: []modelstub.ToolCall{{ID: "call_sleep", Name: "bash", Arguments: map[string]any{"command": "sleep 60"}}}, Usage: big}
		}
		return modelstub.Reply{Text: "ok", Usage: modelstub.Usage{Prompt: 10, Completion: 1}}
	})
	t.Cleanup(srv.Close)
	env, err := modelstub.PiAgentDir(filepath.Join(dir, "agent"), srv.URL, "scripted", "m1", price)
	if err != nil {
		t.Fatal(err)
	}

	// The collector: the shipped config, traces forwarded to Jaeger.
	overlay := filepath.Join(dir, "to-jaeger.yaml")
	if err := os.WriteFile(overlay, []byte(fmt.Sprintf(`exporters:
  otlp/jaeger:
    endpoint: %s
    tls:
      insecure: true
processors:
  batch:
    timeout: 100ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      exporters: [debug, otlp/jaeger]
`, jg.otlp)), 0o644); err != nil {
		t.Fatal(err)
	}
	grpcAddr := freePort(t)
	col := startOtelcol(t, []string{"OTELCOL_GRPC_ENDPOINT=" + grpcAddr, "OTELCOL_HTTP_ENDPOINT=" + freePort(t)},
		"otel-collector.yaml", overlay)

	// pi inside the binary's default sandbox (Landlock where the kernel has
	// it), configured as a deployment would: its models.json readable, the
	// scripted model's port reachable, the burn's reading writable.
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	a := startAppArgs(t, grpcAddr, append(env, "HOME="+dir, "OTEL_BSP_SCHEDULE_DELAY=200", "OTEL_SERVICE_NAME=ws-genai"),
		"--worker-cmd", pi+" --mode rpc --no-session --provider scripted --model m1",
		"--session-spend-budget-usd", strconv.FormatFloat(budget, 'f', -1, 64),
		"--worker-sandbox-ro", filepath.Join(dir, "agent"), "--worker-sandbox-rw", dir,
		"--worker-allow-ports", "443,"+u.Port())
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []*proc{jg.proc, col, a.proc} {
				t.Logf("output of %s:\n%s", filepath.Base(p.cmd.Path), tail(p.output(), 4000))
			}
		}
	})

	// The burn.
	if r := a.rpc(t, "genai", `{"type":"prompt","message":"burn some CPU, then say so"}`); r["success"] != true {
		t.Fatalf("prompt: %v", r)
	}
	var tr jTrace
	waitFor(t, 90*time.Second, "the agent run's trace in Jaeger", func() bool {
		for _, x := range jg.traces(t, "ws-genai", "invoke_agent pi") {
			if len(x.Spans) >= 4 {
				tr = x
				return true
			}
		}
		return false
	}, a.proc, col, jg.proc)
	var root jSpan
	for _, s := range tr.Spans {
		if s.OperationName == "invoke_agent pi" {
			root = s
		}
	}
	var kids []jSpan
	for _, s := range tr.Spans {
		if s.parent() == root.SpanID {
			kids = append(kids, s)
		}
	}
	slices.SortFunc(kids, func(x, y jSpan) int { return int(x.StartTime - y.StartTime) })
	var names []string
	for _, k := range kids {
		names = append(names, k.OperationName)
	}
	if want := []string{"chat m1", "execute_tool bash", "chat m1"}; !slices.Equal(names, want) {
		t.Fatalf("children of invoke_agent: %v, want %v", names, want)
	}
	for i, c := range []struct {
		s jSpan
		u modelstub.Usage
	}{{kids[0], u1}, {kids[2], u2}} {
		if c.s.num("gen_ai.usage.input_tokens") != float64(c.u.Prompt) || c.s.num("gen_ai.usage.output_tokens") != float64(c.u.Completion) ||
			c.s.num("gen_ai.usage.cache_read.input_tokens") != float64(c.u.Cached) {
			t.Errorf("chat %d tokens %v/%v/%v, want %d/%d/%d as scripted", i, c.s.tag("gen_ai.usage.input_tokens"),
				c.s.tag("gen_ai.usage.output_tokens"), c.s.tag("gen_ai.usage.cache_read.input_tokens"), c.u.Prompt, c.u.Completion, c.u.Cached)
		}
		if got, want := c.s.num("workerscope.gen_ai.usage.cost_usd"), price.Cost(c.u); math.Abs(got-want) > 1e-12 {
			t.Errorf("chat %d cost $%v, want $%v", i, got, want)
		}
		if c.s.tag("gen_ai.provider.name") != "scripted" || c.s.tag("gen_ai.request.model") != "m1" {
			t.Errorf("chat %d provider/model %v/%v", i, c.s.tag("gen_ai.provider.name"), c.s.tag("gen_ai.request.model"))
		}
	}
	tool := kids[1]
	b, err := os.ReadFile(stat)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+1:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	burnCPU := (ut + st) / 100
	toolCPU := tool.num("workerscope.cost.cpu_time")
	t.Logf("execute_tool bash: cpu %.2f s (tree), the burn's own /proc %.2f s; tags %v", toolCPU, burnCPU, tool.Tags)
	if burnCPU < 1 || toolCPU < burnCPU-0.02 || toolCPU > burnCPU*1.1 {
		t.Errorf("tool span cpu %.3f s, want the burn's %.3f s within 10%%", toolCPU, burnCPU)
	}
	if tool.tag("gen_ai.tool.call.id") != "call_burn" || tool.tag("gen_ai.tool.call.arguments") != nil {
		t.Errorf("tool span call id %v, arguments %v (want none without the content opt-in)", tool.tag("gen_ai.tool.call.id"), tool.tag("gen_ai.tool.call.arguments"))
	}
	if got, want := root.num("workerscope.gen_ai.usage.cost_usd"), price.Cost(u1)+price.Cost(u2); math.Abs(got-want) > 1e-12 ||
		root.tag("gen_ai.conversation.id") != "genai" || root.tag("gen_ai.operation.name") != "invoke_agent" {
		t.Errorf("invoke_agent: cost %v (want %v), conversation %v", got, want, root.tag("gen_ai.conversation.id"))
	}

	// The budget.
	started := time.Now()
	if r := a.rpc(t, "broke", `{"type":"prompt","message":"something expensive"}`); r["success"] != true {
		t.Fatalf("prompt: %v", r)
	}
	var aborted jSpan
	waitFor(t, 60*time.Second, "the aborted run's trace", func() bool {
		for _, x := range jg.traces(t, "ws-genai", "invoke_agent pi") {
			for _, s := range x.Spans {
				if s.tag("gen_ai.conversation.id") == "broke" {
					aborted = s
					return true
				}
			}
		}
		return false
	}, a.proc, col, jg.proc)
	if aborted.tag("error.type") != "budget_exceeded" || aborted.tag("workerscope.budget") != "spend" || aborted.tag("otel.status_code") != "ERROR" {
		t.Errorf("aborted run's span tags %v", aborted.Tags)
	}
	if d := time.Duration(aborted.Duration) * time.Microsecond; d > 30*time.Second {
		t.Errorf("the aborted run lasted %s (its tool sleeps 60 s)", d)
	}
	t.Logf("budget run aborted %s after the prompt", time.Since(started).Round(time.Millisecond))
	code, body := a.do(t, "POST", "/api/sessions/broke/rpc", `{"type":"prompt","message":"more"}`)
	if code != http.StatusTooManyRequests || !strings.Contains(string(body), `"code":"budget_exceeded"`) {
		t.Errorf("prompt past the budget: %d %s, want 429 budget_exceeded", code, body)
	}
	if code, body := a.do(t, "DELETE", "/api/sessions/broke", ""); code != http.StatusNoContent {
		t.Errorf("reset: %d %s", code, body)
	}
	if r := a.rpc(t, "broke", `{"type":"prompt","message":"cheap now"}`); r["success"] != true {
		t.Errorf("prompt after the reset: %v", r)
	}
}
