// Package attrkey names every attribute key workerscope puts on its
// metrics, spans and log records, once: a key that two signals share
// (workerscope.worker.id on a metric point, a span and a log record) is the same
// constant in all three, so a backend can join them, and a rename is one
// line here (docs/metrics.md and docs/traces-and-logs.md follow).
//
// Keys of the OpenTelemetry semantic conventions keep their semconv names
// (process.pid, error.type, rpc.method, cpu.mode, gen_ai.*, log.iostream);
// workerscope's own carry its namespace where they are not the worker's
// identity (workerscope.*). Values are in the packages that record them.
//
// It is a leaf: it imports nothing.
package attrkey

// The worker's identity, on every per-worker metric point, every command
// span and every worker log record.
const (
	WorkerID   = "workerscope.worker.id"
	WorkerKey  = "workerscope.worker.key" // the session key; dropped with --metrics-worker-key=false
	ProcessPID = "process.pid"
)

// Dimensions of metric points.
const (
	WorkerState = "workerscope.worker.state"
	ExitReason  = "workerscope.exit.reason"
	CPUMode     = "cpu.mode"
	FaultType   = "system.paging.fault.type" // workerscope.worker.paging.faults: major, minor (semconv's)
	LineReason  = "workerscope.line.reason"  // workerscope.worker.lines_skipped: invalid, oversize
	Limit       = "workerscope.limit.name"   // memory, pids, cpu
	Enforcement = "workerscope.limit.enforcement"
	// Budget names a session budget (tokens, spend).
	Budget = "workerscope.budget"
)

// Commands: on the rpc histograms and on the command spans.
const (
	RPCMethod = "rpc.method"
	ErrorType = "error.type"
	// RPCSystem is semconv's rpc.system.name, which names the protocol
	// rpc.method belongs to: the workers' JSON lines over stdio (pi's RPC
	// mode), not one of semconv's listed systems, so a value of its own.
	RPCSystem = "rpc.system.name"
)

// RPCSystemJSONL is rpc.system.name's value.
const RPCSystemJSONL = "jsonl"

// The GenAI semantic conventions (as of semconv v1.41.0), on the GenAI
// metrics; the spans set them through go.opentelemetry.io/otel/semconv.
const (
	GenAIOperation = "gen_ai.operation.name"
	GenAIProvider  = "gen_ai.provider.name"
	GenAIModel     = "gen_ai.request.model"
	GenAITokenType = "gen_ai.token.type"
	GenAIToolName  = "gen_ai.tool.name"
)

// A command span's cost and events (telemetry/oteltrace).
const (
	CostCPU       = "workerscope.cost.cpu_time"
	CostCPUUser   = "workerscope.cost.cpu_time.user"
	CostCPUSystem = "workerscope.cost.cpu_time.system"
	CostMemPeak   = "workerscope.cost.memory.peak"
	CostProcesses = "workerscope.cost.processes"
	CostShared    = "workerscope.cost.shared"
	Events        = "workerscope.events"
	EventsDropped = "workerscope.events.dropped"
	// Run is true on the span of a command whose response was followed by
	// a streamed run (pi's prompt): the span and its cost cover the run.
	Run = "workerscope.run"
	// RunEnd says how the run ended: agent_end, worker_exit or
	// max_duration.
	RunEnd = "workerscope.run.end"
	// ResponseTime is the time from the command's arrival to its
	// response, in seconds, on a run's span (whose duration is the run's).
	ResponseTime = "workerscope.response_time"
)

// GenAI spans' own additions (telemetry/oteltrace).
const (
	// GenAICost is a model call's (or, on invoke_agent, the run's) cost
	// in US dollars, as the agent reported it.
	GenAICost = "workerscope.gen_ai.usage.cost_usd"
	// GenAIIncomplete is true on a step the run ended before its end
	// event (its duration is up to the run's end, its usage unknown).
	GenAIIncomplete = "workerscope.gen_ai.incomplete"
	// GenAIModelCalls and GenAIToolCalls count a run's steps, on its
	// invoke_agent span.
	GenAIModelCalls = "workerscope.gen_ai.model_calls"
	GenAIToolCalls  = "workerscope.gen_ai.tool_calls"
	// GenAIContent is a model call's output content as the agent sent it
	// (pi's content array), only with content capture on.
	GenAIContent = "workerscope.gen_ai.output.content"
)

// Worker log records (telemetry/otellogs).
const (
	// IOStream is semconv's log.iostream ("stderr").
	IOStream = "log.iostream"
	// Truncated marks a line cut at workers.Config.StderrLineBytes.
	Truncated = "workerscope.log.truncated"
	// ExitStatus and StderrTail describe a worker_exit (with ExitReason).
	ExitStatus = "workerscope.exit.status"
	StderrTail = "workerscope.stderr_tail"
)
