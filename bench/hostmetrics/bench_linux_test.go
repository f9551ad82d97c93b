//go:build linux

package hostmetrics

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/workerscope/workerscope/telemetry/sampler"
	"github.com/workerscope/workerscope/workers/workerstest"
)

// BenchmarkHostmetricsVsWorkerscope measures the collector's hostmetrics
// process scraper and workerscope's export cycle on the same N idle stand-in
// workers in one process, in alternating phases (hostmetrics, workerscope,
// the sampler's pass alone; again each round, one round per iteration:
// -benchtime 5x is five rounds) so that the machine's noise hits every side.
// It reports each side's process CPU (getrusage RUSAGE_SELF: every thread,
// the scraper's and the exporter's timers and gRPC included) per process and
// per scrape or cycle, and their ratio, as medians over the rounds; every
// round's ratio is logged.
func BenchmarkHostmetricsVsWorkerscope(b *testing.B) {
	cfg := benchConfig(b)
	for _, n := range cfg.sizes {
		b.Run("N="+strconv.Itoa(n), func(b *testing.B) { benchPool(b, n, cfg) })
	}
}

// benchPool is one pool size: n stand-ins, then rounds of the three phases
// until b.Loop is done.
func benchPool(b *testing.B, n int, cfg config) {
	ctx := context.Background()
	ws, name, pids := standIns(b, n)
	src := &workerstest.StaticSource{WS: ws}
	// A fresh pass for every cycle (the binary shares passes closer than 1 s
	// between the exporter, the API and the page).
	s, err := sampler.New(src, sampler.Options{MinInterval: time.Nanosecond})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { // the stat files it keeps open, before the workers go
		if err := s.Close(); err != nil {
			b.Error(err)
		}
	})
	if err := checkReport(s.Report(ctx), n); err != nil {
		b.Fatal(err)
	}
	sink := startOTLPSink(b)

	var hm, ws1, pass, ratio, passRatio, procs []float64
	for b.Loop() {
		// Each phase starts on a collected heap, so that one side's
		// garbage is not collected on the other's time.
		runtime.GC()
		h, err := hostmetricsPhase(ctx, b, name, pids, cfg)
		if err != nil {
			b.Fatalf("hostmetrics: %v", err)
		}
		runtime.GC()
		w, err := workerscopePhase(ctx, src, sink, n, cfg)
		if err != nil {
			b.Fatalf("workerscope: %v", err)
		}
		runtime.GC()
		p, err := samplerPhase(ctx, s, n, cfg.cycles)
		if err != nil {
			b.Fatalf("sampler: %v", err)
		}
		perProc := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(n) }
		hm, ws1, pass = append(hm, perProc(h)), append(ws1, perProc(w)), append(pass, perProc(p))
		ratio, passRatio = append(ratio, float64(h)/float64(w)), append(passRatio, float64(h)/float64(p))
		procs = append(procs, float64(countProcesses()))
	}
	// Two lines: go test keeps only the first ten of a benchmark's log.
	b.Logf("N=%d, %d rounds × %d scrapes/cycles, %.0f–%.0f processes on the machine: hostmetrics %s µs/process/scrape, workerscope %s µs/worker/cycle, sampler pass %s µs/worker",
		n, len(hm), cfg.cycles, slices.Min(procs), slices.Max(procs), spread(hm), spread(ws1), spread(pass))
	b.Logf("hostmetrics ÷ workerscope cycle %s× (rounds: %s), ÷ sampler pass %s×", spread(ratio), list(ratio), spread(passRatio))
	b.ReportMetric(median(hm), "hostmetrics-cpu-us/process/scrape")
	b.ReportMetric(median(ws1), "workerscope-cpu-us/worker/cycle")
	b.ReportMetric(median(pass), "sampler-cpu-us/worker/pass")
	b.ReportMetric(median(ratio), "hostmetrics/workerscope")
	b.ReportMetric(median(passRatio), "hostmetrics/sampler-pass")
	if r := sink.requests.Load(); r > 0 {
		b.ReportMetric(float64(sink.bytes.Load())/float64(r)/float64(n), "otlp-proto-bytes/worker")
	}
}

