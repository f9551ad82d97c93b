package workers

import (
	"testing"
)

// Lines as pi 0.73.1 prints them in RPC mode (shapes from pi-agent-core's
// AgentEvent and pi-ai's AssistantMessage), about 0.5 KB each.
var (
	piMessageEnd    = []byte(`{"type":"message_end","message":{"role":"assistant","content":[{"type":"text","text":"The burn is done."},{"type":"toolCall","id":"call_burn","name":"bash","arguments":{"command":"i=0; while [ $i -lt 2000000 ]; do i=$((i+1)); done"}}],"api":"openai-completions","provider":"scripted","model":"m1","responseId":"chatcmpl-1","usage":{"input":1000,"output":40,"cacheRead":200,"cacheWrite":0,"totalTokens":1240,"cost":{"input":0.003,"output":0.0006,"cacheRead":0.00006,"cacheWrite":0,"total":0.00366}},"stopReason":"toolUse","timestamp":1796337227000}}`)
	piMessageUpdate = []byte(`{"type":"message_update","message":{"role":"assistant","content":[{"type":"text","text":"The burn is done."},{"type":"toolCall","id":"call_burn","name":"bash","arguments":{"command":"i=0; while [ $i -lt 2000000 ]; do i=$((i+1)); done"}}],"api":"openai-completions","provider":"scripted","model":"m1","responseId":"chatcmpl-1","usage":{"input":1000,"output":40,"cacheRead":200,"cacheWrite":0,"totalTokens":1240,"cost":{"input":0.003,"output":0.0006,"cacheRead":0.00006,"cacheWrite":0,"total":0.00366}},"stopReason":"toolUse","timestamp":1796337227000}}`)
	piToolEnd       = []byte(`{"type":"tool_execution_end","toolCallId":"call_burn","toolName":"bash","result":{"content":[{"type":"text","text":"(no output)"}],"details":{"exitCode":0}},"isError":false}`)
)

// BenchmarkAgentLine is the supervisor's read path for one line of an
// agent run, without the pipe: handleLine of a message_update (routed
// only: the baseline every event pays) against a message_end of the same
// size (also decoded into a ModelCall, added to the session's totals and
// budget) and a tool_execution_end (decoded into a ToolCall; tree
// readings off). The difference is the per-event cost of reading pi's
// events; the spans and metrics made from a ModelCall come on top, once
// per model call (BenchmarkAgentEventOverhead in telemetry/oteltrace).
func BenchmarkAgentLine(b *testing.B) {
	for _, v := range []struct {
		name string
		line []byte
	}{{"message_update", piMessageUpdate}, {"message_end", piMessageEnd}, {"tool_execution_end", piToolEnd}} {
		b.Run(v.name, func(b *testing.B) {
			w := bareWorker(Config{DisableCommandCost: true, SessionSpendBudgetUSD: 1e12})
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				w.handleLine(v.line, true)
			}
		})
	}
}
