package sampler

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/workerscope/workerscope/workers/workerstest"

	"github.com/workerscope/workerscope/workers"
)

type fakeTrees struct {
	mu    sync.Mutex
	calls int
	stats map[string]TreeStat
	block chan struct{}
}

func (f *fakeTrees) SampleSelf(out *TreeStat) { *out = TreeStat{Processes: 1} }

func (f *fakeTrees) SampleTrees(ws []workers.WorkerSnapshot, out []TreeStat) error {
	if f.block != nil {
		<-f.block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	for i, w := range ws {
		out[i] = f.stats[w.ID]
	}
	return nil
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestSamplerCPUMath(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	src := &workerstest.StaticSource{WS: []workers.WorkerSnapshot{{ID: "a", PID: 1, StartedAt: time.Unix(990, 0)}}}
	trees := &fakeTrees{stats: map[string]TreeStat{"a": {CPUUser: 2, CPUSystem: 1}}}
	s, err := New(src, Options{Process: trees, Now: clock.now, MinInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s.numCPU = 4
	r := s.Report(context.Background())
	w := r.Workers[0]
	// First pass: the window is the worker's life, 10 s, with 3 s of CPU.
	if !w.HasRate || math.Abs(w.CPUPercent-30) > 1e-9 {
		t.Fatalf("first pass: %+v", w)
	}
	if math.Abs(w.CPUUtilUser-2.0/10/4) > 1e-9 || math.Abs(w.CPUUtilSystem-1.0/10/4) > 1e-9 {
		t.Fatalf("utilization %v %v", w.CPUUtilUser, w.CPUUtilSystem)
	}
	if w.Uptime != 10*time.Second {
		t.Fatalf("uptime %s", w.Uptime)
	}
	// Within MinInterval: the cached report, no new pass.
	clock.t = clock.t.Add(500 * time.Millisecond)
	if s.Report(context.Background()) != r || trees.calls != 1 {
		t.Fatal("cached report not reused")
	}
	// 2 s later, 3 more CPU seconds (1.5 cores busy) → 150 %.
	clock.t = clock.t.Add(1500 * time.Millisecond)
	trees.stats["a"] = TreeStat{CPUUser: 4, CPUSystem: 2}
	r2 := s.Report(context.Background())
	if r2 == r || r2.Window != 2*time.Second {
		t.Fatalf("window %s", r2.Window)
	}
	if got := r2.Workers[0].CPUPercent; math.Abs(got-150) > 1e-9 {
		t.Fatalf("cpu%% = %v, want 150", got)
	}
	// The worker goes away: its baseline is pruned.
	src.Set(nil)
	clock.t = clock.t.Add(2 * time.Second)
	s.Report(context.Background())
	if s.CacheSizes().Baselines != 0 {
		t.Fatalf("baselines not pruned: %d", s.CacheSizes().Baselines)
	}
}

func TestSamplerErrorDegradesOneWorker(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	src := &workerstest.StaticSource{WS: []workers.WorkerSnapshot{{ID: "ok", StartedAt: time.Unix(999, 0)}, {ID: "bad", StartedAt: time.Unix(999, 0)}}}
	trees := &fakeTrees{stats: map[string]TreeStat{"ok": {CPUUser: 1, RSSBytes: 100}, "bad": {Err: errors.New("permission denied")}}}
	s, _ := New(src, Options{Process: trees, Now: clock.now})
	r := s.Report(context.Background())
	if r.Workers[0].Err != nil || r.Workers[0].RSSBytes != 100 {
		t.Fatalf("healthy worker degraded: %+v", r.Workers[0])
	}
	if r.Workers[1].Err == nil || r.Workers[1].HasRate {
		t.Fatalf("failing worker: %+v", r.Workers[1])
	}
	if r.Errors != 1 || s.Errors() != 1 {
		t.Fatalf("errors %d", r.Errors)
	}
}

func TestSamplerSharesOnePassBetweenConcurrentCallers(t *testing.T) {
	src := &workerstest.StaticSource{WS: []workers.WorkerSnapshot{{ID: "a"}}}
	trees := &fakeTrees{stats: map[string]TreeStat{}, block: make(chan struct{})}
	s, _ := New(src, Options{Process: trees, MinInterval: time.Minute})
	var wg sync.WaitGroup
	reports := make([]*Report, 20)
	for i := range reports {
		wg.Add(1)
		go func() { defer wg.Done(); reports[i] = s.Report(context.Background()) }()
	}
	time.Sleep(50 * time.Millisecond)
	close(trees.block)
	wg.Wait()
	if trees.calls != 1 {
		t.Fatalf("%d passes for 20 concurrent callers", trees.calls)
	}
	for _, r := range reports {
		if r != reports[0] {
			t.Fatal("callers got different reports")
		}
	}
}

func TestSamplerCallerDeadlineGetsPreviousReport(t *testing.T) {
	src := &workerstest.StaticSource{WS: []workers.WorkerSnapshot{{ID: "a"}}}
	trees := &fakeTrees{stats: map[string]TreeStat{}}
	clock := &fakeClock{t: time.Unix(1000, 0)}
	s, _ := New(src, Options{Process: trees, Now: clock.now})
	first := s.Report(context.Background())
	trees.block = make(chan struct{})
	clock.t = clock.t.Add(time.Hour)
	go s.Report(context.Background()) // a slow pass holds the sampler
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if got := s.Report(ctx); got != first {
		t.Fatal("a caller whose deadline passed should get the previous report")
	}
	close(trees.block)
}
