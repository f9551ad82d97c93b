//go:build linux

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

// The capacity ramp (make capacity; docs/scaling.md, "What one host
// holds"): it measures and reports, it asserts behaviour only (every
// worker spawned and answered, every one gone at the end), never speed.

// capacityEnv reads a WORKERSCOPE_CAPACITY_* setting.
func capacityEnv(name, def string) string {
	if v := os.Getenv("WORKERSCOPE_CAPACITY_" + name); v != "" {
		return v
	}
	return def
}

// capacitySteps are the live-worker counts of the ramp
// (WORKERSCOPE_CAPACITY_STEPS, a comma list).
func capacitySteps(t testing.TB) []int {
	var out []int
	for _, s := range strings.Split(capacityEnv("STEPS", "100,250,500,1000,2000"), ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 || (len(out) > 0 && n <= out[len(out)-1]) {
			t.Fatalf("WORKERSCOPE_CAPACITY_STEPS: %q is not an increasing list of counts", s)
		}
		out = append(out, n)
	}
	return out
}

func requireCapacity(t *testing.T) {
	if os.Getenv("WORKERSCOPE_CAPACITY") != "1" {
		t.Skip("the capacity ramp takes minutes and most of the machine: WORKERSCOPE_CAPACITY=1 (make capacity) runs it")
	}
}

// cpuTicks is a process's user+system CPU time in clock ticks (1/100 s).
func cpuTicks(pid int) int64 {
	f := procStat(pid)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64) // field 14 of the whole line
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return u + k
}

// hostThreads is the number of threads on the host (/proc/loadavg), and
// memAvailable the kernel's estimate of available memory in bytes.
func hostThreads() int {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 4 {
		return 0
	}
	_, total, _ := strings.Cut(f[3], "/")
	n, _ := strconv.Atoi(total)
	return n
}

func memAvailable() int64 {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSuffix(strings.TrimSpace(rest), "kB"), &kb)
			return kb << 10
		}
	}
	return 0
}

func pidMax() int {
	b, _ := os.ReadFile("/proc/sys/kernel/pid_max")
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// timedDo sends one request with the token (safe off the test goroutine)
// and returns status, body and latency.
func timedDo(method, url, body string) (int, []byte, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	began := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, time.Since(began), err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, b, time.Since(began), err
}

// quantile of sorted durations (q in 0..1).
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64)
}

// cpuBreakdown splits the CPU time of a supervisor's CPU profile by what
// it was doing: the pprof label operation=sample or export (internal/
// proflabel), the Manager's reaper goroutine (idle reaping and the
// orphan scan, every --idle-ttl/10 clamped to 100 ms…5 s), or other.
func cpuBreakdown(b []byte) (map[string]time.Duration, error) {
	p, err := profile.Parse(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	idx := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" {
			idx = i
		}
	}
	if idx < 0 {
		return nil, fmt.Errorf("no cpu sample type in %v", p.SampleType)
	}
	out := map[string]time.Duration{}
	for _, s := range p.Sample {
		what := "other"
		if op := s.Label["operation"]; len(op) == 1 && (op[0] == "sample" || op[0] == "export") {
			what = op[0]
		} else if slices.ContainsFunc(s.Location, func(l *profile.Location) bool {
			return slices.ContainsFunc(l.Line, func(ln profile.Line) bool {
				return ln.Function != nil && strings.HasSuffix(ln.Function.Name, "workers.(*Manager).reaper")
			})
		}) {
			what = "reaper"
		}
		out[what] += time.Duration(s.Value[idx])
	}
	return out, nil
}

// capacityRow is one step of the ramp.
type capacityRow struct {
	workers                      int
	spawnP50, spawnP99, spawnMax time.Duration
	spawnRate                    float64 // workers/s over the step
	cpuPerCycle                  time.Duration
	byWhat                       map[string]time.Duration // per export cycle, from the CPU profile
	cpuCore                      float64                  // % of one core over the window
	samplerMean                  time.Duration
	apiP50, apiMax               time.Duration
	apiBytes                     int
	supervisorRSS                int64
	exportErrors                 float64
	hostThreads                  int
	stopAfter                    string
}

