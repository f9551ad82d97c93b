package report

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
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
	t.Parallel()
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
	t.Parallel()
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
	t.Parallel()
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
	t.Parallel()
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

func get(t *testing.T, h http.Handler, target string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest("GET", target, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func fieldsHandler(t *testing.T) http.Handler {
	t.Helper()
	clock := &fakeClock{t: time.Unix(1000, 0)}
	src := &workerstest.StaticSource{WS: []workers.WorkerSnapshot{
		{ID: "w-1", Key: "s1", PID: 11, State: workers.StateIdle, StartedAt: time.Unix(990, 0),
			LastCommands: []workers.CommandSummary{{Type: "get_state", Duration: time.Millisecond}}},
		{ID: "w-2", Key: "s2", PID: 12, State: workers.StateRunning, StartedAt: time.Unix(990, 0), MemoryMax: 1 << 30},
	}}
	trees := &fakeTrees{stats: map[string]sampler.TreeStat{
		"w-1": {CPUUser: 1, RSSBytes: 1 << 20, Threads: 3, Processes: 1},
		"w-2": {CPUUser: 2, RSSBytes: 2 << 20, Threads: 4, Processes: 1},
	}}
	s, _ := sampler.New(src, sampler.Options{Process: trees, Now: clock.now, NumCPU: 2})
	return JSON(JSONOptions{Sampler: s, StderrTail: func(id string) (string, bool) {
		if id == "w-2" {
			return "<img src=x onerror=alert(1)>\n", true
		}
		return "", false
	}})
}

// TestReportFields: ?fields= keeps the listed worker fields (and id) in
// entry order, the rest of the document whole; an unknown name is 400.
func TestReportFields(t *testing.T) {
	t.Parallel()
	h := fieldsHandler(t)
	rec := get(t, h, "/api/metrics?fields=key,cpu_percent,state,memory_max")
	if rec.Code != 200 {
		t.Fatalf("status %d %s", rec.Code, rec.Body)
	}
	var out struct {
		Workers []map[string]any
		Totals  map[string]any
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Workers) != 2 || out.Totals["workers"] != 2.0 || out.Totals["rss_bytes"] != float64(3<<20) {
		t.Fatalf("workers %v totals %v", out.Workers, out.Totals)
	}
	for _, w := range out.Workers {
		if len(w) != 5 || w["id"] == nil || w["key"] == nil || w["state"] == nil || w["memory_max"] == nil {
			t.Errorf("worker entry %v, want id, key, state, cpu_percent, memory_max", w)
		}
	}
	if !strings.HasPrefix(rec.Body.String()[strings.Index(rec.Body.String(), `"workers":`):], `"workers":[{"id":"w-1","key":"s1","state":"idle","cpu_percent":`) {
		t.Errorf("fields not in entry order: %s", rec.Body)
	}
	// Every field named: the same as no selection.
	all := get(t, h, "/api/metrics?fields="+strings.Join(WorkerFields(), ",")).Body.String()
	full := get(t, h, "/api/metrics").Body.String()
	strip := func(s string) string { // process health changes between calls
		return s[strings.Index(s, `"workers":`):]
	}
	if strip(all) != strip(full) {
		t.Errorf("all fields:\n%s\nno selection:\n%s", all, full)
	}
	if rec := get(t, h, "/api/metrics?fields=key,bogus"); rec.Code != 400 || !strings.Contains(rec.Body.String(), `"code":"bad_fields"`) {
		t.Errorf("unknown field: %d %s", rec.Code, rec.Body)
	}
	if strings.Contains(full, "stderr_tail") {
		t.Errorf("stderr_tail outside the one-worker view: %s", full)
	}
}

// TestReportOneWorker: ?worker=ID lists that worker alone, whole, with its
// stderr tail as a JSON string; an unknown ID is 404.
func TestReportOneWorker(t *testing.T) {
	t.Parallel()
	h := fieldsHandler(t)
	rec := get(t, h, "/api/metrics?worker=w-2")
	var out struct {
		Workers []map[string]any
		Totals  map[string]any
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); rec.Code != 200 || err != nil {
		t.Fatalf("%d %v %s", rec.Code, err, rec.Body)
	}
	if len(out.Workers) != 1 || out.Workers[0]["id"] != "w-2" || out.Totals["workers"] != 2.0 {
		t.Fatalf("workers %v totals %v", out.Workers, out.Totals)
	}
	w := out.Workers[0]
	if w["stderr_tail"] != "<img src=x onerror=alert(1)>\n" || w["memory_max"] != float64(1<<30) || w["last_commands"] == nil {
		t.Errorf("worker %v", w)
	}
	if strings.Contains(rec.Body.String(), "<img") {
		t.Errorf("markup not escaped in JSON: %s", rec.Body)
	}
	one := get(t, h, "/api/metrics?worker=w-2&fields=state")
	if !strings.Contains(one.Body.String(), `"workers":[{"id":"w-2","state":"running","stderr_tail":`) {
		t.Errorf("one worker with fields: %s", one.Body)
	}
	if rec := get(t, h, "/api/metrics?worker=nope"); rec.Code != 404 || !strings.Contains(rec.Body.String(), `"code":"not_found"`) {
		t.Errorf("unknown worker: %d %s", rec.Code, rec.Body)
	}
}

// TestReportGzip: compressed when Accept-Encoding admits gzip, with Vary
// either way, and the same document inside.
func TestReportGzip(t *testing.T) {
	t.Parallel()
	h := fieldsHandler(t)
	for _, tc := range []struct {
		accept string
		gz     bool
	}{
		{"", false}, {"gzip, deflate, br, zstd", true}, {"br;q=1.0, gzip;q=0.8", true}, {"gzip;q=0", false},
		{"*", true}, {"*;q=0.5, gzip;q=0", false}, {"identity", false}, {"GZIP", true},
	} {
		rec := get(t, h, "/api/metrics?fields=key", "Accept-Encoding", tc.accept)
		if rec.Header().Get("Vary") != "Accept-Encoding" {
			t.Errorf("%q: Vary %q", tc.accept, rec.Header().Get("Vary"))
		}
		body := rec.Body.Bytes()
		if got := rec.Header().Get("Content-Encoding") == "gzip"; got != tc.gz {
			t.Errorf("Accept-Encoding %q: gzip %v, want %v", tc.accept, got, tc.gz)
			continue
		}
		if rec.Header().Get("Content-Length") != strconv.Itoa(len(body)) {
			t.Errorf("%q: Content-Length %s for %d bytes", tc.accept, rec.Header().Get("Content-Length"), len(body))
		}
		if tc.gz {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if body, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		if !json.Valid(body) || !strings.Contains(string(body), `"key":"s2"`) {
			t.Errorf("%q: body %s", tc.accept, body)
		}
	}
	if rec := get(t, h, "/api/metrics?worker=w-1", "Accept-Encoding", "gzip"); rec.Header().Get("Content-Encoding") != "gzip" {
		t.Errorf("one-worker view not compressed")
	}
}
