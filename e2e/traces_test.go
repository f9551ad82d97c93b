//go:build linux

package e2e

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// otlpSignals is the subset of the file exporter's spans, logs and
// histogram exemplars that the trace tests read.
type otlpSignals struct {
	ResourceSpans []struct {
		ScopeSpans []struct {
			Spans []otlpSpan `json:"spans"`
		} `json:"scopeSpans"`
	} `json:"resourceSpans"`
	ResourceLogs []struct {
		ScopeLogs []struct {
			LogRecords []otlpLog `json:"logRecords"`
		} `json:"scopeLogs"`
	} `json:"resourceLogs"`
	ResourceMetrics []struct {
		ScopeMetrics []struct {
			Metrics []struct {
				Name      string `json:"name"`
				Histogram *struct {
					DataPoints []struct {
						Attributes []anyKV `json:"attributes"`
						Count      string  `json:"count"`
						Sum        float64 `json:"sum"`
						Exemplars  []struct {
							TraceID string `json:"traceId"`
							SpanID  string `json:"spanId"`
						} `json:"exemplars"`
					} `json:"dataPoints"`
				} `json:"histogram"`
			} `json:"metrics"`
		} `json:"scopeMetrics"`
	} `json:"resourceMetrics"`
}

type otlpSpan struct {
	TraceID      string  `json:"traceId"`
	SpanID       string  `json:"spanId"`
	ParentSpanID string  `json:"parentSpanId"`
	Name         string  `json:"name"`
	Kind         int     `json:"kind"`
	Attributes   []anyKV `json:"attributes"`
	Events       []struct {
		Name string `json:"name"`
	} `json:"events"`
}

type otlpLog struct {
	SeverityNumber int     `json:"severityNumber"`
	SeverityText   string  `json:"severityText"`
	EventName      string  `json:"eventName"`
	Body           anyVal  `json:"body"`
	Attributes     []anyKV `json:"attributes"`
	TraceID        string  `json:"traceId"`
	SpanID         string  `json:"spanId"`
}

type anyVal struct {
	StringValue *string  `json:"stringValue"`
	IntValue    *string  `json:"intValue"`
	DoubleValue *float64 `json:"doubleValue"`
	BoolValue   *bool    `json:"boolValue"`
}

func (v anyVal) String() string {
	switch {
	case v.StringValue != nil:
		return *v.StringValue
	case v.IntValue != nil:
		return *v.IntValue
	case v.DoubleValue != nil:
		return strconv.FormatFloat(*v.DoubleValue, 'g', -1, 64)
	case v.BoolValue != nil:
		return strconv.FormatBool(*v.BoolValue)
	}
	return ""
}

type anyKV struct {
	Key   string `json:"key"`
	Value anyVal `json:"value"`
}

func kvs(a []anyKV) map[string]string {
	m := make(map[string]string, len(a))
	for _, kv := range a {
		m[kv.Key] = kv.Value.String()
	}
	return m
}

// readSignals reads every document of the file so far.
func readSignals(t testing.TB, path string) []otlpSignals {
	t.Helper()
	var out []otlpSignals
	eachJSONLine(t, path, func(doc *otlpSignals) { out = append(out, *doc) })
	return out
}

func spans(docs []otlpSignals) []otlpSpan {
	var out []otlpSpan
	for _, d := range docs {
		for _, rs := range d.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				out = append(out, ss.Spans...)
			}
		}
	}
	return out
}

func logRecords(docs []otlpSignals) []otlpLog {
	var out []otlpLog
	for _, d := range docs {
		for _, rl := range d.ResourceLogs {
			for _, sl := range rl.ScopeLogs {
				out = append(out, sl.LogRecords...)
			}
		}
	}
	return out
}

// rpcTraced sends a command with a W3C traceparent.
func (a *app) rpcTraced(t testing.TB, key, cmd, traceparent string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", a.url+"/api/sessions/"+key+"/rpc", strings.NewReader(cmd))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("traceparent", traceparent)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"success":true`) {
		t.Fatalf("rpc %s: %d %s", cmd, resp.StatusCode, b)
	}
}

