// Package telemetry measures workers and exports what they cost: a cheap
// process-tree sampler shared by every consumer, OpenTelemetry instruments
// pushed over OTLP gRPC, and the provider setup that reads the standard
// OTEL_* environment.
package telemetry

// Kind is an instrument kind as the metric contract names it.
type Kind string

// Instrument kinds used by the contract.
const (
	ObservableCounter       Kind = "ObservableCounter"
	ObservableUpDownCounter Kind = "ObservableUpDownCounter"
	ObservableGauge         Kind = "ObservableGauge"
	Histogram               Kind = "Histogram"
)

// MetricDef is one metric of the contract: the single source that the
// instruments are registered from and that docs/metrics.md must match (a
// test compares them).
type MetricDef struct {
	Name        string
	Kind        Kind
	Unit        string
	Attributes  []string
	Description string
}

// Attribute keys.
const (
	AttrWorkerID    = "worker.id"
	AttrWorkerKey   = "worker.key"
	AttrProcessPID  = "process.pid"
	AttrCPUMode     = "cpu.mode"
	AttrWorkerState = "worker.state"
	AttrExitReason  = "exit.reason"
	AttrCommand     = "rpc.command"
	AttrOutcome     = "rpc.outcome"
	AttrLineReason  = "reason"
)

// Metric names.
const (
	MetricCPUTime         = "process.cpu.time"
	MetricCPUUtilization  = "process.cpu.utilization"
	MetricMemoryUsage     = "process.memory.usage"
	MetricMemoryVirtual   = "process.memory.virtual"
	MetricThreadCount     = "process.thread.count"
	MetricFDCount         = "process.unix.file_descriptor.count"
	MetricUptime          = "process.uptime"
	MetricIdleTime        = "workerscope.worker.idle_time"
	MetricZombie          = "workerscope.worker.zombie"
	MetricProcesses       = "workerscope.worker.processes"
	MetricDefunct         = "workerscope.worker.defunct"
	MetricRequests        = "workerscope.worker.requests"
	MetricWorkers         = "workerscope.workers"
	MetricSpawns          = "workerscope.worker.spawns"
	MetricSpawnFailures   = "workerscope.worker.spawn_failures"
	MetricExits           = "workerscope.worker.exits"
	MetricRPCDuration     = "workerscope.rpc.duration"
	MetricSSEClients      = "workerscope.sse.clients"
	MetricSamplerDuration = "workerscope.sampler.duration"
	MetricSamplerErrors   = "workerscope.sampler.errors"
	MetricLinesSkipped    = "workerscope.worker.lines_skipped"
	MetricEventsDropped   = "workerscope.events.dropped"
	MetricOrphansReaped   = "workerscope.orphans.reaped"
	MetricExportErrors    = "workerscope.export.errors"
)

var perWorker = []string{AttrWorkerID, AttrWorkerKey, AttrProcessPID}

func withAttr(extra ...string) []string {
	return append(append([]string(nil), perWorker...), extra...)
}

// Contract returns every metric workerscope itself registers (the Go
// runtime metrics of go.opentelemetry.io/contrib/instrumentation/runtime
// come on top). Per-worker usage covers the worker's whole process tree.
func Contract() []MetricDef {
	return []MetricDef{
		{MetricCPUTime, ObservableCounter, "s", withAttr(AttrCPUMode), "CPU time of the worker's process tree, including descendants that exited; cpu.mode is user or system."},
		{MetricCPUUtilization, ObservableGauge, "1", withAttr(AttrCPUMode), "CPU time of the tree over the last sampling window divided by the window and by the CPUs available (0..1 per mode)."},
		{MetricMemoryUsage, ObservableUpDownCounter, "By", withAttr(), "Resident set size summed over the tree's processes (shared pages count once per process, as in top)."},
		{MetricMemoryVirtual, ObservableUpDownCounter, "By", withAttr(), "Virtual memory size summed over the tree's processes."},
		{MetricThreadCount, ObservableUpDownCounter, "{thread}", withAttr(), "Threads in the tree."},
		{MetricFDCount, ObservableUpDownCounter, "{file_descriptor}", withAttr(), "Open file descriptors in the tree."},
		{MetricUptime, ObservableGauge, "s", withAttr(), "Time since the worker was spawned."},
		{MetricIdleTime, ObservableGauge, "s", withAttr(), "Time since the worker's last user-initiated command was sent or answered."},
		{MetricZombie, ObservableGauge, "1", withAttr(), "1 when the worker is alive, not running, and idle for longer than the reap TTL (the reaper failed or a stop is stuck), else 0."},
		{MetricProcesses, ObservableUpDownCounter, "{process}", withAttr(), "Processes in the worker's tree, re-parented descendants included."},
		{MetricDefunct, ObservableUpDownCounter, "{process}", withAttr(), "Defunct (state Z, exited but not reaped) processes in the tree."},
		{MetricRequests, ObservableCounter, "{request}", withAttr(), "Commands sent to this worker."},
		{MetricWorkers, ObservableUpDownCounter, "{worker}", []string{AttrWorkerState}, "Live workers by state: starting, idle, running, stopping, exited."},
		{MetricSpawns, ObservableCounter, "{worker}", nil, "Workers spawned."},
		{MetricSpawnFailures, ObservableCounter, "{failure}", nil, "Worker spawns that failed (command not found, pipes, ...)."},
		{MetricExits, ObservableCounter, "{worker}", []string{AttrExitReason}, "Workers that ended, by exit.reason: idle_reaped, stopped, crashed, killed, limit."},
		{MetricRPCDuration, Histogram, "s", []string{AttrCommand, AttrOutcome}, "Time from a command's arrival to its response, by command type (at most 64 distinct, then \"other\") and outcome: ok, error, timeout, crashed, failed."},
		{MetricSSEClients, ObservableUpDownCounter, "{client}", nil, "Open Server-Sent Events streams."},
		{MetricSamplerDuration, Histogram, "s", nil, "Wall time of one sampling pass over every worker's process tree."},
		{MetricSamplerErrors, ObservableCounter, "{error}", nil, "Worker measurements that failed (the worker's usage values are then missing from that pass)."},
		{MetricLinesSkipped, ObservableCounter, "{line}", []string{AttrLineReason}, "Worker output lines skipped, by reason: invalid (not a JSON object) or oversize."},
		{MetricEventsDropped, ObservableCounter, "{event}", nil, "Events lost by subscribers that fell behind."},
		{MetricOrphansReaped, ObservableCounter, "{process}", nil, "Re-parented descendants of workers reaped by the supervisor as child subreaper."},
		{MetricExportErrors, ObservableCounter, "{error}", nil, "Failed OTLP exports."},
	}
}
