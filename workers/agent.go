package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/workerscope/workerscope/workers/internal/agentev"
	"github.com/workerscope/workerscope/workers/internal/cost"
)

// Agent runs seen from outside. pi's RPC mode streams, inside a run,
// message_start … message_end for every message (an assistant message is
// one model call, its usage and USD cost on message_end) and
// tool_execution_start … tool_execution_end for every tool call. The
// stdout reader already knows each line's type; for these four types only
// it decodes the few fields it needs (agentev.Line) and turns them into
// ModelCall and ToolCall values, handed to the span of the command whose
// run it is (AgentSpan) and to Config.OnModelCall / OnToolCall. A tool
// call's cost is the worker tree's, read at its start and its end (and by
// the run's once-a-second readings in between) exactly as a command's.
// Lines of these types that do not decode, and ends without a start, are
// skipped and counted (Stats.AgentEventsSkipped).
//
// The same usage adds up per session (across the session's workers) and
// is checked against Config.SessionTokenBudget and SessionSpendBudgetUSD:
// a session past a budget gets its run aborted and further run commands
// refused with ErrBudgetExceeded until Stop resets it.

// Usage is what one model call used, as pi reports it in an assistant
// message's usage: tokens by kind and the cost in US dollars.
type Usage struct {
	// Input is the input tokens not read from or written to a cache;
	// CacheRead and CacheWrite the cached ones (pi's usage.input,
	// cacheRead, cacheWrite).
	Input, Output, CacheRead, CacheWrite int64
	// Total is pi's totalTokens (input + output + cache read and write).
	Total int64
	// CostUSD is pi's usage.cost.total.
	CostUSD float64
}

// ModelCall is one call to a model inside an agent run: an assistant
// message, from its message_start to its message_end as the supervisor
// saw them.
type ModelCall struct {
	Key, WorkerID   string
	Start, End      time.Time
	Provider, Model string
	Usage           Usage
	// StopReason is pi's: stop, length, toolUse, error or aborted.
	StopReason string
	// Incomplete: the run ended (agent_end, worker exit) before the
	// message's message_end; Usage is then zero.
	Incomplete bool
	// Content is the message's content as pi sent it, only with
	// Config.CaptureAgentContent (prompts, outputs and tool arguments are
	// not kept otherwise).
	Content json.RawMessage
	// Context is the context of the command whose run this is (with its
	// span), else context.Background(). Valid during the callback only.
	Context context.Context
}

// ToolCall is one tool call inside an agent run, from its
// tool_execution_start to its tool_execution_end as the supervisor saw
// them, with what it cost the worker's tree.
type ToolCall struct {
	Key, WorkerID string
	Start, End    time.Time
	// ID and Name are pi's toolCallId and toolName.
	ID, Name string
	IsError  bool
	// Incomplete: the run ended before the tool's tool_execution_end.
	Incomplete bool
	// Cost is the tree's cost over the tool's interval, read as a
	// command's (Cost.Shared: another tool call overlapped it); nil when
	// not measured.
	Cost *Cost
	// Args and Result are pi's args and result, only with
	// Config.CaptureAgentContent.
	Args, Result json.RawMessage
	// Context is as ModelCall.Context.
	Context context.Context
}

// AgentSpan is implemented by a CommandSpan that follows the steps of the
// run its command started: each is called once per model call and tool
// call, when it ends, from the worker's read goroutine (it must not
// block), before the span's End.
type AgentSpan interface {
	ModelCall(c *ModelCall)
	ToolCall(c *ToolCall)
}

// ToolSummary is one finished tool call, as kept for AgentSnapshot.
type ToolSummary struct {
	Name     string
	Duration time.Duration
	// CPU is Cost.CPU(); HasCost is false when not measured.
	CPU     time.Duration
	HasCost bool
	IsError bool
	EndedAt time.Time
}

// AgentSnapshot is a session's agent activity, in WorkerSnapshot.
type AgentSnapshot struct {
	// Usage sums the session's model calls (across its workers, since the
	// session began or was last reset by Stop).
	Usage      Usage
	ModelCalls int64
	ToolCalls  int64
	// OverBudget names the budget the session is past ("tokens" or
	// "spend"; "" when none).
	OverBudget string
	// LastTools are this worker's last finished tool calls (at most
	// 5), oldest first.
	LastTools []ToolSummary
}

