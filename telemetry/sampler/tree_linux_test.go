//go:build linux

package sampler

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/testutil"
	"github.com/workerscope/workerscope/workers"
	"github.com/workerscope/workerscope/workers/workerstest"
)

// treeSample samples once, bypassing the cache, and returns key's report.
func treeSample(t testing.TB, s *Sampler, key string) WorkerReport {
	t.Helper()
	s.cur.Store(nil)
	r := s.Report(context.Background())
	for _, w := range r.Workers {
		if w.Key == key {
			if w.Err != nil {
				t.Fatalf("sample %s: %v", key, w.Err)
			}
			return w
		}
	}
	t.Fatalf("no worker %s in report", key)
	return WorkerReport{}
}

func cpuOf(w WorkerReport) float64 { return w.CPUUser + w.CPUSystem }

// TestTreeCPUIncludesExitedChildrenAndNeverFalls burns CPU in a worker
// and in a child that exits, sampling all the while: the tree's CPU never
// falls, and its rise matches the tree's CPU read from /proc by the test
// itself before and after (the child's time by then in the worker's
// cutime/cstime).
func TestTreeCPUIncludesExitedChildrenAndNeverFalls(t *testing.T) {
	m := workerstest.NewDemoManager(t)
	s, err := New(m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	workerstest.MustSend(t, m, "k", `{"type":"get_state"}`)
	pid := m.Snapshot()[0].PID
	before := cpuOf(treeSample(t, s, "k"))
	truthBefore := testutil.ReadTreeCPU(t, pid)
	workerstest.MustSend(t, m, "k", `{"type":"prompt","cpu_ms":400,"child_cpu_ms":300,"events":2}`)
	last := before
	var maxProcs int
	deadline := time.Now().Add(20 * time.Second)
	for {
		w := treeSample(t, s, "k")
		if cpuOf(w) < last {
			t.Fatalf("tree CPU fell from %v to %v", last, cpuOf(w))
		}
		last = cpuOf(w)
		maxProcs = max(maxProcs, w.Processes)
		if maxProcs >= 2 && w.Processes == 1 && !streaming(t, m, "k") {
			break // the child has exited and the prompt is over: the tree is idle
		}
		if time.Now().After(deadline) {
			t.Fatalf("cpu delta %v, processes %d (max %d)", last-before, w.Processes, maxProcs)
		}
		time.Sleep(30 * time.Millisecond)
	}
	// The worker burns again once its child is gone: a sampler that lost
	// the child's time at its exit cannot hide the loss behind its
	// never-falling clamp (the child may well outlive the first burn on a
	// loaded machine).
	workerstest.MustSend(t, m, "k", `{"type":"prompt","cpu_ms":500,"events":1}`)
	workerstest.WaitPromptDone(t, m, "k")
	w := treeSample(t, s, "k")
	if cpuOf(w) < last {
		t.Fatalf("tree CPU fell from %v to %v", last, cpuOf(w))
	}
	delta := cpuOf(w) - before
	truth := testutil.ReadTreeCPU(t, pid).Sub(truthBefore)
	// The sampler's readings and the test's are taken back to back while
	// the tree is idle: it uses well under a tick between them.
	const between = 10 * time.Millisecond
	tol := (testutil.CPUSlack(truth.Processes) + between).Seconds()
	t.Logf("tree CPU rose by %.3f s; /proc: %s (%s reaped)", delta, truth.Total(), truth.Reaped)
	if want := truth.Total().Seconds(); delta < want-tol || delta > want+tol {
		t.Fatalf("tree CPU rose by %.3f s, want the %.3f s ±%.3f read from /proc (the worker's own and its exited child's)", delta, want, tol)
	}
	if truth.Reaped <= 0 {
		t.Fatalf("the child's CPU never reached the worker's cutime/cstime (%s)", truth.Reaped)
	}
}

// streaming asks the demo worker whether its prompt is still running.
func streaming(t *testing.T, m *workers.Manager, key string) bool {
	t.Helper()
	var r struct {
		Data struct {
			Streaming bool `json:"streaming"`
		} `json:"data"`
	}
	if err := json.Unmarshal(workerstest.MustSend(t, m, key, `{"type":"get_state"}`), &r); err != nil {
		t.Fatal(err)
	}
	return r.Data.Streaming
}

// TestTreeCountsReparentedOrphans checks that a descendant that setsid'd
// and was re-parented away counts toward its worker, CPU included after it
// exits and the supervisor reaps it.
func TestTreeCountsReparentedOrphans(t *testing.T) {
	m := workerstest.NewDemoManager(t, func(c *workers.Config) { c.ReapInterval = 100 * time.Millisecond }) // reaps orphans often
	s, _ := New(m, Options{})
	workerstest.MustSend(t, m, "k", `{"type":"get_state"}`)
	before := cpuOf(treeSample(t, s, "k"))
	workerstest.MustSend(t, m, "k", `{"type":"prompt","child_orphan":true,"child_setsid":true,"child_cpu_ms":300,"child_ms":600,"events":0}`)
	sawOrphan := false
	deadline := time.Now().Add(20 * time.Second)
	for {
		w := treeSample(t, s, "k")
		if w.Processes >= 2 {
			sawOrphan = true
		}
		if sawOrphan && w.Processes == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphan seen %v, processes %d", sawOrphan, w.Processes)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if delta := cpuOf(treeSample(t, s, "k")) - before; delta < 0.27 {
		t.Fatalf("orphan's CPU lost: tree rose by %.3f s, want ≥ 0.27", delta)
	}
}

func TestTreeMemoryThreadsFDs(t *testing.T) {
	m := workerstest.NewDemoManager(t)
	s, _ := New(m, Options{})
	workerstest.MustSend(t, m, "k", `{"type":"get_state"}`)
	base := treeSample(t, s, "k")
	if base.Threads < 2 || base.FDs < 3 || base.VMSBytes <= base.RSSBytes || base.Processes != 1 || base.Defunct != 0 {
		t.Fatalf("baseline %+v", base.TreeStat)
	}
	workerstest.MustSend(t, m, "k", `{"type":"prompt","mem_mib":64,"events":0}`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		w := treeSample(t, s, "k")
		if w.RSSBytes-base.RSSBytes >= 60<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("RSS %d → %d after holding 64 MiB", base.RSSBytes, w.RSSBytes)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestTreeCachesArePruned(t *testing.T) {
	m := workerstest.NewDemoManager(t)
	ps, _ := NewProcessSampler()
	s, _ := New(m, Options{Process: ps})
	for i := 0; i < 3; i++ {
		workerstest.MustSend(t, m, "k", `{"type":"prompt","child_ms":50,"events":0}`)
		time.Sleep(100 * time.Millisecond)
		treeSample(t, s, "k")
		if err := m.Stop(context.Background(), "k"); err != nil {
			t.Fatal(err)
		}
	}
	s.cur.Store(nil)
	s.Report(context.Background())
	trees, procs, _ := ps.(*procTreeSampler).cacheSizes()
	if trees != 0 || procs != 0 || s.CacheSizes().Baselines != 0 {
		t.Fatalf("caches after all workers stopped: trees %d procs %d prev %d", trees, procs, s.CacheSizes().Baselines)
	}
}

// TestTreePageFaultsFollowTouchedMemory touches 32 MiB in the worker, then
// starts a child that exits: the tree's minor faults rise by at least one
// per huge page touched (the Go heap may be backed by transparent huge
// pages, so not one per 4 KiB page), and never fall when the child's
// faults move into the worker's cminflt.
func TestTreePageFaultsFollowTouchedMemory(t *testing.T) {
	m := workerstest.NewDemoManager(t)
	s, _ := New(m, Options{MinInterval: time.Nanosecond})
	workerstest.MustSend(t, m, "k", `{"type":"get_state"}`)
	before := treeSample(t, s, "k")
	workerstest.MustSend(t, m, "k", `{"type":"prompt","mem_mib":32,"events":0}`)
	workerstest.WaitPromptDone(t, m, "k")
	after := treeSample(t, s, "k")
	if got := int64(after.MinorFaults) - int64(before.MinorFaults); got < 16 {
		t.Fatalf("minor faults rose by %d (from %d), want ≥ 16 for 32 MiB touched", got, before.MinorFaults)
	}
	workerstest.MustSend(t, m, "k", `{"type":"prompt","child_ms":200,"child_cpu_ms":50,"events":0}`)
	last, sawChild := after, false
	deadline := time.Now().Add(20 * time.Second)
	for {
		w := treeSample(t, s, "k")
		if w.MinorFaults < last.MinorFaults || w.MajorFaults < last.MajorFaults {
			t.Fatalf("faults fell: minor %d → %d, major %d → %d", last.MinorFaults, w.MinorFaults, last.MajorFaults, w.MajorFaults)
		}
		last = w
		sawChild = sawChild || w.Processes > 1
		if sawChild && w.Processes == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("child seen %v, processes %d", sawChild, w.Processes)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if last.MinorFaults <= after.MinorFaults {
		t.Fatalf("a child that started and exited added no minor faults (%d → %d)", after.MinorFaults, last.MinorFaults)
	}
}
