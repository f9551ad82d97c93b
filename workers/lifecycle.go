package workers

import "encoding/json"

// Lifecycle event types (Lifecycle.Type, Event.Type).
const (
	LifecycleWorkerStart    = "worker_start"
	LifecycleWorkerExit     = "worker_exit"
	LifecycleWorkerLimit    = "worker_limit"
	LifecycleBudgetExceeded = "budget_exceeded"
)

// Lifecycle is an event the Manager adds to a session's stream: a worker
// started or exited, its cgroup refused a fork or OOM-killed a process, or
// the session went past a budget. It reaches subscribers as an Event (with
// Event.Lifecycle set and Data its JSON) and Config.OnLifecycle as it is.
//
// Its JSON object holds "type", "worker_id" and "key", plus by type:
// worker_start "pid"; worker_exit "reason", "status", "stderr_tail";
// worker_limit "limit" ("pids" or "memory"), "max", "count" (new events)
// and "action" ("fork_refused" or "oom_kill"); budget_exceeded "code",
// "budget", "used", "limit" and "error".
type Lifecycle struct {
	Type     string
	WorkerID string
	Key      string
	// PID is the worker's process (worker_start).
	PID int
	// Reason, Status and StderrTail are the worker's exit (worker_exit),
	// as in ExitError.
	Reason     ExitReason
	Status     string
	StderrTail string
	// Limit, Max, Count and Action are a cgroup limit event (worker_limit):
	// LimitPids or LimitMemory, the limit, how many new events and
	// "fork_refused" or "oom_kill".
	Limit  string
	Max    int64
	Count  uint64
	Action string
	// Budget is the budget the session went past (budget_exceeded).
	Budget *BudgetError
}

// MarshalJSON writes the event's wire form: the fields of its type only,
// with names in sorted order.
func (l Lifecycle) MarshalJSON() ([]byte, error) {
	type head struct {
		Key      string `json:"key"`
		Type     string `json:"type"`
		WorkerID string `json:"worker_id"`
	}
	switch l.Type {
	case LifecycleWorkerStart:
		return json.Marshal(struct {
			Key      string `json:"key"`
			PID      int    `json:"pid"`
			Type     string `json:"type"`
			WorkerID string `json:"worker_id"`
		}{l.Key, l.PID, l.Type, l.WorkerID})
	case LifecycleWorkerExit:
		return json.Marshal(struct {
			Key        string     `json:"key"`
			Reason     ExitReason `json:"reason"`
			Status     string     `json:"status"`
			StderrTail string     `json:"stderr_tail"`
			Type       string     `json:"type"`
			WorkerID   string     `json:"worker_id"`
		}{l.Key, l.Reason, l.Status, l.StderrTail, l.Type, l.WorkerID})
	case LifecycleWorkerLimit:
		return json.Marshal(struct {
			Action   string `json:"action"`
			Count    uint64 `json:"count"`
			Key      string `json:"key"`
			Limit    string `json:"limit"`
			Max      int64  `json:"max"`
			Type     string `json:"type"`
			WorkerID string `json:"worker_id"`
		}{l.Action, l.Count, l.Key, l.Limit, l.Max, l.Type, l.WorkerID})
	case LifecycleBudgetExceeded:
		var b BudgetError
		if l.Budget != nil {
			b = *l.Budget
		}
		return json.Marshal(struct {
			Budget   string  `json:"budget"`
			Code     string  `json:"code"`
			Error    string  `json:"error"`
			Key      string  `json:"key"`
			Limit    float64 `json:"limit"`
			Type     string  `json:"type"`
			Used     float64 `json:"used"`
			WorkerID string  `json:"worker_id"`
		}{b.Budget, CodeBudgetExceeded, b.Error(), l.Key, b.Limit, l.Type, b.Used, l.WorkerID})
	}
	return json.Marshal(head{l.Key, l.Type, l.WorkerID})
}

// lifecycle is a Lifecycle of type typ for w.
func (w *worker) lifecycle(typ string) Lifecycle {
	return Lifecycle{Type: typ, WorkerID: w.id, Key: w.key}
}

// publishLifecycle publishes a lifecycle event to the session's
// subscribers and to Config.OnLifecycle.
func (m *Manager) publishLifecycle(s *session, l Lifecycle) {
	data, _ := json.Marshal(l)
	s.publish(Event{Key: l.Key, WorkerID: l.WorkerID, Type: l.Type, Data: data, Lifecycle: &l})
	if m.cfg.OnLifecycle != nil {
		m.cfg.OnLifecycle(l)
	}
}
