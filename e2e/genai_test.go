//go:build linux

package e2e

import (
	"encoding/json"
	"math"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestAgentRunThroughTheBinary runs the binary as a user would, with the
// demo worker streaming pi's agent events and --session-token-budget:
// the collector receives the invoke_agent span with its chat and
// execute_tool children; /api/metrics shows the session's tokens and the
// tool calls with their CPU; a run that goes past the budget is aborted
// (its span says budget_exceeded, the event stream gets budget_exceeded,
// a WARN log record workerscope.budget_exceeded is exported), the next
// prompt gets 429 budget_exceeded, and DELETE resets the session.
func TestAgentRunThroughTheBinary(t *testing.T) {
	collectorBinary(t)
	grpcAddr := freePort(t)
	file := filepath.Join(t.TempDir(), "otel.jsonl")
	col := startCollector(t, grpcAddr, file)
	a := startAppArgs(t, grpcAddr, []string{"OTEL_BSP_SCHEDULE_DELAY=200", "OTEL_BLRP_SCHEDULE_DELAY=200"},
		"--session-token-budget", "5000")
	// 1100 tokens a model call: two turns (3 calls, 3300 tokens) fit.
	if r := a.rpc(t, "agent", `{"type":"prompt","agent_events":true,"turns":2,"cpu_ms":300}`); r["success"] != true {
		t.Fatalf("prompt: %v", r)
	}
	var root otlpSpan
	var kids []string
	waitFor(t, 30*time.Second, "the agent run's spans at the collector", func() bool {
		ss := spans(readSignals(t, file))
		for _, s := range ss {
			if s.Name == "invoke_agent demo-worker" && kvs(s.Attributes)["gen_ai.conversation.id"] == "agent" {
				root, kids = s, nil
				for _, k := range ss {
					if k.ParentSpanID == s.SpanID {
						kids = append(kids, k.Name)
					}
				}
				return len(kids) == 5
			}
		}
		return false
	}, a.proc, col.proc)
	slices.Sort(kids)
	if want := []string{"chat demo-model", "chat demo-model", "chat demo-model", "execute_tool bash", "execute_tool bash"}; !slices.Equal(kids, want) {
		t.Errorf("children %v, want %v", kids, want)
	}
	if at := kvs(root.Attributes); at["gen_ai.usage.input_tokens"] != "3000" || at["gen_ai.usage.output_tokens"] != "300" || at["workerscope.gen_ai.model_calls"] != "3" {
		t.Errorf("invoke_agent attributes %v", at)
	}

	// /api/metrics: the report is up to a second old, so poll.
	type agentJSON struct {
		TotalTokens int64 `json:"total_tokens"`
		ModelCalls  int64 `json:"model_calls"`
		LastTools   []struct {
			Name       string   `json:"name"`
			CPUSeconds *float64 `json:"cpu_seconds"`
		} `json:"last_tools"`
	}
	var ag *agentJSON
	waitFor(t, 10*time.Second, "the run in /api/metrics", func() bool {
		code, body := a.do(t, "GET", "/api/metrics", "")
		var rep struct {
			Workers []struct {
				Agent *agentJSON `json:"agent"`
			} `json:"workers"`
		}
		if err := json.Unmarshal(body, &rep); code != http.StatusOK || err != nil || len(rep.Workers) != 1 {
			t.Fatalf("/api/metrics: %d %v %s", code, err, body)
		}
		ag = rep.Workers[0].Agent
		return ag != nil && ag.ModelCalls == 3
	}, a.proc)
	if ag.TotalTokens != 3300 || len(ag.LastTools) != 2 || ag.LastTools[0].Name != "bash" || ag.LastTools[0].CPUSeconds == nil {
		t.Errorf("/api/metrics agent %+v", ag)
	}

	// The session's totals as per-worker metrics (the budget's share too).
	w := a.workers(t)["agent"]
	waitFor(t, 30*time.Second, "the session metrics at the collector", func() bool {
		points := readPoints(t, file)
		for _, name := range []string{"workerscope.session.gen_ai.cost", "workerscope.session.gen_ai.tokens", "workerscope.session.budget.utilization"} {
			if _, ok := latest(points, name, w.ID, ""); !ok {
				return false
			}
		}
		p, _ := latest(points, "workerscope.session.budget.utilization", w.ID, "")
		return p.Attrs["workerscope.budget"] == "tokens" && math.Abs(p.Value-3300.0/5000) < 1e-9 && p.Attrs["workerscope.worker.key"] == "agent"
	}, a.proc, col.proc)

	// Past the budget: 3300 + 2 × 1100 ≥ 5000 in the second run's second call.
	sse := openSSE(t, a.url+"/api/sessions/agent/events")
	if r := a.rpc(t, "agent", `{"type":"prompt","agent_events":true,"turns":20,"cpu_ms":40000}`); r["success"] != true {
		t.Fatalf("prompt: %v", r)
	}
	ev := sse.next(t, 30*time.Second, "budget_exceeded", func(l string) bool { return strings.Contains(l, `"type":"budget_exceeded"`) })
	if !strings.Contains(ev, `"code":"budget_exceeded"`) || !strings.Contains(ev, `"budget":"tokens"`) {
		t.Errorf("event %s", ev)
	}
	sse.next(t, 20*time.Second, "agent_end after the abort", func(l string) bool { return strings.Contains(l, `"type":"agent_end"`) })
	code, body := a.do(t, "POST", "/api/sessions/agent/rpc", `{"type":"prompt","agent_events":true}`)
	if code != http.StatusTooManyRequests || !strings.Contains(string(body), `"code":"budget_exceeded"`) {
		t.Errorf("prompt past the budget: %d %s, want 429 budget_exceeded", code, body)
	}
	waitFor(t, 30*time.Second, "the aborted run's span and the log record", func() bool {
		docs := readSignals(t, file)
		aborted := false
		for _, s := range spans(docs) {
			at := kvs(s.Attributes)
			if strings.HasPrefix(s.Name, "invoke_agent") && at["error.type"] == "budget_exceeded" && at["workerscope.budget"] == "tokens" {
				aborted = true
			}
		}
		logged := false
		for _, l := range logRecords(docs) {
			if l.EventName == "workerscope.budget_exceeded" && l.SeverityNumber == 13 { // WARN
				logged = true
			}
		}
		return aborted && logged
	}, a.proc, col.proc)
	if code, body := a.do(t, "DELETE", "/api/sessions/agent", ""); code != http.StatusNoContent {
		t.Fatalf("reset: %d %s", code, body)
	}
	if r := a.rpc(t, "agent", `{"type":"prompt","agent_events":true,"turns":0}`); r["success"] != true {
		t.Errorf("prompt after the reset: %v", r)
	}
}
