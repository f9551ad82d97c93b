//go:build linux

package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/workerscope/workerscope/telemetry/attrkey"
	"github.com/workerscope/workerscope/telemetry/otelmetrics"
)

// latest returns the newest point of metric for the worker (and cpu.mode,
// if given), or false.
func latest(points []dataPoint, metric, workerID, mode string) (dataPoint, bool) {
	var best dataPoint
	ok := false
	for _, p := range points {
		if p.Metric != metric || p.Attrs["workerscope.worker.id"] != workerID || (mode != "" && p.Attrs["cpu.mode"] != mode) {
			continue
		}
		if !ok || p.Time.After(best.Time) {
			best, ok = p, true
		}
	}
	return best, ok
}

// treeCPU is the newest user+system workerscope.worker.cpu.time of a worker.
func treeCPU(points []dataPoint, workerID string) (float64, time.Time, bool) {
	u, ok1 := latest(points, otelmetrics.MetricWorkerCPUTime, workerID, "user")
	s, ok2 := latest(points, otelmetrics.MetricWorkerCPUTime, workerID, "system")
	return u.Value + s.Value, u.Time, ok1 && ok2
}

// TestCollectorEndToEnd: workerscope → OTLP gRPC → the real collector
// running the shipped config → file; then the collector dies and returns.
func TestCollectorEndToEnd(t *testing.T) {
	dir := t.TempDir()
	grpcAddr := freePort(t)
	col := startCollector(t, grpcAddr, filepath.Join(dir, "otel-1.jsonl"))
	a := startApp(t, grpcAddr)

	a.rpc(t, "cpu", `{"type":"get_state"}`)
	a.rpc(t, "mem", `{"type":"prompt","mem_mib":64,"events":0}`)
	a.rpc(t, "gone", `{"type":"get_state"}`)
	ws := a.workers(t)
	cpuW, memW, goneW := ws["cpu"], ws["mem"], ws["gone"]

	// Baseline CPU of the idle "cpu" worker: the test's own /proc reading,
	// and an exported point sampled after it (a pass's Report is shared
	// for up to a second, so the point must be stamped well after).
	truthBefore, truthBeforeAt := readTreeCPU(t, cpuW.PID), time.Now()
	var before float64
	var beforeAt time.Time
	waitFor(t, 30*time.Second, "an export of the idle cpu worker sampled after the test's reading", func() bool {
		var ok bool
		before, beforeAt, ok = treeCPU(readPoints(t, col.file), cpuW.ID)
		return ok && beforeAt.After(truthBeforeAt.Add(2*time.Second))
	}, col.proc, a.proc)
	a.rpc(t, "cpu", `{"type":"prompt","cpu_ms":1000,"child_cpu_ms":500,"events":2}`)
	var truth procCPU
	var truthAt time.Time
	waitFor(t, 30*time.Second, "prompt and its child to finish", func() bool {
		r := a.rpc(t, "cpu", `{"type":"get_state"}`)
		d, _ := r["data"].(map[string]any)
		truth, truthAt = readTreeCPU(t, cpuW.PID), time.Now()
		return d["streaming"] == false && truth.processes == 1 // the child exited and was reaped
	})
	truth = truth.sub(truthBefore)

	// Stop one worker: its series must end.
	if code, b := a.do(t, "DELETE", "/api/sessions/gone", ""); code != 204 {
		t.Fatalf("DELETE: %d %s", code, b)
	}
	stoppedAt := time.Now()
	var points []dataPoint
	var after float64
	waitFor(t, 30*time.Second, "an export of the idle cpu worker sampled after the test's reading, and several export intervals", func() bool {
		points = readPoints(t, col.file)
		var afterAt time.Time
		after, afterAt, _ = treeCPU(points, cpuW.ID)
		return afterAt.After(truthAt.Add(2*time.Second)) && time.Since(stoppedAt) >= 2*time.Second
	}, col.proc, a.proc)
	t.Logf("workerscope.worker.cpu.time %.3f → %.3f s over %d points; /proc: %s", before, after, len(points), truth.total)
	if delta := after - before; !near(delta, truth) {
		t.Errorf("workerscope.worker.cpu.time rose by %.3f s; want the %s the worker's tree used, read from /proc before and after (the worker's own and a child's that exited)", delta, truth.total)
	}
	// Never falling, per worker and mode.
	type series struct{ id, mode string }
	bySeries := map[series][]dataPoint{}
	for _, p := range points {
		if p.Metric == otelmetrics.MetricWorkerCPUTime {
			k := series{p.Attrs["workerscope.worker.id"], p.Attrs["cpu.mode"]}
			bySeries[k] = append(bySeries[k], p)
		}
	}
	for k, ps := range bySeries {
		sort.Slice(ps, func(i, j int) bool { return ps[i].Time.Before(ps[j].Time) })
		for i := 1; i < len(ps); i++ {
			if ps[i].Value < ps[i-1].Value {
				t.Errorf("workerscope.worker.cpu.time %v fell from %v to %v", k, ps[i-1].Value, ps[i].Value)
			}
		}
	}
	// Memory held.
	if p, ok := latest(points, otelmetrics.MetricWorkerMemoryUsage, memW.ID, ""); !ok || p.Value < 64<<20 {
		t.Errorf("workerscope.worker.memory.usage of the 64 MiB worker: %v", p.Value)
	}
	// Every per-worker metric of the contract, for each live worker, with
	// its attributes.
	for _, w := range []workerInfo{cpuW, memW} {
		for _, def := range otelmetrics.Contract() {
			if !slices.Contains(def.Attributes, attrkey.WorkerID) {
				continue
			}
			if strings.HasPrefix(def.Name, "workerscope.session.") {
				continue // sessions with agent runs only: TestAgentRunThroughTheBinary
			}
			p, ok := latest(points, def.Name, w.ID, "")
			if !ok {
				t.Errorf("%s: no point for worker %s", def.Name, w.Key)
				continue
			}
			if p.Attrs["workerscope.worker.key"] != w.Key || p.Attrs["process.pid"] != strconv.Itoa(w.PID) {
				t.Errorf("%s: attributes %v for worker %+v", def.Name, p.Attrs, w)
			}
		}
	}
	// Pool metrics and the resource.
	for _, name := range []string{otelmetrics.MetricWorkers, otelmetrics.MetricSpawns, otelmetrics.MetricExits, otelmetrics.MetricRPCDuration} {
		if !slices.ContainsFunc(points, func(p dataPoint) bool { return p.Metric == name }) && name != otelmetrics.MetricRPCDuration {
			t.Errorf("no %s", name)
		}
	}
	res := points[len(points)-1].Resource
	for k, want := range map[string]string{"service.name": "workerscope", "deployment.environment.name": "development", "team": "infra"} {
		if res[k] != want {
			t.Errorf("resource %s = %q, want %q (all: %v)", k, res[k], want, res)
		}
	}
	for _, k := range []string{"service.instance.id", "service.version", "host.name"} {
		if res[k] == "" {
			t.Errorf("resource %s missing (all: %v)", k, res)
		}
	}
	// The stopped worker's series ended.
	for _, p := range points {
		if p.Attrs["workerscope.worker.id"] == goneW.ID && p.Time.After(stoppedAt.Add(time.Second)) {
			t.Errorf("%s still exported for the stopped worker at %s", p.Metric, p.Time)
			break
		}
	}

	// The collector dies: the app keeps serving, memory stays bounded, and
	// export resumes when a collector comes back on the same address.
	col.kill()
	rssBefore := rssOf(a.cmd.Process.Pid)
	for i := 0; i < 20; i++ {
		if len(a.workers(t)) != 2 {
			t.Fatal("app lost workers while the collector was down")
		}
		time.Sleep(150 * time.Millisecond)
	}
	if grew := rssOf(a.cmd.Process.Pid) - rssBefore; grew > 32<<20 {
		t.Errorf("app RSS grew by %d MiB while the collector was down", grew>>20)
	}
	if n := strings.Count(a.output(), "OTLP export failed"); n != 1 {
		t.Errorf("export failure logged %d times, want once (then summarized)", n)
	}
	col2 := startCollector(t, grpcAddr, filepath.Join(dir, "otel-2.jsonl"))
	waitFor(t, 30*time.Second, "export to resume", func() bool {
		_, _, ok := treeCPU(readPoints(t, col2.file), cpuW.ID)
		return ok
	}, col2.proc, a.proc)
	if !strings.Contains(a.output(), "OTLP export recovered") {
		t.Error("recovery not logged")
	}

	// Graceful shutdown: workers gone, last export flushed.
	a.stop(t, 10*time.Second)
	for _, w := range []workerInfo{cpuW, memW} {
		if _, err := os.Stat("/proc/" + strconv.Itoa(w.PID)); err == nil {
			t.Errorf("worker %s (pid %d) outlived the app", w.Key, w.PID)
		}
	}
}
