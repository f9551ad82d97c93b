//go:build unix

// Package testutil holds the generic helpers the test suites share:
// polling with a deadline, an environment from pairs, a quiet logger, a
// buffer safe to write and read at once, an
// in-memory OTel log exporter, directories and binaries every worker uid
// can reach, and a process tree's CPU read from /proc as the truth. A
// Manager of demo workers is workers/workerstest's.
//
// It is imported by _test files only. It may import internal/procfs and
// the OTel SDK (an in-memory log exporter), nothing of workers, telemetry
// or httpapi.
package testutil

import (
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// Buffer collects what a process or a logger writes while the test reads
// it: Write and String are safe to call at once.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String is everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// QuietLogger discards everything (tests that check logs make their own).
func QuietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Eventually polls cond every 10 ms until it holds, failing the test when
// d passes first.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Env is a getenv over the given key, value pairs (unset keys read "").
func Env(kv ...string) func(string) string {
	m := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}
