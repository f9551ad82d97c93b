//go:build linux

package workers_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/procfs"
	"github.com/workerscope/workerscope/workers"
)

// BenchmarkSpawn measures the latency from the first command of a new
// session to its response (spawn included), and the memory of an idle
// demo worker: with the default Cgroups (auto: a controller-less group per
// worker where one can be made, created at spawn) and with cgroups off, in
// the same run, so the difference is what the group costs a spawn.
func BenchmarkSpawn(b *testing.B) {
	for _, mode := range []workers.CgroupMode{workers.CgroupsAuto, workers.CgroupsOff} {
		b.Run("cgroups="+string(mode), func(b *testing.B) {
			cfg := demoConfig(b)
			cfg.MaxWorkers = 1 << 20
			cfg.Cgroups = mode
			m := newManager(b, cfg)
			if li := m.Limits(); mode == workers.CgroupsAuto && !li.Cgroups {
				b.Skipf("no worker cgroups here: %s", li.Reason)
			}
			ctx := context.Background()
			i := 0
			var rss int64
			b.ResetTimer()
			for b.Loop() {
				key := fmt.Sprintf("spawn-%d", i)
				i++
				if _, err := m.Send(ctx, key, []byte(`{"type":"get_state"}`)); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				w, _ := snapshotOf(m, key)
				if st, err := procfs.NewReader("").ReadStat(w.PID); err == nil {
					rss += st.RSS * 4096
				}
				if err := m.Stop(ctx, key); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(rss)/float64(i)/(1<<20), "idle-RSS-MiB/worker")
		})
	}
}

// BenchmarkSpawnThroughput spawns workers from 8 goroutines at once and
// reports workers per second (spawn and first response).
func BenchmarkSpawnThroughput(b *testing.B) {
	cfg := demoConfig(b)
	cfg.MaxWorkers = 1 << 20
	cfg.StopGrace = time.Second
	m := newManager(b, cfg)
	ctx := context.Background()
	const batch = 32
	total := 0
	var spawnTime time.Duration
	for b.Loop() {
		start := time.Now()
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for j := 0; j < batch; j++ {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if _, err := m.Send(ctx, fmt.Sprintf("tp-%d-%d", total, j), []byte(`{"type":"get_state"}`)); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
		spawnTime += time.Since(start)
		b.StopTimer()
		for _, w := range m.Snapshot() {
			_ = m.Stop(ctx, w.Key)
		}
		total += batch
		b.StartTimer()
	}
	b.ReportMetric(float64(total)/spawnTime.Seconds(), "workers/s")
}