// TestCapacityRamp ramps live demo workers under one workerscope that
// exports to the real collector at the default 10 s interval, and at each
// step measures spawn latency (the first command of a new session: spawn,
// ready, answer), the supervisor's CPU per export cycle over a quiet
// window, the mean sampler pass (its own workerscope.sampler.duration
// histogram), and GET /api/metrics latency (each request a fresh pass).
// It stops early when exports fail, spawning gets slow, the supervisor
// saturates a core, or the host runs short of memory or thread ids.
func TestCapacityRamp(t *testing.T) {
	requireCapacity(t)
	steps := capacitySteps(t)
	window, err := time.ParseDuration(capacityEnv("WINDOW", "30s"))
	if err != nil {
		t.Fatalf("WORKERSCOPE_CAPACITY_WINDOW: %v", err)
	}
	const interval = 10 * time.Second // the default OTEL_METRIC_EXPORT_INTERVAL
	conc, _ := strconv.Atoi(capacityEnv("CONCURRENCY", "4"))
	// Long enough that no worker of the ramp is reaped, and like the
	// default (10m) it makes the reaper run every 5 s; 0 would make it run
	// every 100 ms (workers.Config.ReapInterval).
	idleTTL := capacityEnv("IDLE_TTL", "1h")
	bin := workerscopeBinary(t)
	grpcAddr := freePort(t)
	col := startOtelcol(t, []string{
		"OTELCOL_GRPC_ENDPOINT=" + grpcAddr,
		"OTELCOL_HTTP_ENDPOINT=" + freePort(t),
		"OTELCOL_METRICS_LEVEL=none",
		"OTELCOL_LOG_LEVEL=warn",
	}, "otel-collector.yaml")
	a := startAppBin(t, bin, []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + grpcAddr,
		"OTEL_METRIC_EXPORT_INTERVAL=" + strconv.Itoa(int(interval/time.Millisecond)),
		"OTEL_EXPORTER_OTLP_TIMEOUT=10000",
	}, "--idle-ttl", idleTTL, "--max-workers", strconv.Itoa(steps[len(steps)-1]+16))
	pid := a.cmd.Process.Pid
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("workerscope:\n%s\ncollector:\n%s", tail(a.output(), 4000), tail(col.output(), 2000))
		}
	})
	metric := func(name string) float64 { v, _ := promValue(t, a, name); return v }

	var rows []capacityRow
	var prefixes []string
	have := 0
	for _, n := range steps {
		row := capacityRow{workers: n}
		// Spawn up to n, conc at a time.
		keys := make(chan int)
		var mu sync.Mutex
		var lat []time.Duration
		var errs []string
		var wg sync.WaitGroup
		began := time.Now()
		for range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range keys {
					code, _, d, err := timedDo("POST", fmt.Sprintf("%s/api/sessions/cap-%d/rpc", a.url, i), `{"type":"get_state"}`)
					mu.Lock()
					if err != nil || code != 200 {
						errs = append(errs, fmt.Sprintf("session cap-%d: %d %v", i, code, err))
					}
					lat = append(lat, d)
					mu.Unlock()
				}
			}()
		}
		for i := have; i < n; i++ {
			keys <- i
		}
		close(keys)
		wg.Wait()
		spawnTime := time.Since(began)
		if len(errs) > 0 {
			t.Fatalf("%d of %d spawns failed at %d workers; first: %s", len(errs), n-have, n, errs[0])
		}
		slices.Sort(lat)
		row.spawnP50, row.spawnP99, row.spawnMax = quantile(lat, 0.5), quantile(lat, 0.99), lat[len(lat)-1]
		row.spawnRate = float64(n-have) / spawnTime.Seconds()
		have = n
		ws := a.workers(t)
		if len(ws) != n {
			t.Fatalf("%d live workers after spawning %d", len(ws), n)
		}
		if prefixes == nil {
			for _, w := range ws {
				prefixes = append(prefixes, instancePrefix(w.ID))
				break
			}
		}

		// A quiet window: only the exporter (and the sampler pass each
		// collection runs) works.
		time.Sleep(2 * time.Second)
		sum0, cnt0 := metric("workerscope_sampler_duration_seconds_sum"), metric("workerscope_sampler_duration_seconds_count")
		c0, w0 := cpuTicks(pid), time.Now()
		prof := make(chan []byte, 1)
		go func() {
			code, b, _, err := timedDo("GET", fmt.Sprintf("%s/api/debug/pprof/profile?seconds=%d", a.url, int(window.Seconds())), "")
			if err != nil || code != 200 {
				b = fmt.Appendf(nil, "%d %v %s", code, err, b)
			}
			prof <- b
		}()
		time.Sleep(window)
		c1, w1 := cpuTicks(pid), time.Now()
		cycles := w1.Sub(w0).Seconds() / interval.Seconds()
		if by, err := cpuBreakdown(<-prof); err != nil {
			t.Logf("CPU profile at %d workers: %v", n, err)
		} else {
			row.byWhat = map[string]time.Duration{}
			for k, v := range by {
				row.byWhat[k] = time.Duration(float64(v) / cycles)
			}
		}
		sum1, cnt1 := metric("workerscope_sampler_duration_seconds_sum"), metric("workerscope_sampler_duration_seconds_count")
		cpu := time.Duration(c1-c0) * 10 * time.Millisecond
		row.cpuPerCycle = time.Duration(float64(cpu) / cycles)
		row.cpuCore = 100 * cpu.Seconds() / w1.Sub(w0).Seconds()
		if cnt1 > cnt0 {
			row.samplerMean = time.Duration((sum1 - sum0) / (cnt1 - cnt0) * float64(time.Second))
		}
		row.exportErrors = metric("workerscope_export_errors_total")
		if u := metric("workerscope_worker_unobserved"); u != 0 {
			t.Errorf("%v of %d workers left out of the per-worker series (the cap is --max-workers)", u, n)
		}

		// GET /api/metrics, each request after the 1 s cache: a fresh pass.
		var api []time.Duration
		for range 5 {
			time.Sleep(1100 * time.Millisecond)
			code, b, d, err := timedDo("GET", a.url+"/api/metrics", "")
			if err != nil || code != 200 {
				t.Fatalf("/api/metrics at %d workers: %d %v", n, code, err)
			}
			api, row.apiBytes = append(api, d), len(b)
		}
		slices.Sort(api)
		row.apiP50, row.apiMax = quantile(api, 0.5), api[len(api)-1]
		row.supervisorRSS = rssOf(pid)
		row.hostThreads = hostThreads()

		switch {
		case row.exportErrors > 0:
			row.stopAfter = "OTLP exports failed: " + firstLine(a.output(), "OTLP export failed")
		case row.spawnP50 > 2*time.Second || spawnTime > 3*time.Minute:
			row.stopAfter = fmt.Sprintf("spawning got slow (p50 %s, step %s)", row.spawnP50, spawnTime.Round(time.Second))
		case row.cpuCore > 80:
			row.stopAfter = fmt.Sprintf("the supervisor used %.0f%% of a core", row.cpuCore)
		case row.apiP50 > 5*time.Second:
			row.stopAfter = "GET /api/metrics took over 5 s"
		case memAvailable() < 3<<30:
			row.stopAfter = "under 3 GiB of memory left"
		case float64(row.hostThreads)*float64(nextStep(steps, n))/float64(n) > 0.7*float64(pidMax()):
			row.stopAfter = "the next step would use over 70% of pid_max in thread ids"
		}
		rows = append(rows, row)
		t.Logf("%d workers: spawn p50 %s ms p99 %s ms (%.0f/s); supervisor CPU %s ms per export cycle (%.1f%% of a core; by profile: %s); sampler pass %s ms; /api/metrics p50 %s ms max %s ms (%d KiB); RSS %d MiB; host threads %d%s",
			n, ms(row.spawnP50), ms(row.spawnP99), row.spawnRate, ms(row.cpuPerCycle), row.cpuCore, row.breakdown(), ms(row.samplerMean),
			ms(row.apiP50), ms(row.apiMax), row.apiBytes>>10, row.supervisorRSS>>20, row.hostThreads, ifStop(row.stopAfter))
		if row.stopAfter != "" {
			break
		}
	}

	var tbl strings.Builder
	tbl.WriteString("| live workers | spawn latency p50 / p99 / max (ms) | spawns/s | supervisor CPU per 10 s export cycle (ms) | % of one core | of it: sampling / export / reaper / other (ms, CPU profile) | sampler pass, mean (ms) | GET /api/metrics p50 / max (ms) | /api/metrics size (KiB) | supervisor RSS (MiB) | export errors |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&tbl, "| %d | %s / %s / %s | %.0f | %s | %.1f | %s | %s | %s / %s | %d | %d | %.0f |\n",
			r.workers, ms(r.spawnP50), ms(r.spawnP99), ms(r.spawnMax), r.spawnRate, ms(r.cpuPerCycle), r.cpuCore, r.breakdown(),
			ms(r.samplerMean), ms(r.apiP50), ms(r.apiMax), r.apiBytes>>10, r.supervisorRSS>>20, r.exportErrors)
	}
	t.Logf("capacity ramp (window %s, %d concurrent spawns, --idle-ttl %s):\n%s", window, conc, idleTTL, tbl.String())
	if out := os.Getenv("WORKERSCOPE_CAPACITY_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(tbl.String()), 0o644); err != nil {
			t.Error(err)
		}
	}

	// Behaviour: every worker of the ramp ends with the supervisor.
	a.stop(t, 2*time.Minute)
	waitFor(t, 30*time.Second, "every worker of the ramp to be gone", func() bool {
		return len(workerMarkers(prefixes...)) == 0
	})
}

func nextStep(steps []int, n int) int {
	if i := slices.Index(steps, n); i >= 0 && i+1 < len(steps) {
		return steps[i+1]
	}
	return n
}

func ifStop(s string) string {
	if s == "" {
		return ""
	}
	return "; stopping: " + s
}

// breakdown is "sampling / export / reaper / other" CPU per export cycle
// in ms, or "-" without a profile.
func (r capacityRow) breakdown() string {
	if r.byWhat == nil {
		return "-"
	}
	return fmt.Sprintf("%s / %s / %s / %s", ms(r.byWhat["sample"]), ms(r.byWhat["export"]), ms(r.byWhat["reaper"]), ms(r.byWhat["other"]))
}

// firstLine is the first line of out that contains substr, or "".
func firstLine(out, substr string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, substr) {
			return l
		}
	}
	return ""
}
