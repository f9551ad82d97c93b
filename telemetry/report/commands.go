package report

import "github.com/workerscope/workerscope/workers"

// lastCommandJSON is one of a worker's last finished commands in
// GET /api/metrics (workers[].last_commands, oldest first).
type lastCommandJSON struct {
	Type string `json:"type"`
	// DurationSeconds is to the response, or to the end of the run the
	// command started (Run).
	DurationSeconds float64 `json:"duration_seconds"`
	Run             bool    `json:"run,omitempty"`
	// CPUSeconds is the CPU time of the worker's whole tree during the
	// command (and its run); null when not measured (not Linux).
	CPUSeconds *float64 `json:"cpu_seconds"`
	ErrorType  string   `json:"error_type,omitempty"`
	// TraceID is the command's span's trace, to look up in the tracing
	// backend; absent when the span was not sampled or tracing is off.
	TraceID string `json:"trace_id,omitempty"`
}

func lastCommands(cs []workers.CommandSummary) []lastCommandJSON {
	out := make([]lastCommandJSON, len(cs))
	for i, c := range cs {
		out[i] = lastCommandJSON{Type: c.Type, DurationSeconds: c.Duration.Seconds(), Run: c.Run, ErrorType: c.ErrorType, TraceID: c.TraceID}
		if c.HasCost {
			v := c.CPU.Seconds()
			out[i].CPUSeconds = &v
		}
	}
	return out
}

// agentJSON is a session's agent activity in GET /api/metrics
// (workers[].agent).
type agentJSON struct {
	InputTokens      int64   `json:"input_tokens"`
	OutputTokens     int64   `json:"output_tokens"`
	CacheReadTokens  int64   `json:"cache_read_tokens"`
	CacheWriteTokens int64   `json:"cache_write_tokens"`
	TotalTokens      int64   `json:"total_tokens"`
	CostUSD          float64 `json:"cost_usd"`
	ModelCalls       int64   `json:"model_calls"`
	ToolCalls        int64   `json:"tool_calls"`
	// OverBudget names the budget the session is past (tokens, spend).
	OverBudget string `json:"over_budget,omitempty"`
	// LastTools are the worker's last tool calls, oldest first.
	LastTools []lastToolJSON `json:"last_tools"`
}

// lastToolJSON is one of a worker's last tool calls.
type lastToolJSON struct {
	Name            string  `json:"name"`
	DurationSeconds float64 `json:"duration_seconds"`
	// CPUSeconds is the worker tree's CPU time during the tool call; null
	// when not measured (not Linux).
	CPUSeconds *float64 `json:"cpu_seconds"`
	Error      bool     `json:"error,omitempty"`
}

func agentEntry(a *workers.AgentSnapshot) *agentJSON {
	if a == nil {
		return nil
	}
	out := &agentJSON{InputTokens: a.Usage.Input, OutputTokens: a.Usage.Output, CacheReadTokens: a.Usage.CacheRead,
		CacheWriteTokens: a.Usage.CacheWrite, TotalTokens: a.Usage.Total, CostUSD: a.Usage.CostUSD,
		ModelCalls: a.ModelCalls, ToolCalls: a.ToolCalls, OverBudget: a.OverBudget, LastTools: make([]lastToolJSON, len(a.LastTools))}
	for i, t := range a.LastTools {
		out.LastTools[i] = lastToolJSON{Name: t.Name, DurationSeconds: t.Duration.Seconds(), Error: t.IsError}
		if t.HasCost {
			v := t.CPU.Seconds()
			out.LastTools[i].CPUSeconds = &v
		}
	}
	return out
}
