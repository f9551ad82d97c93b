// Package workers supervises long-lived JSON-lines RPC worker processes
// (such as `pi --mode rpc`), one per session key.
//
// A Manager spawns a worker on the first command for a key (Send), routes
// each command's correlated response back to its caller and every other
// line to the session's event subscribers (Subscribe), stops idle workers
// after a TTL, and kills each worker's whole process tree when it stops
// (Stop, Close): its process group, descendants found by ancestry, and
// re-parented descendants found by the inherited WORKERSCOPE_WORKER_ID
// environment marker. Workers can be bounded (Config.MemoryMax, PidsMax,
// CPUMax: cgroups or a watchdog), isolated (Config.WorkerUIDs, Sandbox),
// and measured (Cost per command, ModelCall and ToolCall per agent step).
// It has no HTTP and no telemetry inside; Snapshot and Stats, and the
// Config callbacks (OnRPC, Tracer, OnLifecycle, ...) feed both.
// ExampleManager embeds one in a program.
//
// It must not import OpenTelemetry, net/http or anything under telemetry/:
// data flows one way, workers → telemetry/sampler → consumers. Its only
// project imports are its own sub-packages under workers/internal/,
// internal/procfs, internal/cgroup, internal/proflabel and internal/sandbox
// (worker uids and the Landlock helper, isolation.go).
package workers

// For maintainers (not part of the package documentation):
//
// Layout.
//
// The Manager holds one value per concern; logic that needs none of its
// private state lives in a sub-package under workers/internal/, which
// never imports workers:
//
//   - the pool and routing, the core: manager.go (Manager, Send, Snapshot,
//     Stats), session.go (sessions, acquire, eviction, back-off),
//     spawn.go, worker.go (one process: its pipes, calls, read loops),
//     stop.go (terminate, sweep, Stop, Close), reaper.go (idle workers,
//     unused sessions; the loop type the watchdog shares);
//   - event fan-out with its byte budgets: subscribe.go over
//     internal/fanout; lifecycle.go (the events the Manager adds);
//   - configuration and results: config.go, never.go, types.go,
//     errcode.go;
//   - the line protocol: internal/wire (line reader, stderr tail, command
//     parsing), stderr.go (OnStderr's lines and rate), stderrtail.go;
//   - command runs and their cost: tracing.go (CommandTracer, Cost),
//     runs.go (runs followed past the response), cost_*.go (tree readings)
//     over internal/cost;
//   - agent events and budgets: agent.go over internal/agentev;
//   - limits and enforcement tiers: limits.go (names, parsing),
//     limits_*.go (cgroups, tier selection), enforce.go (the watchdog);
//   - isolation: isolation.go (uids, directories, sandbox);
//   - leftovers of dead instances: recovery.go, flock_*.go;
//   - the platform: proc_*.go (spawner, tree signalling, orphan reaping),
//     exits_linux.go (one epoll set of pidfds tells every worker's exit:
//     no goroutine or thread per idle worker waits for it).
//
// What an idle worker holds: two goroutines (its stdout and stderr
// readers, parked in the poller without a read buffer: the buffers come
// from the Manager's wire.BufferPool while output flows) and its
// bookkeeping; no OS thread (BenchmarkIdleWorkerMemory, e2e's
// TestIdleWorkersRSS).
//
// Lock order.
//
// Manager.mu (the pool) → worker.mu → cmdState.mu → worker.agentMu, and
// Manager.mu → a session's fanout.Topic → the fanout.Hub → a fanout.Sub.
// A session's agentev.Account, worker.agentMu, the platform's lock and
// the exit watcher's are leaves. No lock is held across I/O to a worker.
