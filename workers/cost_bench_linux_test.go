//go:build linux

package workers

import (
	"context"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/testutil"
	"github.com/workerscope/workerscope/workers/internal/cost"
)

// BenchmarkCostReading measures one reading of a worker's tree, the work a
// command's cost adds at each of its two ends, in process and without the
// round trip to the worker that BenchmarkCommandOverhead (oteltrace) pays
// on every command and whose noise hides a few microseconds: the walk of
// /proc (no cgroup), and the group's kept-open files for a group without
// limits (the default) and one with a memory limit. The worker is the demo
// worker, a Go process of several threads (as a Node worker has: the walk
// reads each thread's children file), with ten sleeping children (a shell
// tool's processes).
func BenchmarkCostReading(b *testing.B) {
	for _, v := range []struct {
		name string
		cfg  func(*Config)
		want Tier // "" is any tier with a cgroup
	}{
		{"walk", func(c *Config) { c.Cgroups = CgroupsOff }, TierOff},
		{"cgroup=membership", func(*Config) {}, ""},
		{"cgroup=limits", func(c *Config) { c.Cgroups, c.MemoryMax = CgroupsRequired, 1<<30 }, ""},
	} {
		b.Run(v.name, func(b *testing.B) {
			cfg := Config{
				Command: []string{os.Args[0]}, Env: []string{"WORKERSCOPE_DEMO_ROLE=worker"},
				RuntimeDir: "-", StopGrace: time.Second,
				Logger: testutil.QuietLogger(),
			}
			v.cfg(&cfg)
			m, err := New(cfg)
			if err != nil {
				b.Skipf("no Manager for %s here: %v", v.name, err)
			}
			b.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				_ = m.Close(ctx)
			})
			tier := m.Limits().Tier
			if (v.want == "" && (tier == TierOff || tier == TierWatchdog)) || (v.want != "" && tier != v.want) {
				b.Skipf("tier %s here", tier)
			}
			if _, err := m.Send(context.Background(), "k", []byte(`{"type":"fork","count":10,"ms":3600000}`)); err != nil {
				b.Fatal(err)
			}
			m.mu.Lock()
			var w *worker
			for _, x := range m.pool.byID {
				w = x
			}
			m.mu.Unlock()
			var s cost.Sample
			if !m.plat.readTree(w, &s) || s.Cgroup != (v.want == "") || len(s.Members) != 11 {
				b.Fatalf("reading: %+v", s)
			}
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var cpu time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				t0 := testutil.ThreadCPU()
				m.plat.readTree(w, &s)
				cpu += testutil.ThreadCPU() - t0
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)*2/1000, "cpu-µs/cmd")
			b.ReportMetric(float64(len(s.Members)), "processes")
		})
	}
}
