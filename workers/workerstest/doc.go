// Package workerstest helps tests of code that embeds a workers.Manager,
// as net/http/httptest does for handlers: a Manager of real demo-worker
// subprocesses (the calling test binary re-executed, see
// demoworker.TestMain) that checks at cleanup that no worker outlived it,
// sending commands, a fixed pool for samplers, and idle processes that
// stand in for workers in benchmarks.
//
// It is imported by _test files only.
package workerstest
