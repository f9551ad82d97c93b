//go:build linux

package workers_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/testutil"
	"github.com/workerscope/workerscope/workers"
)

// ModelCall and ToolCall make recSpan an AgentSpan: it records the steps
// of its run, and whether they came before its End.
func (s *recSpan) ModelCall(c *workers.ModelCall) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, "chat:"+c.Model)
	if s.ended > 0 {
		s.events = append(s.events, "after-end")
	}
}

func (s *recSpan) ToolCall(c *workers.ToolCall) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, "tool:"+c.Name)
	if s.ended > 0 {
		s.events = append(s.events, "after-end")
	}
}

// agentRecorder collects what OnModelCall and OnToolCall receive.
type agentRecorder struct {
	mu    sync.Mutex
	calls []workers.ModelCall
	tools []workers.ToolCall
}

func (r *agentRecorder) onModel(c workers.ModelCall) {
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.mu.Unlock()
}

func (r *agentRecorder) onTool(c workers.ToolCall) {
	r.mu.Lock()
	r.tools = append(r.tools, c)
	r.mu.Unlock()
}

func (r *agentRecorder) get() ([]workers.ModelCall, []workers.ToolCall) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls), slices.Clone(r.tools)
}

// TestAgentRunSteps: a run that streams pi's events (the demo worker's
// agent_events) yields one ModelCall per assistant message, with its usage,
// and one ToolCall per tool execution, with the worker tree's CPU over
// the tool's interval; both reach the run's span before it ends, and the
// session's totals and last tools are in the snapshot. The tools' CPU is
// compared with the tree's CPU read from /proc around the whole run (the
// run does little besides the tools' burns).
func TestAgentRunSteps(t *testing.T) {
	tr, rec, ag := &recTracer{}, &runRecorder{}, &agentRecorder{}
	cfg := runConfig(t, tr, rec)
	cfg.OnModelCall, cfg.OnToolCall = ag.onModel, ag.onTool
	m := newManager(t, cfg)
	send(t, m, "a", `{"type":"get_state"}`)
	pid := m.Snapshot()[0].PID
	before := testutil.ReadTreeCPU(t, pid)
	send(t, m, "a", `{"type":"prompt","message":"hi","agent_events":true,"turns":2,"cpu_ms":800,"input_tokens":1200,"output_tokens":80,"cache_tokens":300,"cost_usd":0.0125}`)
	s, r, events := spanOf(t, tr, 1)
	truth := testutil.ReadTreeCPU(t, pid).Sub(before)
	if r.Run == nil || r.Run.End != workers.RunEndAgentEnd || r.Run.Budget != "" {
		t.Fatalf("run %+v, want one ended by agent_end", r.Run)
	}
	var steps []string
	for _, e := range events {
		if strings.Contains(e, ":") || e == "after-end" {
			steps = append(steps, e)
		}
	}
	if want := []string{"chat:demo-model", "tool:bash", "chat:demo-model", "tool:bash", "chat:demo-model"}; !slices.Equal(steps, want) {
		t.Errorf("span %s got steps %v, want %v (before its end)", s.typ, steps, want)
	}
	calls, tools := ag.get()
	if len(calls) != 3 || len(tools) != 2 {
		t.Fatalf("OnModelCall got %d, OnToolCall %d; want 3 and 2", len(calls), len(tools))
	}
	want := workers.Usage{Input: 1200, Output: 80, CacheRead: 300, Total: 1580, CostUSD: 0.0125}
	for i, c := range calls {
		if c.Usage != want || c.Provider != "demo" || c.Model != "demo-model" || c.Key != "a" || c.Incomplete || c.Content != nil {
			t.Errorf("model call %d: %+v, want usage %+v from provider demo, no content", i, c, want)
		}
		if c.End.Before(c.Start) || c.Context.Value(ctxKey{}) == nil {
			t.Errorf("model call %d: %s…%s, context without the run's span", i, c.Start, c.End)
		}
	}
	if calls[0].StopReason != "toolUse" || calls[2].StopReason != "stop" {
		t.Errorf("stop reasons %q, %q; want toolUse, stop", calls[0].StopReason, calls[2].StopReason)
	}
	var toolCPU time.Duration
	for i, tc := range tools {
		if tc.Name != "bash" || tc.ID == "" || tc.IsError || tc.Cost == nil || tc.Args != nil || tc.Result != nil {
			t.Fatalf("tool call %d: %+v, want bash, measured, no content", i, tc)
		}
		if tc.Cost.Shared || tc.Cost.MemoryPeak <= 0 {
			t.Errorf("tool call %d cost %+v: want not shared, a memory peak", i, tc.Cost)
		}
		toolCPU += tc.Cost.CPU()
	}
	// The tools' intervals are inside the run: never more than the truth,
	// and at least 90% of it (the run's events outside the tools cost a
	// few ms).
	slack := testutil.CPUSlack(truth.Processes)
	if toolCPU > truth.Total()+slack || toolCPU < truth.Total()*9/10-slack {
		t.Errorf("tools' cpu %s, want 90–100%% of the run's %s read from /proc (±%s)", toolCPU, truth.Total(), slack)
	}
	t.Logf("tools' cpu %s of the run's %s (/proc)", toolCPU, truth.Total())
	snap, _ := snapshotOf(m, "a")
	if a := snap.Agent; a == nil || a.ModelCalls != 3 || a.ToolCalls != 2 || a.Usage.Total != 3*1580 || len(a.LastTools) != 2 || !a.LastTools[0].HasCost {
		t.Errorf("snapshot agent %+v, want the session's 3 calls and 2 tools", a)
	}
	if st := m.Stats(); st.AgentEventsSkipped != 0 {
		t.Errorf("%d agent events skipped, want none", st.AgentEventsSkipped)
	}
}

