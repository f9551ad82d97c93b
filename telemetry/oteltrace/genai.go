package oteltrace

import (
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0" // the last semconv release whose Go package has the GenAI attributes
	"go.opentelemetry.io/otel/trace"

	"github.com/workerscope/workerscope/telemetry/attrkey"
	"github.com/workerscope/workerscope/workers"
)

// GenAI spans: a run that streams pi's model-call and tool-call events is
// an agent invocation. Its command's span becomes the invoke_agent span
// (renamed at its end, when the run had at least one step), and each step
// is a child span, made when the step ends with the start and end times
// the supervisor saw: "chat {model}" per model call, "execute_tool {name}"
// per tool call. Attribute names follow the OpenTelemetry GenAI semantic
// conventions as of semconv v1.41.0 (the last release whose Go package
// carries them; v1.42 moved GenAI out), plus workerscope's own for cost.

// Error types of GenAI spans.
const (
	ErrorTypeModel = "model_error" // the model call ended with stopReason "error"
	ErrorTypeTool  = "tool_error"  // the tool call ended with isError
)

// maxContent bounds one captured content attribute, in bytes.
const maxContent = 16 << 10

// maxNameSuffix bounds the model or tool name in a span name.
const maxNameSuffix = 64

// agentSums are a run's totals for its invoke_agent span.
type agentSums struct {
	mu              sync.Mutex
	calls, tools    int
	usage           workers.Usage
	provider, model string
}

// ModelCall records one model call as a "chat {model}" child span. It
// implements workers.AgentSpan.
func (s *commandSpan) ModelCall(c *workers.ModelCall) {
	s.agent.mu.Lock()
	s.agent.calls++
	s.agent.usage.Input += c.Usage.Input
	s.agent.usage.Output += c.Usage.Output
	s.agent.usage.CacheRead += c.Usage.CacheRead
	s.agent.usage.CacheWrite += c.Usage.CacheWrite
	s.agent.usage.CostUSD += c.Usage.CostUSD
	if c.Provider != "" {
		s.agent.provider, s.agent.model = c.Provider, c.Model
	}
	s.agent.mu.Unlock()

	name := semconv.GenAIOperationNameChat.Value.AsString()
	if c.Model != "" {
		name += " " + truncateName(c.Model)
	}
	attrs := []attribute.KeyValue{
		semconv.GenAIOperationNameChat,
		semconv.GenAIProviderNameKey.String(c.Provider),
		semconv.GenAIRequestModelKey.String(c.Model),
	}
	if c.Incomplete {
		attrs = append(attrs, attribute.Bool(attrkey.GenAIIncomplete, true))
	} else {
		attrs = append(attrs, usageAttributes(c.Usage)...)
	}
	if c.StopReason != "" {
		attrs = append(attrs, semconv.GenAIResponseFinishReasonsKey.StringSlice([]string{c.StopReason}))
	}
	if len(c.Content) > 0 {
		attrs = append(attrs, attribute.String(attrkey.GenAIContent, truncate(string(c.Content), maxContent)))
	}
	_, sp := s.t.tracer.Start(s.ctx, name, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithTimestamp(c.Start), trace.WithAttributes(attrs...))
	if c.StopReason == "error" {
		sp.SetAttributes(attribute.String(attrkey.ErrorType, ErrorTypeModel))
		sp.SetStatus(codes.Error, "the model call ended with an error")
	}
	sp.End(trace.WithTimestamp(c.End))
}

// ToolCall records one tool call as an "execute_tool {name}" child span
// with the worker tree's cost over the tool's interval. It implements
// workers.AgentSpan.
func (s *commandSpan) ToolCall(c *workers.ToolCall) {
	s.agent.mu.Lock()
	s.agent.tools++
	s.agent.mu.Unlock()
	name := semconv.GenAIOperationNameExecuteTool.Value.AsString()
	if c.Name != "" {
		name += " " + truncateName(c.Name)
	}
	attrs := []attribute.KeyValue{
		semconv.GenAIOperationNameExecuteTool,
		semconv.GenAIToolNameKey.String(c.Name),
		semconv.GenAIToolCallIDKey.String(c.ID),
	}
	if c.Incomplete {
		attrs = append(attrs, attribute.Bool(attrkey.GenAIIncomplete, true))
	}
	attrs = append(attrs, costAttributes(c.Cost)...)
	if len(c.Args) > 0 {
		attrs = append(attrs, semconv.GenAIToolCallArgumentsKey.String(truncate(string(c.Args), maxContent)))
	}
	if len(c.Result) > 0 {
		attrs = append(attrs, semconv.GenAIToolCallResultKey.String(truncate(string(c.Result), maxContent)))
	}
	_, sp := s.t.tracer.Start(s.ctx, name, trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithTimestamp(c.Start), trace.WithAttributes(attrs...))
	if c.IsError {
		sp.SetAttributes(attribute.String(attrkey.ErrorType, ErrorTypeTool))
		sp.SetStatus(codes.Error, "the tool call failed")
	}
	sp.End(trace.WithTimestamp(c.End))
}

// agentAttributes makes the span an invoke_agent span when its run had
// steps: it renames it and appends the run's GenAI attributes to attrs.
func (s *commandSpan) agentAttributes(attrs []attribute.KeyValue) []attribute.KeyValue {
	s.agent.mu.Lock()
	defer s.agent.mu.Unlock()
	a := &s.agent
	if a.calls == 0 && a.tools == 0 {
		return attrs
	}
	name := semconv.GenAIOperationNameInvokeAgent.Value.AsString()
	if s.t.agentName != "" {
		name += " " + s.t.agentName
		attrs = append(attrs, semconv.GenAIAgentName(s.t.agentName))
	}
	s.span.SetName(name)
	attrs = append(attrs, semconv.GenAIOperationNameInvokeAgent,
		attribute.Int(attrkey.GenAIModelCalls, a.calls), attribute.Int(attrkey.GenAIToolCalls, a.tools))
	if !s.t.dropKey {
		attrs = append(attrs, semconv.GenAIConversationID(s.key))
	}
	if a.provider != "" {
		attrs = append(attrs, semconv.GenAIProviderNameKey.String(a.provider), semconv.GenAIRequestModelKey.String(a.model))
	}
	return append(attrs, usageAttributes(a.usage)...)
}

// usageAttributes are the token and cost attributes of u. Input tokens
// include the cached ones, as the conventions ask (pi's input excludes
// them).
func usageAttributes(u workers.Usage) []attribute.KeyValue {
	return []attribute.KeyValue{
		semconv.GenAIUsageInputTokens(int(u.Input + u.CacheRead + u.CacheWrite)),
		semconv.GenAIUsageOutputTokens(int(u.Output)),
		semconv.GenAIUsageCacheReadInputTokens(int(u.CacheRead)),
		semconv.GenAIUsageCacheCreationInputTokens(int(u.CacheWrite)),
		attribute.Float64(attrkey.GenAICost, u.CostUSD),
	}
}

func truncateName(s string) string {
	if len(s) > maxNameSuffix {
		return s[:maxNameSuffix]
	}
	return s
}
