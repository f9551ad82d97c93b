//go:build linux

package sampler

import (
	"context"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/testutil"
	"github.com/workerscope/workerscope/workers/workerstest"
)

// TestGopsutilSamplerContract runs the portable sampler (the default off
// Linux) on Linux against real demo workers: the tree found by parent
// PID, memory held, threads, fds and faults measured, CPU that never falls,
// and a child counted while it lives.
func TestGopsutilSamplerContract(t *testing.T) {
	m := workerstest.NewDemoManager(t)
	s, err := New(m, Options{Process: NewGopsutilSampler(), MinInterval: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	sample := func() WorkerReport {
		t.Helper()
		r := s.Report(context.Background())
		for _, w := range r.Workers {
			if w.Key == "k" {
				if w.Err != nil {
					t.Fatalf("sample: %v", w.Err)
				}
				return w
			}
		}
		t.Fatal("no worker k in the report")
		return WorkerReport{}
	}
	workerstest.MustSend(t, m, "k", `{"type":"prompt","mem_mib":64,"cpu_ms":200,"events":0}`)
	workerstest.WaitPromptDone(t, m, "k")
	w := sample()
	if w.RSSBytes < 64<<20 || w.VMSBytes < w.RSSBytes || w.Threads < 1 || w.FDs < 3 || w.Processes != 1 || w.MinorFaults == 0 {
		t.Fatalf("gopsutil tree: %+v", w.TreeStat)
	}
	if w.Partial != nil {
		t.Fatalf("on Linux everything is measurable, got %v", w.Partial)
	}
	// The truth: the worker's own utime+stime read from /proc by the test
	// right after the sample, the worker idle (gopsutil reports no reaped
	// children's time, and this worker has reaped none).
	truth := testutil.ReadTreeCPU(t, m.Snapshot()[0].PID)
	const between = 10 * time.Millisecond // the idle worker's CPU between the two readings
	tol := (testutil.CPUSlack(truth.Processes) + between).Seconds()
	if cpu, want := w.CPUUser+w.CPUSystem, truth.Own.Seconds(); cpu <= 0 || cpu < want-tol || cpu > want+tol {
		t.Fatalf("CPU %.3f s, want the %.3f s ±%.3f read from /proc", cpu, want, tol)
	}
	last := w.CPUUser + w.CPUSystem
	workerstest.MustSend(t, m, "k", `{"type":"prompt","child_ms":1500,"child_cpu_ms":100,"events":0}`)
	testutil.Eventually(t, 10*time.Second, "the child in the tree", func() bool {
		w := sample()
		if cpu := w.CPUUser + w.CPUSystem; cpu < last {
			t.Fatalf("CPU fell from %.3f to %.3f", last, cpu)
		} else {
			last = cpu
		}
		return w.Processes == 2
	})
}
