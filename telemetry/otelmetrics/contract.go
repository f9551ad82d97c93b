package otelmetrics

import "github.com/workerscope/workerscope/telemetry/attrkey"

// Kind is an instrument kind as the metric contract names it. Counters are
// monotonic; UpDownCounters and Gauges are not.
type Kind string

// Instrument kinds used by the contract.
const (
	ObservableCounter       Kind = "ObservableCounter"
	ObservableUpDownCounter Kind = "ObservableUpDownCounter"
	ObservableGauge         Kind = "ObservableGauge"
	Histogram               Kind = "Histogram"
	Counter                 Kind = "Counter"
)

// ValueType is the number type an instrument records.
type ValueType string

// Observable reports whether k is read by a callback at collection (else
// it is recorded as things happen).
func (k Kind) Observable() bool {
	return k == ObservableCounter || k == ObservableUpDownCounter || k == ObservableGauge
}

// Value types.
const (
	Int64   ValueType = "int64"
	Float64 ValueType = "float64"
)

// MetricDef is one metric of the contract: the single source that the
// instruments are registered from and that docs/metrics.md must match (a
// test compares them, and the collected data's types against Kind and
// Value).
type MetricDef struct {
	Name  string
	Kind  Kind
	Value ValueType
	Unit  string
	// Attributes are the data-point attribute keys, always present except
	// error.type (present on failures only).
	Attributes  []string
	Description string
	// Buckets are a histogram's explicit bucket boundaries.
	Buckets []float64
}

// Metric names. Per-worker usage sums the worker's whole process tree, so
// it lives in the product's namespace with semconv's shapes; process.* is
// the supervisor itself, as semconv means it (identity in the resource).
const (
	MetricWorkerCPUTime         = "workerscope.worker.cpu.time"
	MetricWorkerCPUUtilization  = "workerscope.worker.cpu.utilization"
	MetricWorkerMemoryUsage     = "workerscope.worker.memory.usage"
	MetricWorkerMemoryVirtual   = "workerscope.worker.memory.virtual"
	MetricWorkerThreadCount     = "workerscope.worker.thread.count"
	MetricWorkerFDCount         = "workerscope.worker.file_descriptor.count"
	MetricWorkerUptime          = "workerscope.worker.uptime"
	MetricWorkerPagingFaults    = "workerscope.worker.paging.faults"
	MetricWorkerIdleTime        = "workerscope.worker.idle_time"
	MetricWorkerZombie          = "workerscope.worker.zombie"
	MetricWorkerState           = "workerscope.worker.state"
	MetricWorkerProcesses       = "workerscope.worker.process.count"
	MetricWorkerDefunct         = "workerscope.worker.defunct"
	MetricWorkerRequests        = "workerscope.worker.requests"
	MetricWorkers               = "workerscope.worker.count"
	MetricWorkersLimit          = "workerscope.worker.limit"
	MetricWorkersUnobserved     = "workerscope.worker.unobserved"
	MetricSpawns                = "workerscope.worker.spawns"
	MetricSpawnFailures         = "workerscope.worker.spawn_failures"
	MetricExits                 = "workerscope.worker.exits"
	MetricCrashLooping          = "workerscope.session.crash_looping"
	MetricRPCDuration           = "workerscope.rpc.duration"
	MetricRPCCPUTime            = "workerscope.rpc.cpu_time"
	MetricRunDuration           = "workerscope.run.duration"
	MetricRunCPUTime            = "workerscope.run.cpu_time"
	MetricLogRecordsDropped     = "workerscope.worker.log_records_dropped"
	MetricSSEClients            = "workerscope.sse.client.count"
	MetricSamplerDuration       = "workerscope.sampler.duration"
	MetricSamplerErrors         = "workerscope.sampler.errors"
	MetricLinesSkipped          = "workerscope.worker.lines_skipped"
	MetricEventsDropped         = "workerscope.events.dropped"
	MetricOrphansReaped         = "workerscope.orphans.reaped"
	MetricExportErrors          = "workerscope.export.errors"
	MetricProfilingUploadErrors = "workerscope.profiling.upload_errors"
	MetricLimitHits             = "workerscope.worker.limit_hits"
	MetricWorkerMemoryLimit     = "workerscope.worker.memory.limit"
	MetricWorkerProcessesLimit  = "workerscope.worker.process.limit"
	MetricWorkerCPULimit        = "workerscope.worker.cpu.limit"
	MetricGenAITokenUsage       = "gen_ai.client.token.usage"
	MetricGenAIOpDuration       = "gen_ai.client.operation.duration"
	MetricGenAICost             = "workerscope.gen_ai.cost"
	MetricGenAIToolDuration     = "workerscope.gen_ai.tool.duration"
	MetricGenAIToolCPUTime      = "workerscope.gen_ai.tool.cpu_time"
	MetricGenAIEventsSkipped    = "workerscope.gen_ai.events.skipped"
	MetricBudgetsExceeded       = "workerscope.session.budget.exceeded"
	MetricSessionCost           = "workerscope.session.gen_ai.cost"
	MetricSessionTokens         = "workerscope.session.gen_ai.tokens"
	MetricSessionBudgetUsage    = "workerscope.session.budget.utilization"
	MetricProcessCPUTime        = "process.cpu.time"
	MetricProcessMemoryUsage    = "process.memory.usage"
	MetricProcessMemoryVirtual  = "process.memory.virtual"
	MetricProcessThreadCount    = "process.thread.count"
	MetricProcessFDCount        = "process.unix.file_descriptor.count"
	MetricProcessUptime         = "process.uptime"
)

