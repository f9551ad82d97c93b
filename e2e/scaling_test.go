//go:build linux

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/workerscope/workerscope/telemetry/attrkey"
	"github.com/workerscope/workerscope/telemetry/otelmetrics"
)

// seriesCount counts Prometheus-style series from the metric contract:
// per-worker series (those with workerscope.worker.id), and the fixed per-host series
// given how many values each attribute takes. A histogram is one series
// per bucket, +Inf, _sum and _count.
func seriesCount(values map[string]int) (perWorker, perHost int, table []string) {
	for _, m := range otelmetrics.Contract() {
		n := 1
		for _, a := range m.Attributes {
			switch a {
			case attrkey.WorkerID, attrkey.WorkerKey, attrkey.ProcessPID:
			default:
				v, ok := values[a]
				if !ok {
					panic("no cardinality for attribute " + a)
				}
				if a == attrkey.RPCMethod && strings.HasPrefix(m.Name, "workerscope.run.") {
					v = runMethods
				}
				n *= v
			}
		}
		if m.Kind == otelmetrics.Histogram {
			n *= len(m.Buckets) + 3
		}
		if slices.Contains(m.Attributes, attrkey.WorkerID) {
			perWorker += n
		} else {
			perHost += n
		}
		table = append(table, fmt.Sprintf("%s %d", m.Name, n))
	}
	return perWorker, perHost, table
}

// scalingValues: how many values each attribute takes at once (docs/scaling.md).
var scalingValues = map[string]int{
	attrkey.CPUMode:     2, // user, system
	attrkey.FaultType:   2, // major, minor
	attrkey.WorkerState: 5, // on workerscope.worker.count; a worker's own state gauge: 1 at a time (below)
	attrkey.ExitReason:  8,
	attrkey.LineReason:  2,
	attrkey.Limit:       3,
	attrkey.Enforcement: 1, // one enforcement per limit
	attrkey.RPCSystem:   1, // jsonl
	attrkey.RPCMethod:   3, // prompt, get_state, abort (pi has more; at most 65)
	attrkey.ErrorType:   2, // success + one failure kind per method, typical
	// agent runs (GenAI): one model of one provider per supervisor is typical; pi's four default tools
	attrkey.GenAIOperation: 1, // chat
	attrkey.GenAIProvider:  1,
	attrkey.GenAIModel:     1,
	attrkey.GenAITokenType: 2, // input, output
	attrkey.GenAIToolName:  4, // read, bash, edit, write
	attrkey.Budget:         2, // tokens, spend (both budgets set)
}

// runMethods is how many rpc.method values workerscope.run.* takes: the
// run commands only (workers.Config.RunCommands, default prompt).
const runMethods = 1

// TestScalingSeriesFromContract checks the series counts docs/scaling.md
// states against the contract, so the page follows the code.
func TestScalingSeriesFromContract(t *testing.T) {
	// A worker's workerscope.worker.state gauge has one series at a time.
	vals := maps(scalingValues)
	perWorkerAll, _, _ := seriesCount(vals)
	vals[attrkey.WorkerState] = 1
	perWorker, _, _ := seriesCount(vals)
	_, perHost, table := seriesCount(scalingValues)
	// perWorkerAll counts the state gauge at 5; the difference is 4.
	t.Logf("per-worker series: %d (a worker that visited every state within the backend's window: %d); fixed per-host series: %d", perWorker, perWorkerAll-1, perHost)
	for _, l := range table {
		t.Log(l)
	}
	doc, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "scaling.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		fmt.Sprintf("**%d series per worker**", perWorker),
		fmt.Sprintf("**%d fixed series per supervisor**", perHost),
	} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("docs/scaling.md does not say %q (the contract changed? update the page)", want)
		}
	}
}

func maps(m map[string]int) map[string]int {
	c := make(map[string]int, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
