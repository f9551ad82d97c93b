//go:build linux

package oteltrace_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/workerscope/workerscope/internal/testutil"
	"github.com/workerscope/workerscope/telemetry/oteltrace"
	"github.com/workerscope/workerscope/workers"
)

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCommandOverhead sends get_state to one demo worker at 1,000
// commands a second and reports the supervisor's CPU per command (the
// worker's is not counted): bare, with the cost reading (two targeted
// reads of the worker's tree), and with cost plus a sampled span exported
// through a batch processor. The differences are the overhead that
// docs/performance.md budgets.
func BenchmarkCommandOverhead(b *testing.B) {
	for _, v := range []struct {
		name        string
		cost, trace bool
	}{{"bare", false, false}, {"cost", true, false}, {"cost+span", true, true}} {
		b.Run(v.name, func(b *testing.B) {
			m := testutil.NewDemoManager(b, func(c *workers.Config) {
				if v.cost {
					c.OnRPC = func(workers.RPCResult) {}
				}
				if v.trace {
					tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
					b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
					c.Tracer = oteltrace.New(oteltrace.Options{TracerProvider: tp})
				}
			})
			ctx := context.Background()
			cmd := []byte(`{"type":"get_state"}`)
			for i := 0; i < 50; i++ { // spawn and warm up
				if _, err := m.Send(ctx, "bench", cmd); err != nil {
					b.Fatal(err)
				}
			}
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			b.ResetTimer()
			cpu0, t0 := selfCPU(), time.Now()
			for i := 0; i < b.N; i++ {
				<-tick.C
				if _, err := m.Send(ctx, "bench", cmd); err != nil {
					b.Fatal(err)
				}
			}
			cpu, wall := selfCPU()-cpu0, time.Since(t0)
			b.StopTimer()
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/cmd")
			b.ReportMetric(float64(b.N)/wall.Seconds(), "cmd/s")
		})
	}
}
