//go:build linux

package otelmetrics

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/cgroup"
	"github.com/workerscope/workerscope/internal/procfs"
	"github.com/workerscope/workerscope/telemetry/attrkey"
	"github.com/workerscope/workerscope/workers"
	"github.com/workerscope/workerscope/workers/workerstest"
)

// TestChurnLeavesNothingBehind runs 10,000 spawn/exit cycles through the
// supervisor while the sampler and the instruments keep collecting, then
// checks that goroutines, open fds, sampler caches and live attribute sets
// are back at their baseline and that no worker process is left.
func TestChurnLeavesNothingBehind(t *testing.T) {
	cycles := 10000
	if testing.Short() || raceEnabled {
		cycles = 1000 // the full 10,000 run without -race: make churn
	}
	m := workerstest.NewDemoManager(t, func(c *workers.Config) { c.MaxWorkers = 64; c.StopGrace = time.Second })
	pipe := startLocal(t, m, nil)
	sampler, reader := pipe.sampler, pipe.reader
	fds := func() int {
		n, _ := procfs.NewReader("").CountFDs(os.Getpid())
		return n
	}
	settle := func() {
		time.Sleep(200 * time.Millisecond)
		runtime.GC()
	}
	settle()
	baseG, baseFD := runtime.NumGoroutine(), fds()

	ctx := context.Background()
	var done atomic.Int64
	stopSampling := make(chan struct{})
	var bg sync.WaitGroup
	bg.Add(1)
	go func() { // consumers keep sampling during the churn
		defer bg.Done()
		for {
			select {
			case <-stopSampling:
				return
			case <-time.After(20 * time.Millisecond):
				sampler.Report(ctx)
				collect(t, reader)
			}
		}
	}()
	var wg sync.WaitGroup
	jobs := make(chan int)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				key := fmt.Sprintf("churn-%d", i)
				cmd := `{"type":"get_state"}`
				if i%50 == 0 { // now and then a tree, an orphan and a crash
					cmd = `{"type":"prompt","child_ms":20,"child_orphan":true,"events":1}`
				}
				if _, err := m.Send(ctx, key, []byte(cmd)); err != nil {
					t.Errorf("cycle %d: %v", i, err)
					return
				}
				if i%97 == 0 {
					_, _ = m.Send(ctx, key, []byte(`{"type":"crash"}`))
				} else if err := m.Stop(ctx, key); err != nil {
					t.Errorf("stop %d: %v", i, err)
				}
				done.Add(1)
			}
		}()
	}
	for i := 0; i < cycles; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(stopSampling)
	bg.Wait()
	if t.Failed() {
		return
	}
	// Crashed sessions' workers are gone too; let the sweeps finish.
	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("after %d cycles: %s", done.Load(), what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	eventually("no live workers", func() bool { return len(m.Snapshot()) == 0 })
	time.Sleep(2 * time.Millisecond) // past MinInterval: the next Report is a new pass
	sampler.Report(ctx)
	if c := sampler.CacheSizes(); c.Trees != 0 || c.Procs != 0 || c.Baselines != 0 {
		t.Errorf("sampler caches: trees %d procs %d baselines %d", c.Trees, c.Procs, c.Baselines)
	} else if c.Env > 200 {
		t.Errorf("marker cache holds %d entries with no workers left", c.Env)
	}
	got := collect(t, reader)
	pipe.metrics.attrMu.Lock()
	cached := len(pipe.metrics.attrs)
	pipe.metrics.attrMu.Unlock()
	if cached != 0 {
		t.Errorf("%d workers' attribute sets still cached", cached)
	}
	for name, pts := range got {
		for _, p := range pts {
			if _, ok := p.attrs.Value(attrkey.WorkerID); ok {
				t.Errorf("%s still has a per-worker series after churn", name)
				break
			}
		}
	}
	eventually("goroutines back to baseline", func() bool { settle(); return runtime.NumGoroutine() <= baseG+2 })
	eventually("fds back to baseline", func() bool { return fds() <= baseFD+2 })
	// No process of any worker is left.
	r := procfs.NewReader("")
	pids, _ := r.PIDs(nil)
	for _, pid := range pids {
		if v, ok, _ := r.EnvValue(pid, workers.MarkerEnv); ok && len(v) > len(m.ID()) && v[:len(m.ID())] == m.ID() {
			if st, err := r.ReadStat(pid); err == nil && st.State != 'Z' {
				t.Errorf("process %d of worker %s survived the churn", pid, v)
			}
		}
	}
	// Re-parented orphans were reaped, not left as zombies of ours.
	eventually("no zombie children", func() bool {
		kids, _ := r.Children(os.Getpid(), nil)
		for _, pid := range kids {
			if st, err := r.ReadStat(pid); err == nil && st.State == 'Z' {
				return false
			}
		}
		return true
	})
	// Every worker's cgroup (the default wherever one can be made) is gone.
	li := m.Limits()
	if self, err := os.ReadFile("/proc/self/cgroup"); err == nil && li.Cgroups {
		bases := cgroup.Detect("", self).Bases()
		eventually("no worker cgroup left", func() bool {
			left := cgroup.FindLeftovers(bases, "workerscope-"+m.ID()+"-")
			for _, lo := range left {
				t.Logf("cgroup left: %v", lo.Dirs)
			}
			return len(left) == 0
		})
	}
	st := m.Stats()
	t.Logf("%d cycles: spawns %d, exits %v, orphans reaped %d, sampler passes %d, tier %s (cgroups %v)",
		done.Load(), st.Spawns, st.Exits, st.OrphansReaped, sampler.Passes(), li.Tier, li.Cgroups)
}
