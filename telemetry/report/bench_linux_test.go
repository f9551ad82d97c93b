//go:build linux

package report

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/workerscope/workerscope/telemetry/sampler"
	"github.com/workerscope/workerscope/workers/workerstest"
)

// BenchmarkAPIMetricsPollers measures GET /api/metrics latency at N = 500
// workers with 20 concurrent pollers, over real HTTP on loopback, and
// reports p50 and p99. The budget is p99 ≤ 20 ms.
func BenchmarkAPIMetricsPollers(b *testing.B) {
	const n, pollers = 500, 20
	ws := workerstest.IdleSleepers(b, n)
	src := &workerstest.StaticSource{WS: ws}
	s, err := sampler.New(src, sampler.Options{})
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(JSON(JSONOptions{Sampler: s}))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: pollers}}
	var mu sync.Mutex
	var lat []time.Duration
	b.ResetTimer()
	b.SetParallelism((pollers + 1) / 2) // GOMAXPROCS=2 here → 20 goroutines
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			t0 := time.Now()
			resp, err := client.Get(srv.URL)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	b.StopTimer()
	slices.Sort(lat)
	if len(lat) > 0 {
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}
