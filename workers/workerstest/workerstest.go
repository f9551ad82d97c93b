//go:build unix

package workerstest

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/testutil"
	"github.com/workerscope/workerscope/workers"
	"github.com/workerscope/workerscope/workers/demoworker"
)

// DemoConfig runs the calling test binary as the demo worker, with a 2 s
// stop grace and a quiet logger; mut adjusts it.
func DemoConfig(mut ...func(*workers.Config)) workers.Config {
	argv, env := demoworker.TestCommand()
	cfg := workers.Config{Command: argv, Env: env, StopGrace: 2 * time.Second, Logger: testutil.QuietLogger()}
	for _, f := range mut {
		if f != nil {
			f(&cfg)
		}
	}
	return cfg
}

// NewDemoManager starts a Manager of demo workers (see DemoConfig). At
// cleanup it closes the Manager and fails the test if a worker that was
// alive then still exists afterwards.
func NewDemoManager(t testing.TB, mut ...func(*workers.Config)) *workers.Manager {
	t.Helper()
	m, err := workers.New(DemoConfig(mut...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		snap := m.Snapshot()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil && !errors.Is(err, workers.ErrClosed) {
			t.Errorf("manager close: %v", err)
		}
		for _, w := range snap {
			if err := syscall.Kill(w.PID, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("worker %s pid %d still exists after Close (kill 0: %v)", w.ID, w.PID, err)
			}
		}
	})
	return m
}

// MustSend sends cmd to key's worker and fails the test on an error.
func MustSend(t testing.TB, m *workers.Manager, key, cmd string) json.RawMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := m.Send(ctx, key, []byte(cmd))
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return resp
}

// WaitPromptDone polls get_state until the demo worker's prompt has
// finished (a prompt is answered at once and runs on).
func WaitPromptDone(t testing.TB, m *workers.Manager, key string) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, "the prompt of "+key+" to finish", func() bool {
		var r struct {
			Data struct {
				Streaming bool `json:"streaming"`
			} `json:"data"`
		}
		if err := json.Unmarshal(MustSend(t, m, key, `{"type":"get_state"}`), &r); err != nil {
			t.Fatal(err)
		}
		return !r.Data.Streaming
	})
}

// StaticSource is a fixed pool, for samplers in tests and benchmarks; it
// also reports matching workers.Stats.
type StaticSource struct {
	mu sync.Mutex
	WS []workers.WorkerSnapshot
}

// Set replaces the pool.
func (s *StaticSource) Set(ws []workers.WorkerSnapshot) {
	s.mu.Lock()
	s.WS = ws
	s.mu.Unlock()
}

// Snapshot returns a copy of the pool.
func (s *StaticSource) Snapshot() []workers.WorkerSnapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]workers.WorkerSnapshot(nil), s.WS...)
}

// Stats counts the pool by state.
func (s *StaticSource) Stats() workers.Stats {
	st := workers.Stats{ByState: map[workers.State]int{}, Exits: map[workers.ExitReason]uint64{}, MaxWorkers: 64}
	for _, w := range s.Snapshot() {
		st.ByState[w.State]++
	}
	return st
}
