//go:build linux

package e2e

import (
	"bytes"
	"cmp"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/pprof/profile"
)

// The supervisor's memory with many idle workers (issue 22; make idlemem,
// docs/scaling.md): it measures the real binary as users run it and
// reports RSS per worker from /proc. It asserts behaviour (every spawn
// answered, every worker idle, none left after the stop), that idle
// workers hold no OS thread and two goroutines each, and, with telemetry
// off, a memory bound with wide headroom; never speed.

func requireIdleMem(t *testing.T) {
	if os.Getenv("WORKERSCOPE_IDLEMEM") != "1" {
		t.Skip("1,000 idle workers take minutes and gigabytes: WORKERSCOPE_IDLEMEM=1 (make idlemem) runs it")
	}
}

// idleMemEnv reads a WORKERSCOPE_IDLEMEM_* setting.
func idleMemEnv(name, def string) string {
	if v := os.Getenv("WORKERSCOPE_IDLEMEM_" + name); v != "" {
		return v
	}
	return def
}

// procStatus reads fields of /proc/PID/status, in kB for the Rss/Vm ones.
func procStatus(t testing.TB, pid int, fields ...string) map[string]int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok || !slices.Contains(fields, name) {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			t.Fatalf("/proc/%d/status %s: %q", pid, name, v)
		}
		out[name] = n
	}
	return out
}

// heapTop is the n functions holding the most live heap in a heap
// profile (inuse_space, flat), as "size function" lines.
func heapTop(b []byte, n int) (string, error) {
	p, err := profile.Parse(bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	idx := -1
	for i, st := range p.SampleType {
		if st.Type == "inuse_space" {
			idx = i
		}
	}
	if idx < 0 {
		return "", fmt.Errorf("no inuse_space in %v", p.SampleType)
	}
	flat := map[string]int64{}
	var total int64
	for _, s := range p.Sample {
		total += s.Value[idx]
		if len(s.Location) > 0 && len(s.Location[0].Line) > 0 {
			flat[s.Location[0].Line[0].Function.Name] += s.Value[idx]
		}
	}
	names := make([]string, 0, len(flat))
	for f := range flat {
		names = append(names, f)
	}
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(flat[b], flat[a]) })
	var sb strings.Builder
	fmt.Fprintf(&sb, "live heap (sampled) %.1f MiB; top:\n", float64(total)/(1<<20))
	for _, f := range names[:min(n, len(names))] {
		fmt.Fprintf(&sb, "  %7.1f MiB  %s\n", float64(flat[f])/(1<<20), f)
	}
	return sb.String(), nil
}