// TestTraceEndToEnd: workerscope → OTLP gRPC → the real collector →
// file: a command's span continues the caller's trace and carries the
// worker tree's exact CPU cost (a child that exited included); a stderr
// line becomes a log record with the worker's attributes and the trace of
// the command in flight; a stderr flood is cut at the rate with every
// dropped line counted; rpc.duration has exemplars linking to spans.
func TestTraceEndToEnd(t *testing.T) {
	dir := t.TempDir()
	grpcAddr := freePort(t)
	col := startCollector(t, grpcAddr, filepath.Join(dir, "otel.jsonl"))
	a := startApp(t, grpcAddr, "OTEL_BSP_SCHEDULE_DELAY=200", "OTEL_BLRP_SCHEDULE_DELAY=200")

	a.rpc(t, "cost", `{"type":"get_state"}`) // spawned and idle before the measured command
	w := a.workers(t)["cost"]

	const trace1, parent1 = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	before := readTreeCPU(t, w.PID)
	a.rpcTraced(t, "cost", `{"type":"work","cpu_ms":1000,"child_cpu_ms":1000,"events":4}`, "00-"+trace1+"-"+parent1+"-01")
	// The truth: "work" answers once its child has exited and been reaped.
	truth := readTreeCPU(t, w.PID).sub(before)

	var work otlpSpan
	waitFor(t, 30*time.Second, "the work span", func() bool {
		for _, s := range spans(readSignals(t, col.file)) {
			if s.Name == "work" {
				work = s
				return true
			}
		}
		return false
	}, col.proc, a.proc)
	attrs := kvs(work.Attributes)
	t.Logf("work span: %v, %d events", attrs, len(work.Events))
	if work.TraceID != trace1 || work.ParentSpanID != parent1 {
		t.Errorf("span %s/%s parent %s: want the caller's trace %s and parent %s", work.TraceID, work.SpanID, work.ParentSpanID, trace1, parent1)
	}
	if work.Kind != 3 { // SPAN_KIND_CLIENT
		t.Errorf("span kind %d, want client (3)", work.Kind)
	}
	cpu, _ := strconv.ParseFloat(attrs["workerscope.cost.cpu_time"], 64)
	if !near(cpu, truth) {
		t.Errorf("workerscope.cost.cpu_time %.3f s, want the %s the worker's tree used, read from /proc around the command (the worker's own and a child's that exited before the answer)", cpu, truth.total)
	}
	user, _ := strconv.ParseFloat(attrs["workerscope.cost.cpu_time.user"], 64)
	sys, _ := strconv.ParseFloat(attrs["workerscope.cost.cpu_time.system"], 64)
	if d := user + sys - cpu; d > 1e-6 || d < -1e-6 {
		t.Errorf("user %.3f + system %.3f ≠ cpu_time %.3f", user, sys, cpu)
	}
	if attrs["workerscope.worker.id"] != w.ID || attrs["workerscope.worker.key"] != "cost" || attrs["process.pid"] != strconv.Itoa(w.PID) || attrs["rpc.method"] != "work" {
		t.Errorf("worker attributes %v, want %+v", attrs, w)
	}
	if p, _ := strconv.Atoi(attrs["workerscope.cost.processes"]); p < 1 {
		t.Errorf("workerscope.cost.processes %q, want the child counted", attrs["workerscope.cost.processes"])
	}
	if m, _ := strconv.ParseInt(attrs["workerscope.cost.memory.peak"], 10, 64); m <= 0 {
		t.Errorf("workerscope.cost.memory.peak %q", attrs["workerscope.cost.memory.peak"])
	}
	if attrs["workerscope.cost.shared"] != "false" || len(work.Events) != 4 {
		t.Errorf("shared %q, %d events (want false, 4)", attrs["workerscope.cost.shared"], len(work.Events))
	}

	// A stderr line printed while a command is in flight.
	const trace2 = "0af7651916cd43dd8448eb211c80319c"
	a.rpcTraced(t, "cost", `{"type":"stderr","message":"level=error e2e-marker","ms":300}`, "00-"+trace2+"-b7ad6b7169203331-01")
	var rec otlpLog
	waitFor(t, 30*time.Second, "the stderr log record", func() bool {
		for _, r := range logRecords(readSignals(t, col.file)) {
			if r.Body.String() == "level=error e2e-marker" {
				rec = r
				return true
			}
		}
		return false
	}, col.proc, a.proc)
	la := kvs(rec.Attributes)
	if la["workerscope.worker.id"] != w.ID || la["workerscope.worker.key"] != "cost" || la["process.pid"] != strconv.Itoa(w.PID) || la["log.iostream"] != "stderr" {
		t.Errorf("log attributes %v", la)
	}
	if rec.TraceID != trace2 || rec.SpanID == "" {
		t.Errorf("log record trace %q span %q, want the in-flight command's trace %s", rec.TraceID, rec.SpanID, trace2)
	}
	if rec.SeverityNumber != 17 || rec.SeverityText != "ERROR" { // SEVERITY_NUMBER_ERROR
		t.Errorf("severity %d %q, want ERROR (17)", rec.SeverityNumber, rec.SeverityText)
	}

	// A flood: at most the burst and the rate get through, every other
	// line is counted.
	const flood = 3000
	a.rpc(t, "flood", fmt.Sprintf(`{"type":"stderr","lines":%d,"message":"flood"}`, flood))
	var passed, dropped int
	waitFor(t, 30*time.Second, "every flood line exported or counted as dropped", func() bool {
		passed = 0
		for _, r := range logRecords(readSignals(t, col.file)) {
			if strings.HasPrefix(r.Body.String(), "flood ") {
				passed++
			}
		}
		dropped = 0
		for _, p := range readPoints(t, col.file) {
			if p.Metric == "workerscope.worker.log_records_dropped" && int(p.Value) > dropped {
				dropped = int(p.Value)
			}
		}
		return passed+dropped == flood
	}, col.proc, a.proc)
	t.Logf("flood of %d lines: %d exported, %d dropped", flood, passed, dropped)
	if passed > 400 || dropped < flood-400 {
		t.Errorf("%d flood lines exported, %d dropped: want the rest of a 200-line burst at 100/s dropped", passed, dropped)
	}

	// Lifecycle records and exemplars.
	var starts int
	for _, r := range logRecords(readSignals(t, col.file)) {
		if r.EventName == "workerscope.worker_start" {
			starts++
		}
	}
	if starts < 2 {
		t.Errorf("%d worker_start records, want one per worker (2)", starts)
	}
	waitFor(t, 30*time.Second, "an rpc.duration exemplar linking to the work span, and rpc.cpu_time for work", func() bool {
		exemplar, cpuTime := false, false
		for _, d := range readSignals(t, col.file) {
			for _, rm := range d.ResourceMetrics {
				for _, sm := range rm.ScopeMetrics {
					for _, m := range sm.Metrics {
						if m.Histogram == nil {
							continue
						}
						for _, dp := range m.Histogram.DataPoints {
							if kvs(dp.Attributes)["rpc.method"] != "work" {
								continue
							}
							switch m.Name {
							case "workerscope.rpc.duration":
								for _, e := range dp.Exemplars {
									exemplar = exemplar || (e.TraceID == trace1 && e.SpanID == work.SpanID)
								}
							case "workerscope.rpc.cpu_time":
								cpuTime = cpuTime || (dp.Count == "1" && near(dp.Sum, truth))
							}
						}
					}
				}
			}
		}
		return exemplar && cpuTime
	}, col.proc, a.proc)
}