// lastToolsKept is how many finished tool calls each worker remembers.
const lastToolsKept = 5

// Budget names (BudgetError.Budget, Stats.BudgetsExceeded).
const (
	BudgetTokens = "tokens"
	BudgetSpend  = "spend"
)

// BudgetNames lists the budgets.
var BudgetNames = []string{BudgetTokens, BudgetSpend}

// ErrBudgetExceeded is the error of a run command refused because its
// session is past its token or spend budget (code budget_exceeded).
var ErrBudgetExceeded = errors.New("workers: session is past its budget")

// BudgetError says which budget a session is past.
type BudgetError struct {
	Key    string
	Budget string // BudgetTokens or BudgetSpend
	// Used and Limit are tokens, or US dollars.
	Used, Limit float64
}

func (e *BudgetError) Error() string {
	const reset = "reset it with DELETE /api/sessions/{key} (Manager.Stop)"
	if e.Budget == BudgetSpend {
		return fmt.Sprintf("workers: session %q spent $%.4f of its $%.4f budget; %s", e.Key, e.Used, e.Limit, reset)
	}
	return fmt.Sprintf("workers: session %q used %.0f tokens of its %.0f-token budget; %s", e.Key, e.Used, e.Limit, reset)
}

// Is makes errors.Is(err, ErrBudgetExceeded) true.
func (e *BudgetError) Is(target error) bool { return target == ErrBudgetExceeded }

// agentState is a worker's open model call and tool calls, guarded by
// worker.agentMu (a leaf lock: no other lock is taken under it).
type agentState struct {
	msgOpen         bool
	msgStart        time.Time
	provider, model string
	tools           []*toolState
	last            []ToolSummary
}

// toolState is one open tool call and its cost readings.
type toolState struct {
	id, name string
	start    time.Time
	args     json.RawMessage
	measure  bool // its cost is read (Manager.toolCostOn)
	meter    cost.Meter
	shared   bool
}

// costOf is a measured interval's Cost (nil: not measured).
func costOf(m *cost.Meter, shared bool) *Cost {
	d, ok := m.Delta()
	if !ok {
		return nil
	}
	return &Cost{CPUUser: d.CPUUser, CPUSystem: d.CPUSystem, MemoryPeak: d.MemoryPeak, Processes: d.Processes, Shared: shared}
}

// errNotObject marks a line that does not start as a JSON object.
var errNotObject = errors.New("not a JSON object")

