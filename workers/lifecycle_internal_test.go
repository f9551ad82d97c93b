package workers

import (
	"encoding/json"
	"testing"
)

// TestLifecycleJSON: a Lifecycle's JSON is byte for byte what the
// map-based events were (keys sorted, each type's fields only).
func TestLifecycleJSON(t *testing.T) {
	t.Parallel()
	be := &BudgetError{Key: "k", Budget: BudgetSpend, Used: 1.25, Limit: 1}
	head := map[string]any{"worker_id": "w1-1", "key": "k"}
	for _, tc := range []struct {
		l      Lifecycle
		fields map[string]any
	}{
		{Lifecycle{Type: LifecycleWorkerStart, PID: 42}, map[string]any{"pid": 42}},
		{Lifecycle{Type: LifecycleWorkerExit, Reason: ExitCrashed, Status: "exit status 3", StderrTail: "boom <&>\n"},
			map[string]any{"reason": ExitCrashed, "status": "exit status 3", "stderr_tail": "boom <&>\n"}},
		{Lifecycle{Type: LifecycleWorkerExit, Reason: ExitStopped, Status: "signal: terminated"},
			map[string]any{"reason": ExitStopped, "status": "signal: terminated", "stderr_tail": ""}},
		{Lifecycle{Type: LifecycleWorkerLimit, Limit: LimitPids, Max: 64, Count: 3, Action: "fork_refused"},
			map[string]any{"limit": LimitPids, "max": int64(64), "count": uint64(3), "action": "fork_refused"}},
		{Lifecycle{Type: LifecycleBudgetExceeded, Budget: be},
			map[string]any{"code": CodeBudgetExceeded, "budget": be.Budget, "used": be.Used, "limit": be.Limit, "error": be.Error()}},
	} {
		tc.l.WorkerID, tc.l.Key = "w1-1", "k"
		obj := map[string]any{"type": tc.l.Type}
		for k, v := range head {
			obj[k] = v
		}
		for k, v := range tc.fields {
			obj[k] = v
		}
		want, _ := json.Marshal(obj)
		got, err := json.Marshal(tc.l)
		if err != nil || string(got) != string(want) {
			t.Errorf("%s:\n got %s (%v)\nwant %s", tc.l.Type, got, err, want)
		}
	}
}
