//go:build linux

package sampler

import (
	"context"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/testutil"
	"github.com/workerscope/workerscope/workers/workerstest"

	"github.com/shirou/gopsutil/v4/process"

	"github.com/workerscope/workerscope/workers"
)

// baselineReader does the minimum: one read of /proc/PID/stat per process
// into a reused buffer, nothing parsed.
type baselineReader struct {
	buf  []byte
	path []byte
}

func (b *baselineReader) pass(ws []workers.WorkerSnapshot) int {
	total := 0
	for _, w := range ws {
		b.path = strconv.AppendInt(append(b.path[:0], "/proc/"...), int64(w.PID), 10)
		b.path = append(b.path, "/stat"...)
		fd, err := syscall.Open(string(b.path), syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		n, _ := syscall.Read(fd, b.buf)
		syscall.Close(fd)
		total += n
	}
	return total
}

var benchSizes = []int{10, 100, 1000}

// BenchmarkSamplerVsBaseline measures, in one run and on the same
// processes, the CPU of a whole sampling pass (scan, tree attribution, fd
// counts, CPU accounting, rates) per worker beside the baseline reader,
// and reports their ratio. The budget is a ratio ≤ 2 at N = 1000.
func BenchmarkSamplerVsBaseline(b *testing.B) {
	for _, n := range benchSizes {
		b.Run("N="+strconv.Itoa(n), func(b *testing.B) {
			ws := workerstest.IdleSleepers(b, n)
			src := &workerstest.StaticSource{WS: ws}
			s, err := New(src, Options{})
			if err != nil {
				b.Fatal(err)
			}
			base := &baselineReader{buf: make([]byte, 4096)}
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			s.sample() // warm the caches, as in steady state
			var samplerCPU, baseCPU time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				t0 := testutil.ThreadCPU()
				base.pass(ws)
				t1 := testutil.ThreadCPU()
				r := s.sample()
				t2 := testutil.ThreadCPU()
				baseCPU += t1 - t0
				samplerCPU += t2 - t1
				if len(r.Workers) != n || r.Workers[0].Err != nil {
					b.Fatalf("bad pass: %d workers, err %v", len(r.Workers), r.Workers[0].Err)
				}
			}
			per := float64(b.N) * float64(n)
			b.ReportMetric(float64(samplerCPU.Nanoseconds())/per, "sampler-cpu-ns/worker")
			b.ReportMetric(float64(baseCPU.Nanoseconds())/per, "baseline-cpu-ns/worker")
			b.ReportMetric(float64(samplerCPU)/float64(max(baseCPU, 1)), "ratio")
		})
	}
}