// TestAgentBudget: a session that goes past its token budget has its run
// aborted (the run ends early with Budget set), its subscribers get a
// budget_exceeded event, later prompts are refused with
// ErrBudgetExceeded (other commands still pass), and Stop resets it.
func TestAgentBudget(t *testing.T) {
	tr, rec := &recTracer{}, &runRecorder{}
	cfg := runConfig(t, tr, rec)
	cfg.SessionTokenBudget = 2000 // the demo's model calls use 1100 tokens each
	parallel(t, &cfg)
	m := newManager(t, cfg)
	sub, err := m.Subscribe("b", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	start := time.Now()
	// Ten turns of 3 s each: only an abort ends it in time.
	send(t, m, "b", `{"type":"prompt","agent_events":true,"turns":10,"cpu_ms":30000}`)
	_, r, _ := spanOf(t, tr, 0)
	if r.Run == nil || r.Run.Budget != workers.BudgetTokens || r.Run.End != workers.RunEndAgentEnd {
		t.Fatalf("run %+v, want one aborted for its token budget", r.Run)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the run took %s: not aborted", d)
	}
	var got *workers.Event
	for ev := range sub.C {
		if ev.Type == "budget_exceeded" {
			got = &ev
			break
		}
	}
	if got == nil || !strings.Contains(string(got.Data), `"code":"budget_exceeded"`) || !strings.Contains(string(got.Data), `"budget":"tokens"`) {
		t.Errorf("subscriber got %+v, want a budget_exceeded event with its code", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = m.Send(ctx, "b", []byte(`{"type":"prompt","agent_events":true}`))
	var be *workers.BudgetError
	if !errors.Is(err, workers.ErrBudgetExceeded) || !errors.As(err, &be) || be.Budget != workers.BudgetTokens || workers.ErrorCode(ctx, err) != workers.CodeBudgetExceeded {
		t.Fatalf("prompt past the budget: %v, want ErrBudgetExceeded (code budget_exceeded)", err)
	}
	send(t, m, "b", `{"type":"get_state"}`) // not a run command: still served
	if st := m.Stats(); st.BudgetsExceeded[workers.BudgetTokens] != 1 {
		t.Errorf("budgets exceeded %v, want tokens 1", st.BudgetsExceeded)
	}
	if snap, _ := snapshotOf(m, "b"); snap.Agent == nil || snap.Agent.OverBudget != workers.BudgetTokens {
		t.Errorf("snapshot agent %+v, want over its token budget", snap.Agent)
	}
	if err := m.Stop(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := m.Stop(ctx, "b"); !errors.Is(err, workers.ErrNotFound) {
		t.Errorf("second stop: %v, want not found (nothing left to reset)", err)
	}
	if r := send(t, m, "b", `{"type":"prompt","agent_events":true,"turns":0}`); !r.Success {
		t.Errorf("prompt after the reset: %+v, want accepted", r)
	}
}

// TestAgentEventsMalformed: agent events that do not decode, and a tool
// end without its start, are counted and skipped; the worker goes on.
func TestAgentEventsMalformed(t *testing.T) {
	t.Parallel()
	ag := &agentRecorder{}
	m := newManager(t, workers.Config{
		DisableSubreaper: true,
		Command: []string{"sh", "-c", `echo '{"type":"message_end","message":5}'
echo '{"type":"message_start","message":{"role":"user"}}'
echo '{"type":"tool_execution_end","toolCallId":"x","toolName":"read"}'
echo '{"type":"message_end","message":{"role":"assistant","usage":{"input":"many"}}}'
while read -r line; do echo '{"type":"response","id":"'"$(echo "$line" | sed 's/.*"id":"\([^"]*\)".*/\1/')"'","success":true}'; done`},
		Logger:     quietLogger(t),
		StopGrace:  time.Second,
		OnToolCall: ag.onTool,
	})
	send(t, m, "m", `{"type":"get_state"}`)
	waitUntil(t, 10*time.Second, func() bool { return m.Stats().AgentEventsSkipped == 3 })
	_, tools := ag.get()
	if len(tools) != 1 || tools[0].Name != "read" || tools[0].ID != "x" {
		t.Errorf("tools %+v, want the lone end reported", tools)
	}
	send(t, m, "m", `{"type":"get_state"}`)
}

// TestAgentContentOnlyWhenCaptured: with CaptureAgentContent the model's
// output and the tool's arguments and result are handed on; without it
// (TestAgentRunSteps) they are nil.
func TestAgentContentOnlyWhenCaptured(t *testing.T) {
	ag := &agentRecorder{}
	cfg := demoConfig(t)
	parallel(t, &cfg)
	cfg.OnModelCall, cfg.OnToolCall, cfg.CaptureAgentContent = ag.onModel, ag.onTool, true
	m := newManager(t, cfg)
	sub, err := m.Subscribe("c", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	send(t, m, "c", `{"type":"prompt","agent_events":true,"cpu_ms":10}`)
	for ev := range sub.C {
		if ev.Type == "agent_end" {
			break
		}
	}
	waitUntil(t, 10*time.Second, func() bool { calls, tools := ag.get(); return len(calls) == 2 && len(tools) == 1 })
	calls, tools := ag.get()
	if string(calls[0].Content) != "[]" || !strings.Contains(string(tools[0].Args), `"command"`) || !strings.Contains(string(tools[0].Result), `"done"`) {
		t.Errorf("content %s, args %s, result %s; want them captured", calls[0].Content, tools[0].Args, tools[0].Result)
	}
}
