//go:build linux

package telemetry

import (
	"fmt"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v4/process"

	"github.com/workerscope/workerscope/internal/procfs"
	"github.com/workerscope/workerscope/workers"
)

// idleWorkers starts n idle processes (sleep) that stand in for workers,
// each carrying its marker, and returns their snapshots.
func idleWorkers(b *testing.B, n int) []workers.WorkerSnapshot {
	b.Helper()
	r := procfs.NewReader("")
	ws := make([]workers.WorkerSnapshot, 0, n)
	cmds := make([]*exec.Cmd, 0, n)
	b.Cleanup(func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	})
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("bench-%d", i)
		c := exec.Command("sleep", "3600")
		c.Env = []string{workers.MarkerEnv + "=" + id}
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			b.Fatal(err)
		}
		cmds = append(cmds, c)
		st, err := r.ReadStat(c.Process.Pid)
		if err != nil {
			b.Fatal(err)
		}
		ws = append(ws, workers.WorkerSnapshot{ID: id, Key: "k" + strconv.Itoa(i), PID: c.Process.Pid,
			StartTicks: st.StartTime, StartedAt: time.Now(), State: workers.StateIdle})
	}
	return ws
}

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

// threadCPU is this thread's user+system CPU time.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var benchSizes = []int{10, 100, 1000}

// BenchmarkSamplerVsBaseline measures, in one run and on the same
// processes, the CPU of a whole sampling pass (scan, tree attribution, fd
// counts, CPU accounting, rates) per worker beside the baseline reader,
// and reports their ratio. The budget is a ratio ≤ 2 at N = 1000.
func BenchmarkSamplerVsBaseline(b *testing.B) {
	for _, n := range benchSizes {
		b.Run("N="+strconv.Itoa(n), func(b *testing.B) {
			ws := idleWorkers(b, n)
			src := &fakeSource{ws: ws}
			s, err := NewSampler(src, SamplerOptions{})
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
				t0 := threadCPU()
				base.pass(ws)
				t1 := threadCPU()
				r := s.sample()
				t2 := threadCPU()
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
			ws := idleWorkers(b, n)
			s, _ := NewSampler(&fakeSource{ws: ws}, SamplerOptions{})
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
			ws := idleWorkers(b, n)
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
			ws := idleWorkers(b, n)
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
