package report

import "github.com/workerscope/workerscope/workers"

// lastCommandJSON is one of a worker's last finished commands in
// GET /api/metrics (workers[].last_commands, oldest first).
type lastCommandJSON struct {
	Type string `json:"type"`
	// DurationSeconds is to the response, or to the end of the run the
	// command started (Run).
	DurationSeconds float64 `json:"duration_seconds"`
	Run             bool    `json:"run,omitempty"`
	// CPUSeconds is the CPU time of the worker's whole tree during the
	// command (and its run); null when not measured (not Linux).
	CPUSeconds *float64 `json:"cpu_seconds"`
	ErrorType  string   `json:"error_type,omitempty"`
	// TraceID is the command's span's trace, to look up in the tracing
	// backend; absent when the span was not sampled or tracing is off.
	TraceID string `json:"trace_id,omitempty"`
}

func lastCommands(cs []workers.CommandSummary) []lastCommandJSON {
	out := make([]lastCommandJSON, len(cs))
	for i, c := range cs {
		out[i] = lastCommandJSON{Type: c.Type, DurationSeconds: c.Duration.Seconds(), Run: c.Run, ErrorType: c.ErrorType, TraceID: c.TraceID}
		if c.HasCost {
			v := c.CPU.Seconds()
			out[i].CPUSeconds = &v
		}
	}
	return out
}
