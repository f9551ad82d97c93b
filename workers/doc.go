// Package workers supervises long-lived JSON-lines RPC worker processes
// (such as `pi --mode rpc`), one per session key.
//
// A Manager spawns a worker on the first command for a key, routes each
// command's correlated response back to its caller and every other line to
// the session's event subscribers, stops idle workers after a TTL, and
// kills each worker's whole process tree when it stops: its process group,
// descendants found by ancestry, and re-parented descendants found by the
// inherited WORKERSCOPE_WORKER_ID environment marker. It has no HTTP and no
// telemetry inside; Snapshot and Stats feed both.
//
// It must not import OpenTelemetry, net/http or anything under telemetry/:
// data flows one way, workers → telemetry/sampler → consumers. Its only
// project imports are its own sub-packages under workers/internal/,
// internal/procfs, internal/cgroup, internal/proflabel and internal/sandbox
// (worker uids and the Landlock helper, isolation.go).
//
// Lock order: Manager.mu before worker.mu, and Manager.mu before
// session.subMu; no lock is held across I/O to a worker.
package workers
