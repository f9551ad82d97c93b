//go:build linux

package workers_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// idleWorkers is how many idle workers BenchmarkIdleWorkerMemory spawns
// (WORKERSCOPE_IDLE_WORKERS, default 200).
func idleWorkers(tb testing.TB) int {
	n := 200
	if v := os.Getenv("WORKERSCOPE_IDLE_WORKERS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			tb.Fatalf("WORKERSCOPE_IDLE_WORKERS=%q: want a count", v)
		}
	}
	return n
}

// osThreads is the process's thread count (/proc/self/status).
func osThreads(tb testing.TB) int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// memPoint is what the Go runtime holds at one moment, after a GC.
type memPoint struct {
	heap, stack         uint64
	goroutines, threads int
}

func readMem(tb testing.TB) memPoint {
	runtime.GC()
	runtime.GC() // pooled buffers survive one GC (sync.Pool's victim cache)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memPoint{heap: ms.HeapAlloc, stack: ms.StackInuse, goroutines: runtime.NumGoroutine(), threads: osThreads(tb)}
}

// BenchmarkIdleWorkerMemory measures what an idle demo worker costs the
// supervisor's Go runtime (issue 22): live heap, goroutine stacks,
// goroutines and OS threads per worker, after spawning
// WORKERSCOPE_IDLE_WORKERS workers (one command each) and letting them
// go idle. The Manager alone, without telemetry: the whole binary's RSS
// per worker is e2e's TestIdleWorkersRSS. It reports, never asserts.
//
//	go test -run '^$' -bench IdleWorkerMemory -benchtime 1x ./workers
func BenchmarkIdleWorkerMemory(b *testing.B) {
	n := idleWorkers(b)
	cfg := demoConfig(b)
	cfg.MaxWorkers = n + 16
	cfg.IdleTTL = time.Hour
	m := newManager(b, cfg)
	ctx := context.Background()
	var per memPoint
	for b.Loop() {
		b.StopTimer()
		before := readMem(b)
		b.StartTimer()
		keys := make(chan string)
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				for key := range keys {
					if _, err := m.Send(ctx, key, []byte(`{"type":"get_state"}`)); err != nil {
						b.Error(err)
					}
				}
			})
		}
		for i := range n {
			keys <- fmt.Sprintf("idle-%d", i)
		}
		close(keys)
		wg.Wait()
		b.StopTimer()
		time.Sleep(time.Second) // idle: every response read, the readers waiting
		after := readMem(b)
		per = memPoint{
			heap:       (after.heap - min(before.heap, after.heap)) / uint64(n),
			stack:      (after.stack - min(before.stack, after.stack)) / uint64(n),
			goroutines: after.goroutines - before.goroutines,
			threads:    after.threads - before.threads,
		}
		for i := range n {
			if err := m.Stop(ctx, fmt.Sprintf("idle-%d", i)); err != nil {
				b.Error(err)
			}
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(per.heap), "heap-B/worker")
	b.ReportMetric(float64(per.stack), "stack-B/worker")
	b.ReportMetric(float64(per.goroutines)/float64(n), "goroutines/worker")
	b.ReportMetric(float64(per.threads)/float64(n), "threads/worker")
}
