package agentev

import (
	"encoding/json"
	"testing"
)

func TestLineUsage(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		line string
		want Usage
	}{
		{`{"message":{"role":"assistant","usage":{"input":10,"output":5,"cacheRead":2,"cacheWrite":1,"totalTokens":18,"cost":{"total":0.5}}}}`,
			Usage{Input: 10, Output: 5, CacheRead: 2, CacheWrite: 1, Total: 18, CostUSD: 0.5}},
		{`{"message":{"role":"assistant","usage":{"input":1e3,"output":12.0}}}`, Usage{Input: 1000, Output: 12, Total: 1012}},
		{`{"message":{"role":"assistant","usage":{"input":-1,"totalTokens":1e300,"cost":{"total":-2}}}}`, Usage{}},
		{`{"message":{"role":"user"}}`, Usage{}},
		{`{}`, Usage{}},
	} {
		var l Line
		if err := json.Unmarshal([]byte(c.line), &l); err != nil {
			t.Fatal(err)
		}
		if got := l.Usage(); got != c.want {
			t.Errorf("%s: usage %+v, want %+v", c.line, got, c.want)
		}
	}
	if !Prefixed([]byte(`{"type":"message_end","message":{}}`)) || Prefixed([]byte(`{"message":{},"type":"message_end"}`)) {
		t.Error("Prefixed")
	}
}

func TestAccountBudgets(t *testing.T) {
	t.Parallel()
	var a Account
	b := Budgets{Tokens: 100}
	if o := a.AddModelCall(Usage{Total: 60}, b); o != nil {
		t.Fatalf("over at 60 of 100: %+v", o)
	}
	o := a.AddModelCall(Usage{Total: 60}, b)
	if o == nil || o.Budget != BudgetTokens || o.Used != 120 || o.Limit != 100 {
		t.Fatalf("at 120 of 100: %+v", o)
	}
	if o := a.AddModelCall(Usage{Total: 1}, b); o != nil {
		t.Fatal("past the budget reported twice")
	}
	a.AddToolCall()
	if tt := a.Totals(); tt.ModelCalls != 3 || tt.ToolCalls != 1 || tt.Over == nil || tt.Usage.Total != 121 {
		t.Fatalf("totals %+v", tt)
	}
	if !a.Reset() || a.Over() != nil || a.Reset() {
		t.Fatal("Reset")
	}
	if o := a.AddModelCall(Usage{CostUSD: 2}, Budgets{SpendUSD: 1}); o == nil || o.Budget != BudgetSpend {
		t.Fatalf("spend: %+v", o)
	}
}
