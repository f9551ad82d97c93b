package otelmetrics

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/workerscope/workerscope/telemetry/attrkey"
	"github.com/workerscope/workerscope/workers"
)

// GenAI metrics: each model call and tool call of an agent run (pi's
// events, read by workers) is recorded as the OpenTelemetry GenAI
// conventions' client metrics plus workerscope's spend and tool cost; the
// sessions' totals are observed per worker from the sampler's Report.

// gen_ai.token.type and gen_ai.operation.name values (semconv v1.41.0).
const (
	tokenInput  = "input"
	tokenOutput = "output"
	opChat      = "chat"
	// errorTypeModel and errorTypeTool are error.type of a model call that
	// ended with an error and of a tool call that failed.
	errorTypeModel = "model_error"
	errorTypeTool  = "tool_error"
)

// Caps on the distinct models and tools that get their own series (both
// names come from the worker).
const (
	maxModels = 64
	maxTools  = 32
)

// genaiAttrs are the bounded attribute sets of models and tools seen.
type genaiAttrs struct {
	mu     sync.Mutex
	models map[[2]string]*modelAttrs
	tools  map[string]*toolAttrs
	other  *modelAttrs
	oTool  *toolAttrs
}

// modelAttrs are one provider-model pair's measurement options.
type modelAttrs struct {
	in, out, dur, durErr, cost metric.MeasurementOption
}

// toolAttrs are one tool name's measurement options.
type toolAttrs struct{ ok, failed metric.MeasurementOption }

func newModelAttrs(provider, model string) *modelAttrs {
	base := []attribute.KeyValue{attribute.String(attrkey.GenAIOperation, opChat),
		attribute.String(attrkey.GenAIProvider, provider), attribute.String(attrkey.GenAIModel, model)}
	with := func(kv ...attribute.KeyValue) metric.MeasurementOption {
		return metric.WithAttributeSet(attribute.NewSet(append(append([]attribute.KeyValue(nil), base...), kv...)...))
	}
	return &modelAttrs{
		in:     with(attribute.String(attrkey.GenAITokenType, tokenInput)),
		out:    with(attribute.String(attrkey.GenAITokenType, tokenOutput)),
		dur:    with(),
		durErr: with(attribute.String(attrkey.ErrorType, errorTypeModel)),
		cost: metric.WithAttributeSet(attribute.NewSet(attribute.String(attrkey.GenAIProvider, provider),
			attribute.String(attrkey.GenAIModel, model))),
	}
}

func newToolAttrs(name string) *toolAttrs {
	kv := attribute.String(attrkey.GenAIToolName, name)
	return &toolAttrs{
		ok:     metric.WithAttributeSet(attribute.NewSet(kv)),
		failed: metric.WithAttributeSet(attribute.NewSet(kv, attribute.String(attrkey.ErrorType, errorTypeTool))),
	}
}

func newGenAIAttrs() genaiAttrs {
	return genaiAttrs{
		models: make(map[[2]string]*modelAttrs),
		tools:  make(map[string]*toolAttrs),
		other:  newModelAttrs(otherMethod, otherMethod),
		oTool:  newToolAttrs(otherMethod),
	}
}

func (g *genaiAttrs) model(provider, model string) *modelAttrs {
	g.mu.Lock()
	defer g.mu.Unlock()
	k := [2]string{provider, model}
	if a, ok := g.models[k]; ok {
		return a
	}
	if len(g.models) >= maxModels {
		return g.other
	}
	a := newModelAttrs(provider, model)
	g.models[k] = a
	return a
}

func (g *genaiAttrs) tool(name string) *toolAttrs {
	g.mu.Lock()
	defer g.mu.Unlock()
	if a, ok := g.tools[name]; ok {
		return a
	}
	if name == "" || len(g.tools) >= maxTools {
		return g.oTool
	}
	a := newToolAttrs(name)
	g.tools[name] = a
	return a
}

// RecordModelCall records one model call: its input and output tokens,
// its duration and its cost. A call the run ended before its end
// (Incomplete) has no usage and no duration of its own and is not
// recorded. Use it as workers.Config.OnModelCall.
func (m *Recorder) RecordModelCall(c workers.ModelCall) {
	if c.Incomplete {
		return
	}
	a := m.genai.model(c.Provider, c.Model)
	ctx := c.Context
	if ctx == nil {
		ctx = context.Background()
	}
	in := &m.in
	in.tokenUsage.Record(ctx, c.Usage.Input+c.Usage.CacheRead+c.Usage.CacheWrite, a.in)
	in.tokenUsage.Record(ctx, c.Usage.Output, a.out)
	dur := a.dur
	if c.StopReason == "error" {
		dur = a.durErr
	}
	in.opDuration.Record(ctx, c.End.Sub(c.Start).Seconds(), dur)
	if c.Usage.CostUSD > 0 {
		in.cost.Add(ctx, c.Usage.CostUSD, a.cost)
	}
}

// RecordToolCall records one tool call: its duration and, when measured,
// the CPU its worker's tree used meanwhile. Use it as
// workers.Config.OnToolCall.
func (m *Recorder) RecordToolCall(c workers.ToolCall) {
	a := m.genai.tool(c.Name)
	opt := a.ok
	if c.IsError {
		opt = a.failed
	}
	ctx := c.Context
	if ctx == nil {
		ctx = context.Background()
	}
	m.in.toolDuration.Record(ctx, c.End.Sub(c.Start).Seconds(), opt)
	if c.Cost != nil {
		m.in.toolCPU.Record(ctx, c.Cost.CPU().Seconds(), opt)
	}
}

// observeSession measures a worker's session totals and budget shares.
func (m *Metrics) observeSession(sink workerSink, ag *workers.AgentSnapshot, a *workerAttrs) {
	sink.float(wmSessionCost, a.all, ag.Usage.CostUSD)
	sink.int(wmSessionTokens, a.tokIn, ag.Usage.Input+ag.Usage.CacheRead+ag.Usage.CacheWrite)
	sink.int(wmSessionTokens, a.tokOut, ag.Usage.Output)
	if b := m.opts.SessionTokenBudget; b > 0 {
		sink.float(wmBudgetUtil, a.budTokens, float64(ag.Usage.Total)/float64(b))
	}
	if b := m.opts.SessionSpendBudgetUSD; b > 0 {
		sink.float(wmBudgetUtil, a.budUSD, ag.Usage.CostUSD/b)
	}
}
