// Package agentev reads pi's agent events: it decodes the few fields the
// supervisor needs from message_* and tool_execution_* lines (Line,
// Content) and adds up a session's model usage against its token and
// spend budgets (Account).
//
// It imports only the standard library and knows nothing of workers.
package agentev

import (
	"bytes"
	"encoding/json"
	"math"
	"sync"
)

// The event types Line is read from.
const (
	MessageStart       = "message_start"
	MessageEnd         = "message_end"
	ToolExecutionStart = "tool_execution_start"
	ToolExecutionEnd   = "tool_execution_end"
)

// Is reports whether typ is one of the events Line is read from.
func Is(typ string) bool {
	switch typ {
	case MessageStart, MessageEnd, ToolExecutionStart, ToolExecutionEnd:
		return true
	}
	return false
}

// prefixes are how pi starts the lines of those events (type first).
var prefixes = [][]byte{[]byte(`{"type":"message_start"`), []byte(`{"type":"message_end"`),
	[]byte(`{"type":"tool_execution_start"`), []byte(`{"type":"tool_execution_end"`)}

// Prefixed reports whether line starts as pi starts those events: such a
// line is worth decoding once, header and Line together; any other order
// costs a second pass.
func Prefixed(line []byte) bool {
	if len(line) < 20 || line[1] != '"' || line[2] != 't' {
		return false
	}
	for _, p := range prefixes {
		if bytes.HasPrefix(line, p) {
			return true
		}
	}
	return false
}

// Line is the part of pi's message_* and tool_execution_* events the
// supervisor reads. Numbers are decoded as float64 so that a worker that
// prints 1e3 or 12.0 is still understood.
type Line struct {
	Message *struct {
		Role       string `json:"role"`
		Provider   string `json:"provider"`
		Model      string `json:"model"`
		StopReason string `json:"stopReason"`
		Usage      *struct {
			Input       float64 `json:"input"`
			Output      float64 `json:"output"`
			CacheRead   float64 `json:"cacheRead"`
			CacheWrite  float64 `json:"cacheWrite"`
			TotalTokens float64 `json:"totalTokens"`
			Cost        struct {
				Total float64 `json:"total"`
			} `json:"cost"`
		} `json:"usage"`
	} `json:"message"`
	ToolCallID string `json:"toolCallId"`
	ToolName   string `json:"toolName"`
	IsError    bool   `json:"isError"`
}

// Assistant reports whether the line is about an assistant message (a
// model call; user and tool-result messages are not).
func (l *Line) Assistant() bool { return l.Message != nil && l.Message.Role == "assistant" }

// Usage is the message's usage (zero when it has none). Nonsense numbers
// (negative, NaN, huge) count as 0; a missing total is the sum of the
// kinds.
func (l *Line) Usage() Usage {
	if l.Message == nil || l.Message.Usage == nil {
		return Usage{}
	}
	u := l.Message.Usage
	out := Usage{Input: tokens(u.Input), Output: tokens(u.Output), CacheRead: tokens(u.CacheRead),
		CacheWrite: tokens(u.CacheWrite), Total: tokens(u.TotalTokens), CostUSD: dollars(u.Cost.Total)}
	if out.Total == 0 {
		out.Total = out.Input + out.Output + out.CacheRead + out.CacheWrite
	}
	return out
}

// Content is the content of those events, decoded only when it is kept.
type Content struct {
	Message *struct {
		Content json.RawMessage `json:"content"`
	} `json:"message"`
	Args   json.RawMessage `json:"args"`
	Result json.RawMessage `json:"result"`
}

// tokens converts a token count from JSON; nonsense counts as 0.
func tokens(f float64) int64 {
	if !(f >= 0 && f < 1e15) {
		return 0
	}
	return int64(math.Round(f))
}

func dollars(f float64) float64 {
	if !(f >= 0 && f < 1e9) {
		return 0
	}
	return f
}

// Usage is what model calls used: tokens by kind and the cost in US
// dollars (pi's usage.input, output, cacheRead, cacheWrite, totalTokens
// and cost.total).
type Usage struct {
	Input, Output, CacheRead, CacheWrite int64
	Total                                int64
	CostUSD                              float64
}

// Add adds o to u.
func (u *Usage) Add(o Usage) {
	u.Input += o.Input
	u.Output += o.Output
	u.CacheRead += o.CacheRead
	u.CacheWrite += o.CacheWrite
	u.Total += o.Total
	u.CostUSD += o.CostUSD
}

// Budget names.
const (
	BudgetTokens = "tokens"
	BudgetSpend  = "spend"
)

// Budgets bound a session's usage (0 = no budget).
type Budgets struct {
	Tokens   int64
	SpendUSD float64
}

// On reports whether any budget is set.
func (b Budgets) On() bool { return b.Tokens > 0 || b.SpendUSD > 0 }

// Over says which budget a session went past: Used and Limit are tokens,
// or US dollars.
type Over struct {
	Budget      string
	Used, Limit float64
}

// Totals are a session's model and tool calls and usage.
type Totals struct {
	Usage      Usage
	ModelCalls int64
	ToolCalls  int64
	// Over is the budget the session went past (nil: none); it stays
	// until Reset.
	Over *Over
}

// Account adds up one session's Totals. It is safe for concurrent use;
// its lock is a leaf.
type Account struct {
	mu sync.Mutex
	t  Totals
}

// AddModelCall adds one model call's usage and returns the budget it has
// just gone past (nil: none, or it was past one already).
func (a *Account) AddModelCall(u Usage, b Budgets) *Over {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := &a.t
	t.Usage.Add(u)
	t.ModelCalls++
	if t.Over != nil {
		return nil
	}
	switch {
	case b.Tokens > 0 && t.Usage.Total >= b.Tokens:
		t.Over = &Over{Budget: BudgetTokens, Used: float64(t.Usage.Total), Limit: float64(b.Tokens)}
	case b.SpendUSD > 0 && t.Usage.CostUSD >= b.SpendUSD:
		t.Over = &Over{Budget: BudgetSpend, Used: t.Usage.CostUSD, Limit: b.SpendUSD}
	default:
		return nil
	}
	o := *t.Over
	return &o
}

// AddToolCall counts one tool call.
func (a *Account) AddToolCall() {
	a.mu.Lock()
	a.t.ToolCalls++
	a.mu.Unlock()
}

// Totals is a copy of the totals.
func (a *Account) Totals() Totals {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := a.t
	if t.Over != nil {
		o := *t.Over
		t.Over = &o
	}
	return t
}

// Over is the budget the session is past (nil: none).
func (a *Account) Over() *Over { return a.Totals().Over }

// Reset forgets the totals and the budget state; it reports whether there
// were any calls.
func (a *Account) Reset() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	had := a.t.ModelCalls > 0 || a.t.ToolCalls > 0
	a.t = Totals{}
	return had
}
