package profiling

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

// supervisorLikeWork is a CPU-bound stand-in for the supervisor's own work:
// JSON encoding of a report, hashing, allocation and a little lock traffic.
func supervisorLikeWork(mu *sync.Mutex, sink *[32]byte) {
	type row struct {
		ID, Key      string
		CPU          float64
		RSS, Threads int64
	}
	rows := make([]row, 64)
	for i := range rows {
		rows[i] = row{ID: "w-abcdef-" + string(rune('a'+i%26)), Key: "session", CPU: float64(i) * 1.5, RSS: int64(i) << 20, Threads: 4}
	}
	b, _ := json.Marshal(rows)
	h := sha256.Sum256(b)
	mu.Lock()
	*sink = h
	mu.Unlock()
}

func rusageSelf() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkProfilingOverhead runs the same CPU-bound workload with
// continuous profiling off and on (every profile type, uploads every second
// to an in-process ingest server that answers 200), in interleaved phases,
// and reports the CPU cost per unit of work with profiling on relative to
// off. The budget is ≤ 3 %.
func BenchmarkProfilingOverhead(b *testing.B) {
	ingest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer ingest.Close()
	env := profEnv("PYROSCOPE_SERVER_ADDRESS", ingest.URL, "PYROSCOPE_UPLOAD_INTERVAL", "1s")
	const rounds, phase = 8, 1500 * time.Millisecond
	var mu sync.Mutex
	var sink [32]byte
	run := func() float64 { // CPU per unit of work
		var ops int
		c0 := rusageSelf()
		for deadline := time.Now().Add(phase); time.Now().Before(deadline); {
			for i := 0; i < 50; i++ {
				supervisorLikeWork(&mu, &sink)
			}
			ops += 50
		}
		return float64(rusageSelf()-c0) / float64(ops)
	}
	on := func() float64 {
		p, err := Start(Options{Getenv: env, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			b.Fatal(err)
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = p.Stop(ctx)
		}()
		return run()
	}
	// A large live ballast pins the GC pace: otherwise the profiler's own
	// live buffers raise the heap goal, the workload's garbage is collected
	// less often, and profiling "on" looks cheaper than "off".
	ballast := make([]byte, 512<<20)
	defer runtime.KeepAlive(ballast)
	var ratios []float64
	for b.Loop() {
		run() // warm up
		for r := 0; r < rounds; r++ {
			// Alternate the order (off,on / on,off) so drift does not
			// favour either side.
			var offCost, onCost float64
			if r%2 == 0 {
				offCost = run()
				onCost = on()
			} else {
				onCost = on()
				offCost = run()
			}
			ratios = append(ratios, onCost/offCost)
		}
	}
	slices.Sort(ratios)
	median := (ratios[len(ratios)/2] + ratios[(len(ratios)-1)/2]) / 2
	b.ReportMetric((median-1)*100, "cpu-overhead-%")
}
