package oteltrace_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/workerscope/workerscope/telemetry/attrkey"
	"github.com/workerscope/workerscope/telemetry/oteltrace"
	"github.com/workerscope/workerscope/workers"
)

// TestGenAISpans: a run with model and tool calls becomes an invoke_agent
// span with a "chat {model}" child per model call (usage, cost, finish
// reason, the times the supervisor saw) and an "execute_tool {name}"
// child per tool call (tool name and call id, the tree's cost, error
// status), under the GenAI conventions' attribute names; content only
// when the worker captured it; the session key as gen_ai.conversation.id
// only when keys are exported; a budget abort is an error.
func TestGenAISpans(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		dropKey bool
		content bool
		budget  string
	}{
		{name: "plain"},
		{name: "no key, content, budget", dropKey: true, content: true, budget: workers.BudgetSpend},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, rec := newTracer(t, oteltrace.Options{AgentName: "pi", DropWorkerKey: tc.dropKey})
			ctx, span := tr.StartCommand(context.Background(), "alice", "prompt")
			as, ok := span.(workers.AgentSpan)
			if !ok {
				t.Fatal("the command span is not a workers.AgentSpan")
			}
			t0 := time.Now().Add(-time.Minute)
			mc := &workers.ModelCall{Start: t0, End: t0.Add(2 * time.Second), Provider: "scripted", Model: "m1", StopReason: "toolUse",
				Usage: workers.Usage{Input: 100, Output: 20, CacheRead: 50, CacheWrite: 5, Total: 175, CostUSD: 0.25}}
			tool := &workers.ToolCall{Start: t0.Add(2 * time.Second), End: t0.Add(5 * time.Second), ID: "call_1", Name: "bash", IsError: true,
				Cost: &workers.Cost{CPUUser: time.Second, MemoryPeak: 1 << 20, Processes: 1}}
			if tc.content {
				mc.Content = []byte(`[{"type":"text","text":"hello"}]`)
				tool.Args, tool.Result = []byte(`{"command":"ls"}`), []byte(`{"content":[]}`)
			}
			as.ModelCall(mc)
			as.ToolCall(tool)
			as.ModelCall(&workers.ModelCall{Start: t0.Add(5 * time.Second), End: t0.Add(6 * time.Second), Provider: "scripted", Model: "m1", StopReason: "stop",
				Usage: workers.Usage{Input: 10, Output: 5, Total: 15, CostUSD: 0.5}})
			span.End(workers.RPCResult{Key: "alice", Type: "prompt", Context: ctx, Run: &workers.Run{End: workers.RunEndAgentEnd, Budget: tc.budget}})

			ended := rec.Ended()
			if len(ended) != 4 {
				t.Fatalf("%d spans, want 4", len(ended))
			}
			root := ended[3]
			var names []string
			for _, s := range ended[:3] {
				names = append(names, s.Name())
				if s.Parent().SpanID() != root.SpanContext().SpanID() || s.SpanContext().TraceID() != root.SpanContext().TraceID() {
					t.Errorf("%s is not a child of the run's span", s.Name())
				}
			}
			if want := []string{"chat m1", "execute_tool bash", "chat m1"}; !slices.Equal(names, want) || root.Name() != "invoke_agent pi" {
				t.Fatalf("spans %v under %q, want %v under invoke_agent pi", names, root.Name(), want)
			}
			chat, exec := ended[0], ended[1]
			if !chat.StartTime().Equal(mc.Start) || !chat.EndTime().Equal(mc.End) || chat.SpanKind() != trace.SpanKindClient {
				t.Errorf("chat span %s…%s kind %v, want the model call's times", chat.StartTime(), chat.EndTime(), chat.SpanKind())
			}
			wantAttrs(t, chat, map[string]any{
				"gen_ai.operation.name": "chat", "gen_ai.provider.name": "scripted", "gen_ai.request.model": "m1",
				"gen_ai.usage.input_tokens": int64(155), "gen_ai.usage.output_tokens": int64(20),
				"gen_ai.usage.cache_read.input_tokens": int64(50), "gen_ai.usage.cache_creation.input_tokens": int64(5),
				attrkey.GenAICost: 0.25, "gen_ai.response.finish_reasons": []string{"toolUse"},
			})
			wantAttrs(t, exec, map[string]any{
				"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "bash", "gen_ai.tool.call.id": "call_1",
				attrkey.CostCPU: 1.0, attrkey.CostMemPeak: int64(1 << 20), attrkey.ErrorType: oteltrace.ErrorTypeTool,
			})
			if exec.Status().Code != codes.Error || !exec.StartTime().Equal(tool.Start) || !exec.EndTime().Equal(tool.End) {
				t.Errorf("tool span status %v, %s…%s", exec.Status(), exec.StartTime(), exec.EndTime())
			}
			wantAttrs(t, root, map[string]any{
				"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "pi", "gen_ai.usage.input_tokens": int64(165),
				"gen_ai.usage.output_tokens": int64(25), attrkey.GenAICost: 0.75, attrkey.GenAIModelCalls: int64(2),
				attrkey.GenAIToolCalls: int64(1), attrkey.RPCMethod: "prompt",
			})
			ra := attrs(root)
			if _, has := ra["gen_ai.conversation.id"]; has == tc.dropKey {
				t.Errorf("gen_ai.conversation.id present %v with DropWorkerKey %v", has, tc.dropKey)
			}
			for _, s := range ended[:2] {
				a := attrs(s)
				for _, k := range []attribute.Key{attrkey.GenAIContent, "gen_ai.tool.call.arguments", "gen_ai.tool.call.result"} {
					if v, ok := a[k]; ok != (tc.content && (s == chat) == (k == attrkey.GenAIContent)) {
						t.Errorf("%s: %s = %v present %v, want content only when captured", s.Name(), k, v, ok)
					}
				}
			}
			if tc.budget != "" {
				wantAttrs(t, root, map[string]any{attrkey.ErrorType: workers.CodeBudgetExceeded, attrkey.Budget: tc.budget})
				if root.Status().Code != codes.Error {
					t.Error("a run aborted for its budget without an error status")
				}
			} else if root.Status().Code == codes.Error {
				t.Errorf("run status %v", root.Status())
			}
		})
	}
}

// TestRunWithoutStepsKeepsName: a run that streamed no model or tool
// calls keeps its command's name.
func TestRunWithoutStepsKeepsName(t *testing.T) {
	t.Parallel()
	tr, rec := newTracer(t, oteltrace.Options{AgentName: "pi"})
	ctx, span := tr.StartCommand(context.Background(), "alice", "prompt")
	span.End(workers.RPCResult{Type: "prompt", Context: ctx, Run: &workers.Run{End: workers.RunEndAgentEnd}})
	if s := rec.Ended()[0]; s.Name() != "prompt" {
		t.Errorf("name %q, want prompt", s.Name())
	}
}

func wantAttrs(t *testing.T, s sdktrace.ReadOnlySpan, want map[string]any) {
	t.Helper()
	a := attrs(s)
	for k, w := range want {
		v, ok := a[attribute.Key(k)]
		if !ok {
			t.Errorf("%s: no %s", s.Name(), k)
			continue
		}
		got := v.AsInterface()
		if ws, isSlice := w.([]string); isSlice {
			if gs, _ := got.([]string); !slices.Equal(gs, ws) {
				t.Errorf("%s: %s = %v, want %v", s.Name(), k, got, w)
			}
			continue
		}
		if got != w {
			t.Errorf("%s: %s = %v (%T), want %v", s.Name(), k, got, got, w)
		}
	}
}
