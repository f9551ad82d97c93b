//go:build linux

package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestLimitsThroughTheBinary starts the real binary with
// --worker-memory-max 64MiB under the watchdog (--cgroups off, which works
// on every machine) and checks the whole path: a worker that holds twice
// the limit is stopped, its caller gets 502 worker_exit naming the limit,
// the next command respawns, /api/metrics shows the tier and the limits,
// and the Prometheus exposition counts the limit hit and the exit reason.
// (The cgroup tiers are tested in package workers against the kernel.)
func TestLimitsThroughTheBinary(t *testing.T) {
	a := startAppArgs(t, freePort(t), []string{"OTEL_METRICS_EXPORTER=none"},
		"--worker-memory-max", "64MiB", "--worker-pids-max", "200", "--cgroups", "off")

	code, body := a.do(t, "POST", "/api/sessions/hog/rpc", `{"type":"hold","mib":128,"ms":20000}`)
	if code != http.StatusBadGateway || !strings.Contains(string(body), `"code":"worker_exit"`) ||
		!strings.Contains(string(body), "memory_limit") || !strings.Contains(string(body), "64MiB") {
		t.Fatalf("holding 2× the limit: %d %s", code, body)
	}
	// The next command respawns (after the crash back-off, which may answer 503 first).
	waitFor(t, 20*time.Second, "the session to respawn", func() bool {
		code, _ := a.do(t, "POST", "/api/sessions/hog/rpc", `{"type":"get_state"}`)
		return code == http.StatusOK
	}, a.proc)

	code, body = a.do(t, "GET", "/api/metrics", "")
	var rep struct {
		Limits struct {
			Tier        string            `json:"tier"`
			MemoryMax   int64             `json:"memory_max"`
			PidsMax     int64             `json:"pids_max"`
			Enforcement map[string]string `json:"enforcement"`
		} `json:"limits"`
		Workers []struct {
			Key       string `json:"key"`
			MemoryMax int64  `json:"memory_max"`
			PidsMax   int64  `json:"pids_max"`
		} `json:"workers"`
	}
	if code != 200 || json.Unmarshal(body, &rep) != nil {
		t.Fatalf("/api/metrics: %d %s", code, body)
	}
	if rep.Limits.Tier != "watchdog" || rep.Limits.MemoryMax != 64<<20 || rep.Limits.PidsMax != 200 || rep.Limits.Enforcement["memory"] != "watchdog" {
		t.Fatalf("limits in /api/metrics: %+v", rep.Limits)
	}
	if len(rep.Workers) != 1 || rep.Workers[0].MemoryMax != 64<<20 || rep.Workers[0].PidsMax != 200 {
		t.Fatalf("worker limits in /api/metrics: %+v", rep.Workers)
	}

	b := a.scrape(t, "text/plain;version=0.0.4")
	for _, want := range [][2]string{
		{`workerscope_worker_limit_hits_total{`, `workerscope_limit_name="memory"`},
		{`workerscope_worker_exits_total{`, `workerscope_exit_reason="memory_limit"`},
		{`workerscope_worker_memory_limit_bytes{`, `workerscope_limit_enforcement="watchdog"`},
		{`workerscope_worker_process_limit{`, `workerscope_limit_enforcement="watchdog"`},
	} {
		line := ""
		for _, l := range strings.Split(b, "\n") {
			if strings.HasPrefix(l, want[0]) && strings.Contains(l, want[1]) {
				line = l
			}
		}
		if line == "" || strings.HasSuffix(line, " 0") {
			t.Errorf("Prometheus exposition: %q missing or zero (%q)", want, line)
		}
	}
}
