// Package sandbox confines worker process trees: it owns the mechanics of
// issue 19's tiers 2 and 3 so that package workers only decides when to use
// them.
//
//   - Tier 2, identity: UIDRange and UIDPool hand each live worker tree its
//     own uid (and gid = uid) from a configured range; CheckIdentityCaps says
//     whether this process may switch to them.
//   - Tier 3, Landlock: Policy describes what a worker tree may read, write,
//     execute and connect to; Wrap turns a worker's argv into one that starts
//     this program's own binary in the helper role, and Main (the helper)
//     applies the policy to itself — no_new_privs, a Landlock domain with
//     file system, TCP and IPC-scope (signal, abstract socket) rules — then
//     execs the worker in place, keeping its PID, process group, parent-death
//     signal and environment marker.
//
// Go's os/exec cannot run code between fork and exec, hence the helper: the
// same re-exec approach as Codex CLI's sandbox. Binaries that spawn
// sandboxed workers must call Main early when RoleEnv is set (as
// cmd/workerscope and the workers tests do).
//
// The package imports only the standard library, golang.org/x/sys and
// github.com/landlock-lsm/go-landlock. It must not import package workers,
// anything under telemetry/, net/http or OpenTelemetry: the helper runs in
// every sandboxed worker's address space before the worker does, and must
// stay small.
package sandbox