// agentEvent handles one message_* or tool_execution_* line, seen at now.
// It is called from w's stdout reader only, after the line went to the
// subscribers and the spans.
func (w *worker) agentEvent(typ string, line []byte, decoded *agentev.Line, now time.Time) {
	m := w.m
	var ev agentev.Line
	if decoded != nil {
		ev = *decoded
	} else if err := json.Unmarshal(line, &ev); err != nil {
		m.counts.agentSkipped.Add(1)
		return
	}
	var content agentev.Content
	if m.cfg.CaptureAgentContent {
		_ = json.Unmarshal(line, &content)
	}
	switch typ {
	case agentev.MessageStart:
		if !ev.Assistant() {
			return // user and tool-result messages are not model calls
		}
		w.agentMu.Lock()
		w.agent.msgOpen, w.agent.msgStart = true, now
		w.agent.provider, w.agent.model = ev.Message.Provider, ev.Message.Model
		w.agentMu.Unlock()
	case agentev.MessageEnd:
		if !ev.Assistant() {
			return
		}
		msg := ev.Message
		mc := ModelCall{Key: w.key, WorkerID: w.id, End: now, Provider: msg.Provider, Model: msg.Model, StopReason: msg.StopReason,
			Usage: Usage(ev.Usage())}
		if content.Message != nil {
			mc.Content = content.Message.Content
		}
		w.agentMu.Lock()
		mc.Start = now
		if w.agent.msgOpen {
			mc.Start = w.agent.msgStart
			w.agent.msgOpen = false
		} else {
			m.counts.agentSkipped.Add(1) // an end without its start: kept, with no duration
		}
		w.agentMu.Unlock()
		w.reportModelCall(&mc)
	case agentev.ToolExecutionStart:
		t := &toolState{id: ev.ToolCallID, name: ev.ToolName, start: now, args: content.Args}
		if m.toolCostOn() {
			t.measure = true
			var s cost.Sample
			if m.plat.readTree(w, &s) {
				t.meter.Begin(s)
			}
		}
		w.agentMu.Lock()
		for _, o := range w.agent.tools {
			o.shared, t.shared = true, true
		}
		w.agent.tools = append(w.agent.tools, t)
		w.agentMu.Unlock()
	case agentev.ToolExecutionEnd:
		var s cost.Sample
		read := m.toolCostOn() && m.plat.readTree(w, &s)
		w.agentMu.Lock()
		i := slices.IndexFunc(w.agent.tools, func(t *toolState) bool { return t.id == ev.ToolCallID })
		var t *toolState
		if i >= 0 {
			t = w.agent.tools[i]
			w.agent.tools = slices.Delete(w.agent.tools, i, i+1)
		}
		w.agentMu.Unlock()
		if t == nil {
			m.counts.agentSkipped.Add(1) // an end without its start
			t = &toolState{id: ev.ToolCallID, name: ev.ToolName, start: now}
		}
		if read {
			t.meter.Observe(&s)
		}
		tc := ToolCall{Key: w.key, WorkerID: w.id, Start: t.start, End: now, ID: t.id, Name: cmpOr(t.name, ev.ToolName),
			IsError: ev.IsError, Cost: costOf(&t.meter, t.shared), Args: t.args, Result: content.Result}
		w.reportToolCall(&tc)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// toolCostOn reports whether tool calls are measured.
func (m *Manager) toolCostOn() bool {
	return !m.cfg.DisableCommandCost && m.plat.canReadTrees()
}

// agentTarget is the span and context of the command whose run is
// streaming on w: the run's owner, else the oldest run command that saw
// agent_start before its response.
func (w *worker) agentTarget() (AgentSpan, context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.runOwner
	if c == nil {
		for _, a := range w.active {
			if a.runType && a.sawStart {
				c = a
				break
			}
		}
	}
	if c == nil {
		return nil, context.Background()
	}
	sp, _ := c.span.(AgentSpan)
	return sp, c.ctx
}

// reportModelCall adds mc's usage to its session (enforcing the budgets)
// and hands it to the run's span and to OnModelCall.
func (w *worker) reportModelCall(mc *ModelCall) {
	sp, ctx := w.agentTarget()
	mc.Context = ctx
	over := w.s.usage.AddModelCall(agentev.Usage(mc.Usage), w.m.budgets())
	if sp != nil {
		sp.ModelCall(mc)
	}
	if f := w.m.cfg.OnModelCall; f != nil {
		f(*mc)
	}
	if over != nil {
		w.m.budgetExceeded(w, budgetError(w.key, over))
	}
}

// reportToolCall hands tc to the run's span and to OnToolCall, and
// remembers it on w.
func (w *worker) reportToolCall(tc *ToolCall) {
	sp, ctx := w.agentTarget()
	tc.Context = ctx
	w.s.usage.AddToolCall()
	sum := ToolSummary{Name: tc.Name, Duration: tc.End.Sub(tc.Start), IsError: tc.IsError, EndedAt: tc.End}
	if tc.Cost != nil {
		sum.CPU, sum.HasCost = tc.Cost.CPU(), true
	}
	w.agentMu.Lock()
	if len(w.agent.last) == lastToolsKept {
		w.agent.last = slices.Delete(w.agent.last, 0, 1)
	}
	w.agent.last = append(w.agent.last, sum)
	w.agentMu.Unlock()
	if sp != nil {
		sp.ToolCall(tc)
	}
	if f := w.m.cfg.OnToolCall; f != nil {
		f(*tc)
	}
}

// flushAgent reports the model call and tool calls still open on w as
// Incomplete, ending at now: the run ended (agent_end, the worker's exit)
// without their ends.
func (w *worker) flushAgent(now time.Time) {
	w.agentMu.Lock()
	var mc *ModelCall
	if w.agent.msgOpen {
		mc = &ModelCall{Key: w.key, WorkerID: w.id, Start: w.agent.msgStart, End: now,
			Provider: w.agent.provider, Model: w.agent.model, Incomplete: true}
		w.agent.msgOpen = false
	}
	tools := w.agent.tools
	w.agent.tools = nil
	w.agentMu.Unlock()
	if mc != nil {
		w.reportModelCall(mc)
	}
	for _, t := range tools {
		var s cost.Sample
		if t.measure && w.m.plat.readTree(w, &s) {
			t.meter.Observe(&s)
		}
		w.reportToolCall(&ToolCall{Key: w.key, WorkerID: w.id, Start: t.start, End: now, ID: t.id, Name: t.name,
			Incomplete: true, Cost: costOf(&t.meter, t.shared), Args: t.args})
	}
}

// observeTools folds a reading of w's tree (taken for a command in
// flight) into its open tool calls' peaks and processes.
func (w *worker) observeTools(s *cost.Sample) {
	w.agentMu.Lock()
	defer w.agentMu.Unlock()
	for _, t := range w.agent.tools {
		t.meter.Observe(s)
	}
}

// budgets are the session budgets of the configuration.
func (m *Manager) budgets() agentev.Budgets {
	return agentev.Budgets{Tokens: m.cfg.SessionTokenBudget, SpendUSD: m.cfg.SessionSpendBudgetUSD}
}

func budgetError(key string, o *agentev.Over) *BudgetError {
	return &BudgetError{Key: key, Budget: o.Budget, Used: o.Used, Limit: o.Limit}
}

// overBudget is the budget error of the session key, if it is past one.
func (m *Manager) overBudget(key string) error {
	m.mu.Lock()
	s := m.pool.sessions[key]
	m.mu.Unlock()
	if s == nil {
		return nil
	}
	if o := s.usage.Over(); o != nil {
		return budgetError(key, o)
	}
	return nil
}

// budgetExceeded acts on a session that has just gone past a budget:
// counts it, logs it, tells the session's subscribers (and OnLifecycle)
// with a budget_exceeded event, marks the run's span, and aborts the run
// with pi's abort command.
func (m *Manager) budgetExceeded(w *worker, e *BudgetError) {
	if i := slices.Index(BudgetNames, e.Budget); i >= 0 {
		m.counts.budgetHits[i].Add(1)
	}
	m.log.Warn("session past its budget; aborting its run", "worker", w.id, "key", w.key,
		"budget", e.Budget, "used", e.Used, "limit", e.Limit)
	w.mu.Lock()
	if c := w.runOwner; c != nil {
		c.budget = e.Budget
	}
	alive := !w.stopping && !w.exited && !w.dead
	if alive {
		w.reserveLocked() // released by call
	}
	w.mu.Unlock()
	l := w.lifecycle(LifecycleBudgetExceeded)
	be := *e
	l.Budget = &be
	m.publishLifecycle(w.s, l)
	if !alive {
		return
	}
	m.wait.runs.Add(1)
	go func() {
		defer m.wait.runs.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		obj := map[string]json.RawMessage{"type": json.RawMessage(`"abort"`)}
		if _, err := w.call(ctx, obj, nil); err != nil {
			m.log.Warn("abort of a run past its budget failed", "worker", w.id, "key", w.key, "err", err)
		}
	}()
}

// agentSnapshot is w's session's agent activity (nil when it has none).
func (w *worker) agentSnapshot() *AgentSnapshot {
	a := w.s.usage.Totals()
	w.agentMu.Lock()
	last := slices.Clone(w.agent.last)
	w.agentMu.Unlock()
	if a.ModelCalls == 0 && a.ToolCalls == 0 && len(last) == 0 {
		return nil
	}
	snap := &AgentSnapshot{Usage: Usage(a.Usage), ModelCalls: a.ModelCalls, ToolCalls: a.ToolCalls, LastTools: last}
	if a.Over != nil {
		snap.OverBudget = a.Over.Budget
	}
	return snap
}
