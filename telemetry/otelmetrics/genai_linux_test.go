//go:build linux

package otelmetrics

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/workerscope/workerscope/internal/testutil"
	"github.com/workerscope/workerscope/telemetry/attrkey"
	"github.com/workerscope/workerscope/workers"
	"github.com/workerscope/workerscope/workers/workerstest"
)

// TestGenAIMetricsFromRealRun: a real demo worker's agent run (two tool
// turns) is recorded as gen_ai.client.token.usage (input with the cached
// tokens, output) and gen_ai.client.operation.duration per model call,
// USD spend by provider and model, tool duration and tool CPU by tool
// name; the session's totals and its share of the spend budget are
// observed per worker; tool names past the cap fall into _OTHER.
func TestGenAIMetricsFromRealRun(t *testing.T) {
	l := newLocal(t)
	m := workerstest.NewDemoManager(t, func(c *workers.Config) {
		c.OnModelCall, c.OnToolCall = l.recorder.RecordModelCall, l.recorder.RecordToolCall
		c.SessionSpendBudgetUSD = 1
	})
	l.observe(t, m, func(o *MetricsOptions) { o.SessionSpendBudgetUSD = 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub, err := m.Subscribe("g", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if _, err := m.Send(ctx, "g", []byte(`{"type":"prompt","agent_events":true,"turns":2,"cpu_ms":400,"input_tokens":700,"output_tokens":30,"cache_tokens":100,"cost_usd":0.125}`)); err != nil {
		t.Fatal(err)
	}
	for ev := range sub.C {
		if ev.Type == "agent_end" {
			break
		}
	}
	var rm metricdata.ResourceMetrics
	testutil.Eventually(t, 10*time.Second, "the run's metrics", func() bool {
		rm = metricdata.ResourceMetrics{}
		if err := l.reader.Collect(ctx, &rm); err != nil {
			t.Fatal(err)
		}
		return findMetric(rm, MetricGenAIToolCPUTime) != nil && findMetric(rm, MetricSessionCost) != nil
	})
	model := []attribute.KeyValue{attribute.String(attrkey.GenAIOperation, "chat"), attribute.String(attrkey.GenAIProvider, "demo"), attribute.String(attrkey.GenAIModel, "demo-model")}
	tok := findMetric(rm, MetricGenAITokenUsage).Data.(metricdata.Histogram[int64])
	for typ, want := range map[string]int64{"input": 3 * 800, "output": 3 * 30} {
		set := attribute.NewSet(append(model, attribute.String(attrkey.GenAITokenType, typ))...)
		found := false
		for _, p := range tok.DataPoints {
			if p.Attributes.Equals(&set) {
				found = true
				if p.Count != 3 || p.Sum != want {
					t.Errorf("token usage %s: %d calls, sum %d; want 3, %d", typ, p.Count, p.Sum, want)
				}
			}
		}
		if !found {
			t.Errorf("no token usage point for %s", typ)
		}
	}
	dur := findMetric(rm, MetricGenAIOpDuration).Data.(metricdata.Histogram[float64])
	if p, ok := pointFor(dur.DataPoints, model...); !ok || p.Count != 3 {
		t.Errorf("operation duration %+v (found %v), want 3 calls", p, ok)
	}
	cost := findMetric(rm, MetricGenAICost).Data.(metricdata.Sum[float64])
	if len(cost.DataPoints) != 1 || cost.DataPoints[0].Value != 3*0.125 || !cost.IsMonotonic {
		t.Errorf("cost %+v, want $0.375", cost.DataPoints)
	}
	bash := attribute.String(attrkey.GenAIToolName, "bash")
	cpu := findMetric(rm, MetricGenAIToolCPUTime).Data.(metricdata.Histogram[float64])
	if p, ok := pointFor(cpu.DataPoints, bash); !ok || p.Count != 2 || p.Sum < 0.3 || p.Sum > 0.5 {
		t.Errorf("tool cpu %+v (found %v), want 2 calls of about 0.4 s together", p, ok)
	}
	if p, ok := pointFor(findMetric(rm, MetricGenAIToolDuration).Data.(metricdata.Histogram[float64]).DataPoints, bash); !ok || p.Count != 2 {
		t.Errorf("tool duration %+v (found %v)", p, ok)
	}
	sess := findMetric(rm, MetricSessionCost).Data.(metricdata.Gauge[float64])
	if len(sess.DataPoints) != 1 || sess.DataPoints[0].Value != 0.375 {
		t.Errorf("session cost %+v, want 0.375", sess.DataPoints)
	}
	util := findMetric(rm, MetricSessionBudgetUsage).Data.(metricdata.Gauge[float64])
	if len(util.DataPoints) != 1 || util.DataPoints[0].Value != 0.375 {
		t.Errorf("budget utilization %+v, want 0.375 of the $1 budget", util.DataPoints)
	}

	// The tool-name cap.
	for i := 0; i < maxTools+3; i++ {
		l.recorder.RecordToolCall(workers.ToolCall{Name: fmt.Sprintf("t%d", i), End: time.Now()})
	}
	rm = metricdata.ResourceMetrics{}
	if err := l.reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	td := findMetric(rm, MetricGenAIToolDuration).Data.(metricdata.Histogram[float64])
	if p, ok := pointFor(td.DataPoints, attribute.String(attrkey.GenAIToolName, otherMethod)); !ok || p.Count != 4 || len(td.DataPoints) != maxTools+1 {
		t.Errorf("%d tool series, _OTHER %+v; want %d and 4 calls in _OTHER", len(td.DataPoints), p, maxTools+1)
	}
}

func findMetric(rm metricdata.ResourceMetrics, name string) *metricdata.Metrics {
	for _, sm := range rm.ScopeMetrics {
		for i := range sm.Metrics {
			if sm.Metrics[i].Name == name {
				return &sm.Metrics[i]
			}
		}
	}
	return nil
}
