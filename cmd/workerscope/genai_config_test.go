package main

import (
	"io"
	"strings"
	"testing"

	"github.com/workerscope/workerscope/internal/testutil"
)

// TestParseConfigGenAI: the session budgets and the GenAI content opt-in,
// from flags and the environment; invalid values name their setting.
func TestParseConfigGenAI(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		args    []string
		env     []string
		tokens  int64
		usd     float64
		content bool
		err     string
	}{
		{name: "defaults"},
		{name: "flags", args: []string{"--session-token-budget", "200000", "--session-spend-budget-usd", "2.50"}, tokens: 200000, usd: 2.5},
		{name: "env and a dollar sign", env: []string{"WORKERSCOPE_SESSION_TOKEN_BUDGET", "7", "WORKERSCOPE_SESSION_SPEND_BUDGET_USD", "$0.25",
			"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true"}, tokens: 7, usd: 0.25, content: true},
		{name: "negative tokens", args: []string{"--session-token-budget", "-1"}, err: "--session-token-budget / WORKERSCOPE_SESSION_TOKEN_BUDGET"},
		{name: "fractional tokens", args: []string{"--session-token-budget", "1.5"}, err: "--session-token-budget"},
		{name: "bad dollars", env: []string{"WORKERSCOPE_SESSION_SPEND_BUDGET_USD", "lots"}, err: "--session-spend-budget-usd / WORKERSCOPE_SESSION_SPEND_BUDGET_USD"},
		{name: "infinite dollars", args: []string{"--session-spend-budget-usd", "Inf"}, err: "--session-spend-budget-usd"},
		{name: "bad opt-in", env: []string{"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "perhaps"}, err: "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.args, testutil.Env(tt.env...), io.Discard)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want it to mention %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Worker.SessionTokenBudget != tt.tokens || c.Worker.SessionSpendBudgetUSD != tt.usd || c.Worker.CaptureAgentContent != tt.content {
				t.Errorf("budgets %d, %g, content %v; want %d, %g, %v", c.Worker.SessionTokenBudget, c.Worker.SessionSpendBudgetUSD, c.Worker.CaptureAgentContent, tt.tokens, tt.usd, tt.content)
			}
		})
	}
}
