package telemetry

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
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
	env := envMap("PYROSCOPE_SERVER_ADDRESS", ingest.URL, "PYROSCOPE_UPLOAD_INTERVAL", "1s")
	const rounds, phase = 5, 2 * time.Second
	var mu sync.Mutex
	var sink [32]byte
	run := func() (ops int, cpu time.Duration) {
		c0 := rusageSelf()
		for deadline := time.Now().Add(phase); time.Now().Before(deadline); {
			for i := 0; i < 50; i++ {
				supervisorLikeWork(&mu, &sink)
			}
			ops += 50
		}
		return ops, rusageSelf() - c0
	}
	var offOps, onOps int
	var offCPU, onCPU time.Duration
	for b.Loop() {
		for r := 0; r < rounds; r++ {
			ops, cpu := run()
			offOps, offCPU = offOps+ops, offCPU+cpu
			p, err := StartProfiling(ProfilingOptions{Getenv: env, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			ops, cpu = run()
			onOps, onCPU = onOps+ops, onCPU+cpu
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = p.Stop(ctx)
			cancel()
		}
	}
	perOff := float64(offCPU) / float64(offOps)
	perOn := float64(onCPU) / float64(onOps)
	b.ReportMetric((perOn/perOff-1)*100, "cpu-overhead-%")
	b.ReportMetric((float64(offOps)/float64(onOps)-1)*100, "throughput-loss-%")
}
