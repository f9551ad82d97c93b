//go:build linux

package telemetry

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/workerscope/workerscope/workers"
	"github.com/workerscope/workerscope/workers/demoworker"
)

func newDemoManager(t testing.TB, mut ...func(*workers.Config)) *workers.Manager {
	t.Helper()
	cfg := workers.Config{
		Command:   []string{os.Args[0]},
		Env:       []string{demoworker.RoleEnv + "=worker"},
		StopGrace: 2 * time.Second,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, f := range mut {
		f(&cfg)
	}
	m, err := workers.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	return m
}

func mustSend(t testing.TB, m *workers.Manager, key, cmd string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := m.Send(ctx, key, []byte(cmd)); err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
}

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

// waitPromptDone polls get_state until the worker's prompt has finished
// (a prompt is answered at once and runs on).
func waitPromptDone(t testing.TB, m *workers.Manager, key string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := m.Send(ctx, key, []byte(`{"type":"get_state"}`))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Data struct {
				Streaming bool `json:"streaming"`
			} `json:"data"`
		}
		if err := json.Unmarshal(resp, &r); err != nil {
			t.Fatal(err)
		}
		if !r.Data.Streaming {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("prompt of %s still streaming", key)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func cpuOf(w WorkerReport) float64 { return w.CPUUser + w.CPUSystem }

// TestTreeCPUIncludesExitedChildrenAndNeverFalls burns a known amount of
// CPU in a worker and in a child that exits, sampling all the while.
func TestTreeCPUIncludesExitedChildrenAndNeverFalls(t *testing.T) {
	m := newDemoManager(t)
	s, err := NewSampler(m, SamplerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mustSend(t, m, "k", `{"type":"get_state"}`)
	before := cpuOf(treeSample(t, s, "k"))
	mustSend(t, m, "k", `{"type":"prompt","cpu_ms":400,"child_cpu_ms":300,"events":2}`)
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
		if w.Processes == 1 && last-before >= 0.6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cpu delta %v, processes %d", last-before, w.Processes)
		}
		time.Sleep(30 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	delta := cpuOf(treeSample(t, s, "k")) - before
	// 0.7 s burnt, ±10 %, plus a little for starting the child process.
	if delta < 0.63 || delta > 0.77+0.1 {
		t.Fatalf("tree CPU rose by %.3f s, want 0.7 s ±10%%", delta)
	}
	if maxProcs < 2 {
		t.Fatalf("child never seen in the tree (max %d processes)", maxProcs)
	}
}

// TestTreeCountsReparentedOrphans checks that a descendant that setsid'd
// and was re-parented away counts toward its worker, CPU included after it
// exits and the supervisor reaps it.
func TestTreeCountsReparentedOrphans(t *testing.T) {
	m := newDemoManager(t, func(c *workers.Config) { c.ReapInterval = 100 * time.Millisecond }) // reaps orphans often
	s, _ := NewSampler(m, SamplerOptions{})
	mustSend(t, m, "k", `{"type":"get_state"}`)
	before := cpuOf(treeSample(t, s, "k"))
	mustSend(t, m, "k", `{"type":"prompt","child_orphan":true,"child_setsid":true,"child_cpu_ms":300,"child_ms":600,"events":0}`)
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
	m := newDemoManager(t)
	s, _ := NewSampler(m, SamplerOptions{})
	mustSend(t, m, "k", `{"type":"get_state"}`)
	base := treeSample(t, s, "k")
	if base.Threads < 2 || base.FDs < 3 || base.VMSBytes <= base.RSSBytes || base.Processes != 1 || base.Defunct != 0 {
		t.Fatalf("baseline %+v", base.TreeStat)
	}
	mustSend(t, m, "k", `{"type":"prompt","mem_mib":64,"events":0}`)
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
	m := newDemoManager(t)
	ps, _ := NewProcessSampler()
	s, _ := NewSampler(m, SamplerOptions{Process: ps})
	for i := 0; i < 3; i++ {
		mustSend(t, m, "k", `{"type":"prompt","child_ms":50,"events":0}`)
		time.Sleep(100 * time.Millisecond)
		treeSample(t, s, "k")
		if err := m.Stop(context.Background(), "k"); err != nil {
			t.Fatal(err)
		}
	}
	s.cur.Store(nil)
	s.Report(context.Background())
	trees, procs, _ := ps.(*procTreeSampler).cacheSizes()
	if trees != 0 || procs != 0 || s.PrevLen() != 0 {
		t.Fatalf("caches after all workers stopped: trees %d procs %d prev %d", trees, procs, s.PrevLen())
	}
}

// TestTreePageFaultsFollowTouchedMemory touches 32 MiB in the worker, then
// starts a child that exits: the tree's minor faults rise by at least one
// per huge page touched (the Go heap may be backed by transparent huge
// pages, so not one per 4 KiB page), and never fall when the child's
// faults move into the worker's cminflt.
func TestTreePageFaultsFollowTouchedMemory(t *testing.T) {
	m := newDemoManager(t)
	s, _ := NewSampler(m, SamplerOptions{MinInterval: time.Nanosecond})
	mustSend(t, m, "k", `{"type":"get_state"}`)
	before := treeSample(t, s, "k")
	mustSend(t, m, "k", `{"type":"prompt","mem_mib":32,"events":0}`)
	waitPromptDone(t, m, "k")
	after := treeSample(t, s, "k")
	if got := int64(after.MinorFaults) - int64(before.MinorFaults); got < 16 {
		t.Fatalf("minor faults rose by %d (from %d), want ≥ 16 for 32 MiB touched", got, before.MinorFaults)
	}
	mustSend(t, m, "k", `{"type":"prompt","child_ms":200,"child_cpu_ms":50,"events":0}`)
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