// TestTraceRunEndToEnd: pi's prompt (and the demo worker's) answers at
// once and then works until agent_end. Its span, through the real
// collector, covers the whole run: the run's CPU within 10 %, its events,
// how it ended and when the response came; workerscope.run.cpu_time has
// the run's CPU and workerscope.run.duration an exemplar linking to the
// span, while workerscope.rpc.duration stays the time to the response.
func TestTraceRunEndToEnd(t *testing.T) {
	dir := t.TempDir()
	grpcAddr := freePort(t)
	col := startCollector(t, grpcAddr, filepath.Join(dir, "otel.jsonl"))
	a := startApp(t, grpcAddr, "OTEL_BSP_SCHEDULE_DELAY=200", "OTEL_BLRP_SCHEDULE_DELAY=200")

	a.rpc(t, "run", `{"type":"get_state"}`) // spawned and idle before the measured prompt
	w := a.workers(t)["run"]
	const trace1 = "5bf92f3577b34da6a3ce929d0e0e4737"
	before := readTreeCPU(t, w.PID)
	a.rpcTraced(t, "run", `{"type":"prompt","message":"e2e","cpu_ms":1500,"events":5}`, "00-"+trace1+"-10f067aa0ba902b8-01")

	var prompt otlpSpan
	waitFor(t, 30*time.Second, "the prompt's span, ended with its run", func() bool {
		for _, s := range spans(readSignals(t, col.file)) {
			if s.Name == "prompt" && s.TraceID == trace1 {
				prompt = s
				return true
			}
		}
		return false
	}, col.proc, a.proc)
	// The truth: the run is over (its span was exported), the worker idle.
	truth := readTreeCPU(t, w.PID).sub(before)
	attrs := kvs(prompt.Attributes)
	t.Logf("prompt span: %v, %d events; /proc: %s", attrs, len(prompt.Events), truth.total)
	cpu, _ := strconv.ParseFloat(attrs["workerscope.cost.cpu_time"], 64)
	if !near(cpu, truth) {
		t.Errorf("workerscope.cost.cpu_time %.3f s, want the run's %s read from /proc around it", cpu, truth.total)
	}
	if attrs["workerscope.run"] != "true" || attrs["workerscope.run.end"] != "agent_end" || attrs["workerscope.worker.id"] != w.ID {
		t.Errorf("run attributes %v, want workerscope.run=true, run.end=agent_end on worker %s", attrs, w.ID)
	}
	rt, err := strconv.ParseFloat(attrs["workerscope.response_time"], 64)
	if err != nil || rt <= 0 {
		t.Errorf("workerscope.response_time %q", attrs["workerscope.response_time"])
	}
	var names []string
	for _, e := range prompt.Events {
		names = append(names, e.Name)
	}
	if len(names) != 7 || names[0] != "agent_start" || names[6] != "agent_end" || attrs["workerscope.events"] != "7" {
		t.Errorf("span events %v (workerscope.events %s), want agent_start, 5 message_update, agent_end", names, attrs["workerscope.events"])
	}

	waitFor(t, 30*time.Second, "run.cpu_time with the run's CPU, run.duration's exemplar linking to the span, rpc.duration the response's time, below the run's", func() bool {
		runCPU, exemplar := false, false
		runDur, rpcDur := -1.0, -1.0
		for _, d := range readSignals(t, col.file) {
			for _, rm := range d.ResourceMetrics {
				for _, sm := range rm.ScopeMetrics {
					for _, m := range sm.Metrics {
						if m.Histogram == nil {
							continue
						}
						for _, dp := range m.Histogram.DataPoints {
							if kvs(dp.Attributes)["rpc.method"] != "prompt" {
								continue
							}
							switch m.Name {
							case "workerscope.run.cpu_time":
								runCPU = runCPU || (dp.Count == "1" && near(dp.Sum, truth))
							case "workerscope.run.duration":
								for _, e := range dp.Exemplars {
									exemplar = exemplar || (e.TraceID == trace1 && e.SpanID == prompt.SpanID)
								}
								if dp.Count == "1" {
									runDur = dp.Sum
								}
							case "workerscope.rpc.duration":
								if dp.Count == "1" {
									rpcDur = dp.Sum
								}
							}
						}
					}
				}
			}
		}
		// rpc.duration is the time to the response (the span's
		// response_time), which comes before the run's CPU is spent: below
		// the run's duration however slow the machine.
		rpcIsResponse := rpcDur >= 0 && math.Abs(rpcDur-rt) < 1e-6 && rpcDur < runDur
		return runCPU && exemplar && rpcIsResponse
	}, col.proc, a.proc)
}
