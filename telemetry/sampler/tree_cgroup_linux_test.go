//go:build linux

package sampler

import (
	"context"
	"encoding/json"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/testutil"
	"github.com/workerscope/workerscope/workers"
	"github.com/workerscope/workerscope/workers/workerstest"
)

// TestEscapedDescendant: a descendant that scrubbed its environment,
// started its own session and was re-parented away is invisible to
// ancestry and to the marker. With a per-worker cgroup (Cgroups=required,
// tiers cgroup1 or cgroup2) it still counts in the worker's tree and dies
// with the worker's stop; without cgroups it escapes both (the documented
// limit of the watchdog tier).
func TestEscapedDescendant(t *testing.T) {
	cfg := workerstest.DemoConfig(func(c *workers.Config) { c.Cgroups = workers.CgroupsRequired; c.StopGrace = time.Second })
	m, err := workers.New(cfg)
	if err != nil {
		t.Skipf("no per-worker cgroups on this machine: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	s, err := New(m, Options{MinInterval: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Data struct {
			PID int `json:"pid"`
		} `json:"data"`
	}
	if err := json.Unmarshal(workerstest.MustSend(t, m, "k", `{"type":"escape","ms":60000}`), &r); err != nil || r.Data.PID == 0 {
		t.Fatalf("escape: %v %+v", err, r)
	}
	escaped := r.Data.PID
	t.Cleanup(func() { _ = syscall.Kill(escaped, syscall.SIGKILL) })
	testutil.Eventually(t, 10*time.Second, "the escaped sleeper counted in the tree", func() bool {
		for _, w := range s.Report(context.Background()).Workers {
			if w.Key == "k" && w.Err == nil && w.Processes == 2 {
				return true
			}
		}
		return false
	})
	if err := m.Stop(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the escaped sleeper to die with its worker", func() bool {
		err := syscall.Kill(escaped, 0)
		return errors.Is(err, syscall.ESRCH) || zombie(escaped)
	})
}

// zombie reports whether pid has exited and waits to be reaped (the test
// process is the subreaper that reaps it).
func zombie(pid int) bool {
	st, err := newProcTreeSampler("").sc.Reader().ReadStat(pid)
	return err == nil && st.State == 'Z'
}