var perWorker = []string{attrkey.WorkerID, attrkey.WorkerKey, attrkey.ProcessPID}

func withAttr(extra ...string) []string {
	return append(append([]string(nil), perWorker...), extra...)
}

// Contract returns every metric workerscope itself registers (the Go
// runtime metrics of go.opentelemetry.io/contrib/instrumentation/runtime
// and the application gauges of Gauges come on top).
func Contract() []MetricDef {
	return []MetricDef{
		{Name: MetricWorkerCPUTime, Kind: ObservableCounter, Value: Float64, Unit: "s", Attributes: withAttr(attrkey.CPUMode),
			Description: "CPU time of the worker's process tree, including descendants that exited (with a cgroup: the group's cpu.stat, exact); cpu.mode is user or system."},
		{Name: MetricWorkerCPUUtilization, Kind: ObservableGauge, Value: Float64, Unit: "1", Attributes: withAttr(attrkey.CPUMode),
			Description: "CPU time of the tree over the last sampling window divided by the window and by the CPUs available (0..1 per mode)."},
		{Name: MetricWorkerMemoryUsage, Kind: ObservableUpDownCounter, Value: Int64, Unit: "By", Attributes: withAttr(),
			Description: "Resident set size summed over the tree's processes (shared pages count once per process, as in top); with a memory cgroup, the group's working set instead (the memory charged to it less inactive file cache, as the kubelet reckons it)."},
		{Name: MetricWorkerMemoryVirtual, Kind: ObservableUpDownCounter, Value: Int64, Unit: "By", Attributes: withAttr(),
			Description: "Virtual memory size summed over the tree's processes."},
		{Name: MetricWorkerThreadCount, Kind: ObservableUpDownCounter, Value: Int64, Unit: "{thread}", Attributes: withAttr(),
			Description: "Threads in the tree (with a pids cgroup: the group's pids.current)."},
		{Name: MetricWorkerFDCount, Kind: ObservableUpDownCounter, Value: Int64, Unit: "{file_descriptor}", Attributes: withAttr(),
			Description: "Open file descriptors in the tree."},
		{Name: MetricWorkerUptime, Kind: ObservableGauge, Value: Float64, Unit: "s", Attributes: withAttr(),
			Description: "Time since the worker was spawned."},
		{Name: MetricWorkerPagingFaults, Kind: ObservableCounter, Value: Int64, Unit: "{fault}", Attributes: withAttr(attrkey.FaultType),
			Description: "Page faults of the tree, including descendants that exited; type is major (needed I/O) or minor."},
		{Name: MetricWorkerIdleTime, Kind: ObservableGauge, Value: Float64, Unit: "s", Attributes: withAttr(),
			Description: "Time since the worker's last user-initiated command was sent or answered."},
		{Name: MetricWorkerZombie, Kind: ObservableGauge, Value: Int64, Unit: "{worker}", Attributes: withAttr(),
			Description: "1 when the worker is alive, not running, and idle for longer than the reap TTL (the reaper failed or a stop is stuck), else 0."},
		{Name: MetricWorkerState, Kind: ObservableGauge, Value: Int64, Unit: "{worker}", Attributes: withAttr(attrkey.WorkerState),
			Description: "1 for the worker's current state (starting, idle, running, stopping); one series per worker at a time."},
		{Name: MetricWorkerProcesses, Kind: ObservableUpDownCounter, Value: Int64, Unit: "{process}", Attributes: withAttr(),
			Description: "Processes in the worker's tree, re-parented descendants included."},
		{Name: MetricWorkerDefunct, Kind: ObservableUpDownCounter, Value: Int64, Unit: "{process}", Attributes: withAttr(),
			Description: "Defunct (state Z, exited but not reaped) processes in the tree."},
		{Name: MetricWorkerRequests, Kind: ObservableCounter, Value: Int64, Unit: "{request}", Attributes: withAttr(),
			Description: "Commands sent to this worker."},
		{Name: MetricWorkers, Kind: ObservableUpDownCounter, Value: Int64, Unit: "{worker}", Attributes: []string{attrkey.WorkerState},
			Description: "Live workers by state: starting, idle, running, stopping, exited."},
		{Name: MetricWorkersLimit, Kind: ObservableUpDownCounter, Value: Int64, Unit: "{worker}",
			Description: "The pool's limit on live workers (--max-workers)."},
		{Name: MetricWorkersUnobserved, Kind: ObservableGauge, Value: Int64, Unit: "{worker}",
			Description: "Live workers left out of the last collection's per-worker series by the series cap (2000 by default; logged once)."},
		{Name: MetricSpawns, Kind: ObservableCounter, Value: Int64, Unit: "{worker}",
			Description: "Workers spawned."},
		{Name: MetricSpawnFailures, Kind: ObservableCounter, Value: Int64, Unit: "{failure}",
			Description: "Worker spawns that failed (command not found, pipes, ...)."},
		{Name: MetricExits, Kind: ObservableCounter, Value: Int64, Unit: "{worker}", Attributes: []string{attrkey.ExitReason},
			Description: "Workers that ended, by workerscope.exit.reason: idle_reaped, stopped, crashed, killed, limit, memory_limit, oom_killed, pids_limit."},
		{Name: MetricCrashLooping, Kind: ObservableUpDownCounter, Value: Int64, Unit: "{session}",
			Description: "Sessions whose last 3 or more workers in a row crashed within a minute of their start (they respawn after a back-off)."},
		{Name: MetricRPCDuration, Kind: Histogram, Value: Float64, Unit: "s", Attributes: []string{attrkey.RPCSystem, attrkey.RPCMethod, attrkey.ErrorType},
			Description: "Time from a command's arrival to its response, by rpc.method (the command type; at most 64 distinct, then _OTHER) and error.type (only on failures); exemplars link to the command's span.",
			Buckets:     []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}},
		{Name: MetricRPCCPUTime, Kind: Histogram, Value: Float64, Unit: "s", Attributes: []string{attrkey.RPCSystem, attrkey.RPCMethod, attrkey.ErrorType},
			Description: "CPU time (user + system) the worker's whole process tree used during a command, to its response (workerscope.run.cpu_time covers a run that follows), exited children included, by rpc.method and error.type (only on failures); Linux only. Concurrent commands on one worker each record the whole tree's.",
			Buckets:     []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}},
		{Name: MetricRunDuration, Kind: Histogram, Value: Float64, Unit: "s", Attributes: []string{attrkey.RPCSystem, attrkey.RPCMethod, attrkey.ErrorType},
			Description: "Time from the arrival of a command whose response was followed by a streamed run (pi's prompt: agent_start to agent_end) to the run's end, by rpc.method and error.type (worker_exit when the worker exited during the run); exemplars link to the command's span.",
			Buckets:     []float64{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}},
		{Name: MetricRunCPUTime, Kind: Histogram, Value: Float64, Unit: "s", Attributes: []string{attrkey.RPCSystem, attrkey.RPCMethod, attrkey.ErrorType},
			Description: "CPU time (user + system) the worker's whole process tree used during a command and the streamed run that followed it, exited children included, by rpc.method and error.type (worker_exit when the worker exited during the run); Linux only. Concurrent commands on one worker each record the whole tree's.",
			Buckets:     []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}},
		{Name: MetricLogRecordsDropped, Kind: ObservableCounter, Value: Int64, Unit: "{record}",
			Description: "Worker stderr lines not exported as log records because the worker was over its rate (100 lines/s, bursts of 200, per worker)."},
		{Name: MetricSSEClients, Kind: ObservableUpDownCounter, Value: Int64, Unit: "{client}",
			Description: "Open Server-Sent Events streams."},
		{Name: MetricSamplerDuration, Kind: Histogram, Value: Float64, Unit: "s",
			Description: "Wall time of one sampling pass over every worker's process tree.",
			Buckets:     []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}},
		{Name: MetricSamplerErrors, Kind: ObservableCounter, Value: Int64, Unit: "{error}",
			Description: "Worker measurements that failed (the worker's usage values are then missing from that pass)."},
		{Name: MetricLinesSkipped, Kind: ObservableCounter, Value: Int64, Unit: "{line}", Attributes: []string{attrkey.LineReason},
			Description: "Worker output lines skipped, by reason: invalid (not a JSON object) or oversize."},
		{Name: MetricEventsDropped, Kind: ObservableCounter, Value: Int64, Unit: "{event}",
			Description: "Events lost by subscribers that fell behind."},
		{Name: MetricOrphansReaped, Kind: ObservableCounter, Value: Int64, Unit: "{process}",
			Description: "Re-parented descendants of workers reaped by the supervisor as child subreaper."},
		{Name: MetricExportErrors, Kind: ObservableCounter, Value: Int64, Unit: "{error}",
			Description: "Failed OTLP metric exports (a backend sees them once an export succeeds again)."},
		{Name: MetricProfilingUploadErrors, Kind: ObservableCounter, Value: Int64, Unit: "{error}",
			Description: "Failed or dropped Pyroscope profile uploads."},
		{Name: MetricLimitHits, Kind: ObservableCounter, Value: Int64, Unit: "{event}", Attributes: []string{attrkey.Limit},
			Description: "Limit events by limit: memory (OOM kills in a worker's cgroup and watchdog stops), pids (forks refused at pids.max and watchdog stops), cpu (periods in which a worker's cgroup was throttled)."},
		{Name: MetricWorkerMemoryLimit, Kind: ObservableUpDownCounter, Value: Int64, Unit: "By", Attributes: []string{attrkey.Enforcement},
			Description: "Memory limit of each worker's whole tree (--worker-memory-max), reported when set, with what enforces it."},
		{Name: MetricWorkerProcessesLimit, Kind: ObservableUpDownCounter, Value: Int64, Unit: "{process}", Attributes: []string{attrkey.Enforcement},
			Description: "Limit on processes and threads in each worker's tree (--worker-pids-max), reported when set, with what enforces it."},
		{Name: MetricWorkerCPULimit, Kind: ObservableGauge, Value: Float64, Unit: "{cpu}", Attributes: []string{attrkey.Enforcement},
			Description: "CPU bandwidth limit of each worker's tree in cores (--worker-cpu-max), reported when set, with what enforces it."},
		{Name: MetricGenAITokenUsage, Kind: Histogram, Value: Int64, Unit: "{token}", Attributes: []string{attrkey.GenAIOperation, attrkey.GenAIProvider, attrkey.GenAIModel, attrkey.GenAITokenType},
			Description: "Tokens one model call of an agent run used, by gen_ai.token.type (input, cached input included; output), provider and model as the agent reported them (at most 64 provider-model pairs, then _OTHER).",
			Buckets:     []float64{1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864}},
		{Name: MetricGenAIOpDuration, Kind: Histogram, Value: Float64, Unit: "s", Attributes: []string{attrkey.GenAIOperation, attrkey.GenAIProvider, attrkey.GenAIModel, attrkey.ErrorType},
			Description: "Time of one model call of an agent run, from its message_start to its message_end as the supervisor saw them; error.type model_error when it ended with an error.",
			Buckets:     []float64{0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92}},
		{Name: MetricGenAICost, Kind: Counter, Value: Float64, Unit: "{USD}", Attributes: []string{attrkey.GenAIProvider, attrkey.GenAIModel},
			Description: "US dollars the model calls of agent runs cost, as the agent reported them (pi's usage.cost.total), by provider and model."},
		{Name: MetricGenAIToolDuration, Kind: Histogram, Value: Float64, Unit: "s", Attributes: []string{attrkey.GenAIToolName, attrkey.ErrorType},
			Description: "Time of one tool call of an agent run, from its tool_execution_start to its tool_execution_end, by gen_ai.tool.name (at most 32 distinct, then _OTHER) and error.type (tool_error when it failed).",
			Buckets:     []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}},
		{Name: MetricGenAIToolCPUTime, Kind: Histogram, Value: Float64, Unit: "s", Attributes: []string{attrkey.GenAIToolName, attrkey.ErrorType},
			Description: "CPU time (user + system) the worker's whole process tree used during one tool call of an agent run, exited children included, by gen_ai.tool.name and error.type; Linux only.",
			Buckets:     []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900}},
		{Name: MetricGenAIEventsSkipped, Kind: ObservableCounter, Value: Int64, Unit: "{event}",
			Description: "Agent events (message_*, tool_execution_*) that did not decode, and ends without a start, skipped."},
		{Name: MetricBudgetsExceeded, Kind: ObservableCounter, Value: Int64, Unit: "{session}", Attributes: []string{attrkey.Budget},
			Description: "Sessions that went past their budget (workerscope.budget: tokens or spend) and had their run aborted."},
		{Name: MetricSessionCost, Kind: ObservableGauge, Value: Float64, Unit: "{USD}", Attributes: withAttr(),
			Description: "US dollars the worker's session has spent on model calls so far (across the session's workers, since it began or was reset: a gauge, as a respawned worker starts from its session's total)."},
		{Name: MetricSessionTokens, Kind: ObservableGauge, Value: Int64, Unit: "{token}", Attributes: withAttr(attrkey.GenAITokenType),
			Description: "Tokens the worker's session has used so far, by gen_ai.token.type (input, cached input included; output)."},
		{Name: MetricSessionBudgetUsage, Kind: ObservableGauge, Value: Float64, Unit: "1", Attributes: withAttr(attrkey.Budget),
			Description: "The share of its budget (workerscope.budget: tokens or spend) the worker's session has used; reported when the budget is set (1 and more: past it)."},
		{Name: MetricProcessCPUTime, Kind: ObservableCounter, Value: Float64, Unit: "s", Attributes: []string{attrkey.CPUMode},
			Description: "CPU time of the supervisor process itself; cpu.mode is user or system."},
		{Name: MetricProcessMemoryUsage, Kind: ObservableUpDownCounter, Value: Int64, Unit: "By",
			Description: "Resident set size of the supervisor process."},
		{Name: MetricProcessMemoryVirtual, Kind: ObservableUpDownCounter, Value: Int64, Unit: "By",
			Description: "Virtual memory size of the supervisor process."},
		{Name: MetricProcessThreadCount, Kind: ObservableUpDownCounter, Value: Int64, Unit: "{thread}",
			Description: "Threads of the supervisor process."},
		{Name: MetricProcessFDCount, Kind: ObservableUpDownCounter, Value: Int64, Unit: "{file_descriptor}",
			Description: "Open file descriptors of the supervisor process."},
		{Name: MetricProcessUptime, Kind: ObservableGauge, Value: Float64, Unit: "s",
			Description: "Time since the supervisor process started."},
	}
}
