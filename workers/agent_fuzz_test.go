package workers

import (
	"testing"
)

// FuzzAgentLine feeds arbitrary lines through the read path with agent
// events on (budgets set, so usage is added and checked): nothing panics,
// and a line that is not an agent event never counts as a skipped one.
func FuzzAgentLine(f *testing.F) {
	for _, seed := range [][]byte{piMessageEnd, piMessageUpdate, piToolEnd,
		[]byte(`{"type":"message_start","message":{"role":"assistant","provider":"p","model":"m"}}`),
		[]byte(`{"type":"tool_execution_start","toolCallId":"a","toolName":"bash","args":{}}`),
		[]byte(`{"type":"message_end","message":5}`),
		[]byte(`{"type":"message_end","message":{"role":"assistant","usage":{"input":-1,"totalTokens":1e300,"cost":{"total":"x"}}}}`),
		[]byte(`{"toolCallId":"a","type":"tool_execution_end"}`),
		[]byte(`{"type":"agent_end"}`)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		w := bareWorker(Config{DisableCommandCost: true, SessionTokenBudget: 1 << 40, SessionSpendBudgetUSD: 1e9})
		w.handleLine(line, false)
		w.handleLine(line, false)
		w.flushAgent(w.lastActive)
		if snap := w.agentSnapshot(); snap != nil && (snap.Usage.Total < 0 || snap.Usage.CostUSD < 0) {
			t.Fatalf("negative totals %+v from %q", snap.Usage, line)
		}
	})
}
