package report

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/workerscope/workerscope/telemetry/otelmetrics"
	"github.com/workerscope/workerscope/telemetry/sampler"
	"github.com/workerscope/workerscope/workers"
	"github.com/workerscope/workerscope/workers/workerstest"
)

func getJSON(t *testing.T, h http.Handler) map[string]any {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/metrics", nil))
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("status %d type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestReportJSONShapeAndDegradation(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	src := &workerstest.StaticSource{WS: []workers.WorkerSnapshot{
		{ID: "w-1", Key: "ok", PID: 11, State: workers.StateIdle, StartedAt: time.Unix(990, 0), Idle: 3 * time.Second, Requests: 4},
		{ID: "w-2", Key: "broken", PID: 12, State: workers.StateIdle, StartedAt: time.Unix(990, 0), Zombie: true},
	}}
	trees := &fakeTrees{stats: map[string]sampler.TreeStat{
		"w-1": {CPUUser: 1, CPUSystem: 1, RSSBytes: 1 << 20, VMSBytes: 2 << 20, Threads: 3, FDs: 4, Processes: 2, Defunct: 1},
		"w-2": {Err: errors.New("read /proc/12/stat: permission denied")},
	}}
	s, _ := sampler.New(src, sampler.Options{Process: trees, Now: clock.now, NumCPU: 2})
	gauges := &otelmetrics.Gauges{}
	_ = gauges.Register("watched_files", "{file}", "Files watched.", func() int64 { return 17 })
	h := JSON(JSONOptions{Sampler: s, Gauges: gauges, SSEClients: func() int64 { return 2 }, Version: "v9"})
	out := getJSON(t, h)

	for _, k := range []string{"sampled_at", "window_seconds", "process", "workers", "totals", "sampler_errors"} {
		if _, ok := out[k]; !ok {
			t.Errorf("missing %q", k)
		}
	}
	proc := out["process"].(map[string]any)
	for _, k := range []string{"goroutines", "heap_alloc_bytes", "heap_inuse_bytes", "heap_sys_bytes", "gc_count", "gc_pause_last_seconds", "open_fds", "sse_clients", "uptime_seconds", "version", "go_version"} {
		if _, ok := proc[k]; !ok {
			t.Errorf("process.%s missing", k)
		}
	}
	if proc["watched_files"] != 17.0 || proc["sse_clients"] != 2.0 || proc["version"] != "v9" {
		t.Errorf("process %v", proc)
	}
	ws := out["workers"].([]any)
	ok, broken := ws[0].(map[string]any), ws[1].(map[string]any)
	for _, k := range []string{"id", "key", "pid", "state", "cpu_percent", "rss_bytes", "vms_bytes", "threads", "fds", "processes", "defunct", "uptime_seconds", "idle_seconds", "zombie", "requests", "restarts", "error"} {
		if _, present := ok[k]; !present {
			t.Errorf("worker.%s missing", k)
		}
	}
	// 2 CPU seconds over its 10 s life = 20 % of one core.
	if ok["cpu_percent"] != 20.0 || ok["rss_bytes"] != float64(1<<20) || ok["error"] != nil || ok["defunct"] != 1.0 {
		t.Errorf("healthy worker %v", ok)
	}
	if broken["rss_bytes"] != nil || broken["cpu_percent"] != nil || !strings.Contains(broken["error"].(string), "permission denied") || broken["zombie"] != true {
		t.Errorf("degraded worker %v", broken)
	}
	tot := out["totals"].(map[string]any)
	if tot["workers"] != 2.0 || tot["zombies"] != 1.0 || tot["rss_bytes"] != float64(1<<20) || out["sampler_errors"] != 1.0 {
		t.Errorf("totals %v errors %v", tot, out["sampler_errors"])
	}
}

// fakeTrees answers each worker's TreeStat from a map; block, if set,
// holds the pass until closed.
type fakeTrees struct {
	stats map[string]sampler.TreeStat
	block chan struct{}
}

func (f *fakeTrees) SampleSelf(out *sampler.TreeStat) { *out = sampler.TreeStat{Processes: 1} }

func (f *fakeTrees) SampleTrees(ws []workers.WorkerSnapshot, out []sampler.TreeStat) error {
	if f.block != nil {
		<-f.block
	}
	for i, w := range ws {
		out[i] = f.stats[w.ID]
	}
	return nil
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

type failingTrees struct{}

func (failingTrees) SampleSelf(out *sampler.TreeStat) {
	*out = sampler.TreeStat{Err: errors.New("no /proc")}
}

func (failingTrees) SampleTrees([]workers.WorkerSnapshot, []sampler.TreeStat) error {
	return errors.New("open /proc: too many open files")
}

func TestReportWholePassFailure(t *testing.T) {
	src := &workerstest.StaticSource{WS: []workers.WorkerSnapshot{{ID: "w-1", Key: "k", PID: 1}}}
	s, _ := sampler.New(src, sampler.Options{Process: failingTrees{}})
	out := getJSON(t, JSON(JSONOptions{Sampler: s}))
	if e, _ := out["error"].(string); !strings.Contains(e, "too many open files") {
		t.Fatalf("error %v", out["error"])
	}
	w := out["workers"].([]any)[0].(map[string]any)
	if w["key"] != "k" || w["rss_bytes"] != nil || w["error"] == nil {
		t.Fatalf("worker %v", w)
	}
}

func TestReportDoesNotWaitForever(t *testing.T) {
	src := &workerstest.StaticSource{WS: []workers.WorkerSnapshot{{ID: "w-1"}}}
	trees := &fakeTrees{stats: map[string]sampler.TreeStat{}, block: make(chan struct{})}
	s, _ := sampler.New(src, sampler.Options{Process: trees})
	defer close(trees.block)
	go s.Report(context.Background()) // a stuck pass
	time.Sleep(20 * time.Millisecond)
	out := getJSON(t, JSON(JSONOptions{Sampler: s, Wait: 50 * time.Millisecond}))
	if out["error"] != "no sample yet" || len(out["workers"].([]any)) != 0 {
		t.Fatalf("got %v", out)
	}
}

func TestWantsPrometheus(t *testing.T) {
	tests := map[string]bool{
		"":    false,
		"*/*": false,
		"text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8": false,
		"text/plain;version=0.0.4": true,
		"application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2": true,
		"text/plain;q=0.5,text/html": false,
		"text/html;q=0.1,text/plain": true,
		"garbage;;;":                 false,
		"application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited": true,
	}
	for accept, want := range tests {
		if got := wantsPrometheus([]string{accept}); got != want {
			t.Errorf("Accept %q: got %v, want %v", accept, got, want)
		}
	}
}