// BenchmarkSamplerPass is one sampling pass alone (wall time, allocations),
// for benchstat comparisons between versions.
func BenchmarkSamplerPass(b *testing.B) {
	for _, n := range benchSizes {
		b.Run("N="+strconv.Itoa(n), func(b *testing.B) {
			ws := workerstest.IdleSleepers(b, n)
			s, _ := New(&workerstest.StaticSource{WS: ws}, Options{})
			s.sample()
			b.ReportAllocs()
			for b.Loop() {
				s.sample()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/worker")
		})
	}
}

// BenchmarkBaselineRead is the baseline reader alone.
func BenchmarkBaselineRead(b *testing.B) {
	for _, n := range benchSizes {
		b.Run("N="+strconv.Itoa(n), func(b *testing.B) {
			ws := workerstest.IdleSleepers(b, n)
			base := &baselineReader{buf: make([]byte, 4096)}
			b.ReportAllocs()
			for b.Loop() {
				base.pass(ws)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/worker")
		})
	}
}

// BenchmarkGopsutilNaive is gopsutil as commonly used — a fresh Process per
// worker, then Times, MemoryInfo, NumThreads, Status and NumFDs, no tree —
// for context.
func BenchmarkGopsutilNaive(b *testing.B) {
	for _, n := range []int{10, 100} {
		b.Run("N="+strconv.Itoa(n), func(b *testing.B) {
			ws := workerstest.IdleSleepers(b, n)
			b.ReportAllocs()
			for b.Loop() {
				for _, w := range ws {
					p, err := process.NewProcess(int32(w.PID))
					if err != nil {
						b.Fatal(err)
					}
					_, _ = p.Times()
					_, _ = p.MemoryInfo()
					_, _ = p.NumThreads()
					_, _ = p.Status()
					_, _ = p.NumFDs()
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/worker")
		})
	}
}

// shellWorker answers every command with success: a worker of about a
// megabyte, so a benchmark can run a thousand of them.
const shellWorker = `while IFS= read -r line; do id=${line#*\"id\":\"}; id=${id%%\"*}; printf '{"type":"response","id":"%s","success":true}\n' "$id"; done`

// BenchmarkSamplerCgroup measures, in one run and on the same workers,
// a sampling pass of workers that have their own cgroups (Cgroups=required
// with memory and pids limits: tier cgroup2, or cgroup1 on a hybrid host),
// read two ways: the cgroup path (CPU, memory, tasks from the group's
// kept-open files, the rest from /proc) and the walk alone (a sampler that
// is not given the cgroup figures), beside the baseline reader. The
// workers are real: a /bin/sh loop each, spawned by a Manager.
//
// groups=limits gives the groups memory and pids controllers (so
// pids.current says whether the walk missed a task); groups=membership is
// the default with no limit set (controller-less groups: CPU from
// cpu.stat, members from cgroup.procs).
func BenchmarkSamplerCgroup(b *testing.B) {
	for _, bc := range []struct {
		name string
		n    int
		lim  bool
	}{{"groups=limits/N=100", 100, true}, {"groups=membership/N=100", 100, false}, {"groups=limits/N=1000", 1000, true}, {"groups=membership/N=1000", 1000, false}} {
		n := bc.n
		b.Run(bc.name, func(b *testing.B) {
			cfg := workers.Config{Command: []string{"/bin/sh", "-c", shellWorker}, MaxWorkers: n,
				Cgroups: workers.CgroupsRequired, StopGrace: time.Second,
				Logger: slog.New(slog.DiscardHandler)}
			if bc.lim {
				cfg.MemoryMax, cfg.PidsMax = 1<<30, 1024
			}
			m := newCgroupManager(b, cfg)
			ctx := context.Background()
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for g := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := g; i < n; i += 8 {
						if _, err := m.Send(ctx, "k"+strconv.Itoa(i), []byte(`{"type":"get_state"}`)); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
			ws := m.Snapshot()
			viaCgroup, err := New(m, Options{})
			if err != nil {
				b.Fatal(err)
			}
			viaWalk, err := New(walkOnly{m}, Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = viaCgroup.Close(); _ = viaWalk.Close() })
			base := &baselineReader{buf: make([]byte, 4096)}
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			viaCgroup.sample() // warm the caches, as in steady state
			viaWalk.sample()
			var cgCPU, walkCPU, baseCPU time.Duration
			b.ResetTimer()
			for b.Loop() {
				t0 := testutil.ThreadCPU()
				base.pass(ws)
				t1 := testutil.ThreadCPU()
				rc := viaCgroup.sample()
				t2 := testutil.ThreadCPU()
				rw := viaWalk.sample()
				t3 := testutil.ThreadCPU()
				baseCPU, cgCPU, walkCPU = baseCPU+t1-t0, cgCPU+t2-t1, walkCPU+t3-t2
				if len(rc.Workers) != n || rc.Workers[0].Err != nil || !rc.Workers[0].FromCgroup.CPU || len(rw.Workers) != n {
					b.Fatalf("bad pass: %d workers, %+v", len(rc.Workers), rc.Workers[0].TreeStat)
				}
			}
			per := float64(b.N) * float64(n)
			b.ReportMetric(float64(cgCPU.Nanoseconds())/per, "cgroup-cpu-ns/worker")
			b.ReportMetric(float64(walkCPU.Nanoseconds())/per, "walk-cpu-ns/worker")
			b.ReportMetric(float64(baseCPU.Nanoseconds())/per, "baseline-cpu-ns/worker")
			b.ReportMetric(float64(cgCPU)/float64(max(baseCPU, 1)), "cgroup/baseline")
		})
	}
}
