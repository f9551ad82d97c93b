//go:build linux

package workers

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// BenchmarkWatchdogPass measures one watchdog pass (a /proc scan that
// skips known-foreign processes, attribution, and the limit checks) over
// 8 idle demo workers.
func BenchmarkWatchdogPass(b *testing.B) {
	m, err := New(Config{
		Command: []string{os.Args[0]}, Env: []string{"WORKERSCOPE_DEMO_ROLE=worker"},
		PidsMax: 1 << 20, MemoryMax: 1 << 40, Cgroups: CgroupsOff, RuntimeDir: "-",
		WatchdogInterval: time.Hour, StopGrace: time.Second,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = m.Close(ctx)
	})
	const n = 8
	for i := range n {
		if _, err := m.Send(context.Background(), fmt.Sprintf("k%d", i), []byte(`{"type":"get_state"}`)); err != nil {
			b.Fatal(err)
		}
	}
	var ws []*worker
	var usage []treeUsage
	ws, usage = m.limitPass(ws[:0], usage[:0]) // warm: learn the foreign processes
	b.ResetTimer()
	for b.Loop() {
		ws, usage = m.limitPass(ws[:0], usage[:0])
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/n, "µs/worker")
	if len(usage) != n || !usage[0].ok || usage[0].tasks == 0 {
		b.Fatalf("usage %+v", usage)
	}
}