// config is what the environment chooses.
type config struct {
	sizes    []int
	cycles   int
	interval time.Duration
}

// benchConfig reads the WORKERSCOPE_HOSTBENCH_* variables (doc.go).
func benchConfig(tb testing.TB) config {
	c := config{sizes: []int{100, 300, 1000}, cycles: 5, interval: 100 * time.Millisecond}
	if v := os.Getenv("WORKERSCOPE_HOSTBENCH_N"); v != "" {
		c.sizes = nil
		for f := range strings.SplitSeq(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				tb.Fatalf("WORKERSCOPE_HOSTBENCH_N=%q: want pool sizes ≥ 1, comma-separated", v)
			}
			c.sizes = append(c.sizes, n)
		}
	}
	if v := os.Getenv("WORKERSCOPE_HOSTBENCH_CYCLES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			tb.Fatalf("WORKERSCOPE_HOSTBENCH_CYCLES=%q: want a count ≥ 1", v)
		}
		c.cycles = n
	}
	if v := os.Getenv("WORKERSCOPE_HOSTBENCH_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Millisecond {
			tb.Fatalf("WORKERSCOPE_HOSTBENCH_INTERVAL=%q: want a duration ≥ 1ms", v)
		}
		c.interval = d
	}
	return c
}

// arrival is one scrape's or export's end, as its consumer saw it.
type arrival struct {
	cpu time.Duration // processCPU when it arrived
	err error         // what the consumer found wrong with it
}

// window waits for cycles+2 arrivals and returns the process CPU between
// the second and the last: the first scrape or export of a phase carries
// its start-up, so the window holds cycles whole steady ones.
func window(arrivals <-chan arrival, cycles int, timeout time.Duration) (time.Duration, error) {
	deadline := time.After(timeout)
	var first time.Duration
	for i := 0; i < cycles+2; i++ {
		select {
		case a := <-arrivals:
			if a.err != nil {
				return 0, fmt.Errorf("scrape or export %d: %w", i, a.err)
			}
			switch i {
			case 1:
				first = a.cpu
			case cycles + 1:
				return (a.cpu - first) / time.Duration(cycles), nil
			}
		case <-deadline:
			return 0, fmt.Errorf("%d of %d scrapes or exports in %v", i, cycles+2, timeout)
		}
	}
	panic("unreachable")
}

// phaseTimeout bounds one phase: generous, scrapes of 1,000 processes take
// about a second on a loaded machine.
func phaseTimeout(cfg config, n int) time.Duration {
	return time.Duration(cfg.cycles+2)*(cfg.interval+time.Duration(n)*2*time.Millisecond) + time.Minute
}

// processCPU is this process's user and system CPU time, every thread.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// checkReport says whether a sampler pass saw n workers, each a live tree
// of one process.
func checkReport(r *sampler.Report, n int) error {
	if r.Err != nil {
		return fmt.Errorf("sampler pass: %w", r.Err)
	}
	if len(r.Workers) != n {
		return fmt.Errorf("sampler pass: %d workers, want %d", len(r.Workers), n)
	}
	for _, w := range r.Workers {
		if w.Err != nil || w.Processes != 1 {
			return fmt.Errorf("sampler pass: worker %s: %d processes, err %v", w.ID, w.Processes, w.Err)
		}
	}
	return nil
}

// countProcesses is how many processes the machine has (both sides list
// them all on every pass).
func countProcesses() int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			n++
		}
	}
	return n
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// list is the values, one decimal each.
func list(xs []float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.FormatFloat(x, 'f', 1, 64)
	}
	return strings.Join(s, " ")
}

// spread is "median (min–max)".
func spread(xs []float64) string {
	return fmt.Sprintf("%.1f (%.1f–%.1f)", median(xs), slices.Min(xs), slices.Max(xs))
}