// TestIdleWorkersRSS starts the real binary, spawns
// WORKERSCOPE_IDLEMEM_WORKERS (1000) sessions of the built-in demo worker
// with one command each, lets them go idle, and samples the supervisor's
// RSS from /proc/PID/status once a second over WORKERSCOPE_IDLEMEM_WINDOW
// (30 s: three OTLP exports at the default interval). Two runs: with
// telemetry as users run it (OTLP to the real collector, bin/otelcol;
// skipped without it) and with the SDK off (OTEL_SDK_DISABLED=true).
func TestIdleWorkersRSS(t *testing.T) {
	requireIdleMem(t)
	n, err := strconv.Atoi(idleMemEnv("WORKERS", "1000"))
	if err != nil || n <= 0 {
		t.Fatalf("WORKERSCOPE_IDLEMEM_WORKERS: want a count (%v)", err)
	}
	window, err := time.ParseDuration(idleMemEnv("WINDOW", "30s"))
	if err != nil {
		t.Fatalf("WORKERSCOPE_IDLEMEM_WINDOW: %v", err)
	}
	tests := []struct {
		name      string
		telemetry bool
		// maxPerWorker bounds RSS per idle worker (growth over the
		// supervisor with none, divided by n) with wide headroom; 0:
		// reported only. With telemetry (measured 46 KiB) it moves with
		// every export's garbage and GC timing, too much for a bound with
		// wide headroom that would still catch a regression.
		maxPerWorker int64
	}{
		{name: "telemetry", telemetry: true},
		// Measured 21 KiB (61 KiB before issue 22: a thread, a 64 KiB
		// read buffer and a third goroutine per worker).
		{name: "no telemetry", maxPerWorker: 64 << 10},
	}
	var report []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := []string{
				"OTEL_METRIC_EXPORT_INTERVAL=10000", // the default, not the harness's 500 ms
				"OTEL_EXPORTER_OTLP_TIMEOUT=10000",
			}
			otlp := freePort(t) // nothing listens there without telemetry
			if tt.telemetry {
				startOtelcol(t, []string{
					"OTELCOL_GRPC_ENDPOINT=" + otlp,
					"OTELCOL_HTTP_ENDPOINT=" + freePort(t),
					"OTELCOL_METRICS_LEVEL=none",
					"OTELCOL_LOG_LEVEL=warn",
				}, "otel-collector.yaml")
			} else {
				env = append(env, "OTEL_SDK_DISABLED=true")
			}
			a := startAppArgs(t, otlp, env, "--idle-ttl", "1h", "--max-workers", strconv.Itoa(n+16))
			pid := a.cmd.Process.Pid
			time.Sleep(2 * time.Second)
			before := procStatus(t, pid, "VmRSS", "RssAnon")

			keys := make(chan int)
			var mu sync.Mutex
			var errs []string
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					for i := range keys {
						code, b, _, err := timedDo("POST", fmt.Sprintf("%s/api/sessions/idle-%d/rpc", a.url, i), `{"type":"get_state"}`)
						if err != nil || code != 200 {
							mu.Lock()
							errs = append(errs, fmt.Sprintf("session idle-%d: %d %v %s", i, code, err, b))
							mu.Unlock()
						}
					}
				})
			}
			for i := range n {
				keys <- i
			}
			close(keys)
			wg.Wait()
			if len(errs) > 0 {
				t.Fatalf("%d of %d spawns failed; first: %s", len(errs), n, errs[0])
			}
			var prefix string
			waitFor(t, 2*time.Minute, "every worker to be idle", func() bool {
				ws := a.workers(t)
				idle := 0
				for _, w := range ws {
					prefix = instancePrefix(w.ID)
					if w.State == "idle" {
						idle++
					}
				}
				return idle == n
			}, a.proc)

			var maxRSS, maxAnon int64
			var last map[string]int64
			for end := time.Now().Add(window); time.Now().Before(end); time.Sleep(time.Second) {
				last = procStatus(t, pid, "VmRSS", "RssAnon", "Threads")
				maxRSS, maxAnon = max(maxRSS, last["VmRSS"]), max(maxAnon, last["RssAnon"])
			}
			_, g, _, err := timedDo("GET", a.url+"/api/debug/pprof/goroutine?debug=1", "")
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(g), "\n")
			goroutines, err := strconv.Atoi(strings.TrimPrefix(first, "goroutine profile: total "))
			if err != nil {
				t.Fatalf("goroutine profile: %q", first)
			}
			if _, h, _, err := timedDo("GET", a.url+"/api/debug/pprof/heap", ""); err != nil {
				t.Error(err)
			} else if top, err := heapTop(h, 8); err != nil {
				t.Error(err)
			} else {
				t.Logf("%s", top)
			}

			fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
			if err != nil {
				t.Fatal(err)
			}
			perWorker := (maxRSS - before["VmRSS"]) << 10 / int64(n)
			line := fmt.Sprintf("%s, %d idle workers: supervisor RSS %.1f MiB (max over %s; %.1f MiB with none), RssAnon %.1f MiB; %.1f KiB per worker; %d goroutines (%.2f per worker), %d threads, %d open files",
				tt.name, n, float64(maxRSS)/1024, window, float64(before["VmRSS"])/1024, float64(maxAnon)/1024,
				float64(perWorker)/1024, goroutines, float64(goroutines)/float64(n), last["Threads"], len(fds))
			t.Log(line)
			report = append(report, line)

			// An idle worker holds no thread (its exit is watched by one
			// epoll set) and two goroutines (its stdout and stderr readers).
			if last["Threads"] > 64 {
				t.Errorf("%d threads with %d idle workers: a thread per worker again?", last["Threads"], n)
			}
			if goroutines > 2*n+200 {
				t.Errorf("%d goroutines with %d idle workers, want at most 2 per worker (+200)", goroutines, n)
			}
			if tt.maxPerWorker > 0 && perWorker > tt.maxPerWorker {
				t.Errorf("%.1f KiB of supervisor RSS per idle worker, want at most %d KiB", float64(perWorker)/1024, tt.maxPerWorker>>10)
			}

			a.stop(t, 2*time.Minute)
			waitFor(t, 30*time.Second, "every worker to be gone", func() bool {
				return len(workerMarkers(prefix)) == 0
			})
		})
	}
	t.Logf("supervisor memory with idle workers:\n%s", strings.Join(report, "\n"))
}
