//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const token = "e2e-token-0123456789abcdef"

// repoRoot is the module root (this package is one level down).
func repoRoot(t testing.TB) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd)
}

// collectorBinary finds the collector: $WORKERSCOPE_OTELCOL or bin/otelcol
// (`make collector`). Without it the test skips, unless
// WORKERSCOPE_E2E=required (as in CI), where that is a failure.
func collectorBinary(t testing.TB) string {
	path := os.Getenv("WORKERSCOPE_OTELCOL")
	if path == "" {
		path = filepath.Join(repoRoot(t), "bin", "otelcol")
	}
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("WORKERSCOPE_E2E") == "required" {
			t.Fatalf("collector binary %s: %v (run make collector)", path, err)
		}
		t.Skipf("collector binary %s not built (make collector); skipping end-to-end test", path)
	}
	return path
}

// TestMain runs the package's tests and removes the binary they shared.
func TestMain(m *testing.M) {
	code := m.Run()
	if dir, ok := binDir.Load().(string); ok {
		_ = os.RemoveAll(dir)
	}
	os.Exit(code)
}

// binDir is the directory of the binary built once for all tests.
var binDir atomic.Value

// buildOnce builds cmd/workerscope once per test process, into a
// directory every uid can reach (tests run it as other users too).
var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "workerscope-e2e-bin-")
	if err != nil {
		return "", err
	}
	binDir.Store(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", err
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "workerscope")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/workerscope")
	cmd.Dir = filepath.Dir(wd)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
})

// workerscopeBinary is cmd/workerscope, built once for the whole package
// (executable by every uid; tests must not modify it).
func workerscopeBinary(t testing.TB) string {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is a started binary whose output is kept for failure reports.
type proc struct {
	cmd *exec.Cmd
	mu  sync.Mutex
	out strings.Builder
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func start(t testing.TB, name string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(name, args...)}
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.kill()
		removeLeftoverCgroups(p.output())
	})
	return p
}

func (p *proc) kill() {
	if p.cmd.ProcessState == nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		_ = p.cmd.Wait()
	}
}

// workerIDPattern finds worker IDs (w<instance>-<n>) in a supervisor's output.
var workerIDPattern = regexp.MustCompile(`\b(w[0-9a-f]{8})-[0-9]+\b`)

// removeLeftoverCgroups removes the per-worker cgroups of the supervisor
// instances that output names, at the end of the test that started them:
// every worker has one by default, and a supervisor killed with SIGKILL
// cannot remove them (its next start with the same runtime directory
// would). Groups are named
// workerscope-<worker ID> under the supervisor's own cgroup, within a few
// levels of /sys/fs/cgroup. A group that still holds a process stays (its
// rmdir fails), so nothing of a live worker is touched.
func removeLeftoverCgroups(output string) {
	instances := map[string]bool{}
	for _, m := range workerIDPattern.FindAllStringSubmatch(output, -1) {
		instances[m[1]] = true
	}
	if len(instances) == 0 {
		return
	}
	const root, maxDepth = "/sys/fs/cgroup", 6
	var visit func(dir string, depth int)
	visit = func(dir string, depth int) {
		entries, err := os.ReadDir(dir)
		if err != nil || depth > maxDepth {
			return
		}
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			path := filepath.Join(dir, e.Name())
			if id, ok := strings.CutPrefix(e.Name(), "workerscope-"); ok {
				if instances[instancePrefix(id)] {
					removeCgroupTree(path)
				}
				continue
			}
			visit(path, depth+1)
		}
	}
	visit(root, 0)
}

// removeCgroupTree removes a cgroup and the groups below it, deepest first.
func removeCgroupTree(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeCgroupTree(filepath.Join(dir, e.Name()))
		}
	}
	_ = os.Remove(dir)
}

// stop sends SIGTERM and waits up to d.
func (p *proc) stop(t testing.TB, d time.Duration) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(d):
		t.Errorf("%s did not stop within %s", p.cmd.Path, d)
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

type collector struct {
	*proc
	grpc, file string
}

// startOtelcol runs the collector on the shipped config files of deploy/
// (later ones merged over earlier ones) with env, its health check on a
// free port, and waits until it is healthy.
func startOtelcol(t testing.TB, env []string, configs ...string) *proc {
	t.Helper()
	root := repoRoot(t)
	health := freePort(t)
	var args []string
	for _, c := range configs {
		if !filepath.IsAbs(c) { // a test's own overlay is given by its path
			c = filepath.Join(root, "deploy", c)
		}
		args = append(args, "--config", c)
	}
	p := start(t, collectorBinary(t), append([]string{"OTELCOL_HEALTH_ENDPOINT=" + health}, env...), args...)
	waitHealthy(t, health, p)
	return p
}

// startCollector runs the shipped config plus the test overlay.
func startCollector(t testing.TB, grpcAddr, file string) *collector {
	t.Helper()
	p := startOtelcol(t, []string{
		"OTELCOL_GRPC_ENDPOINT=" + grpcAddr,
		"OTELCOL_HTTP_ENDPOINT=" + freePort(t),
		"OTELCOL_FILE_PATH=" + file,
	}, "otel-collector.yaml", "otel-collector.test.yaml")
	return &collector{proc: p, grpc: grpcAddr, file: file}
}

type app struct {
	*proc
	url string
}

var servingRE = regexp.MustCompile(`serving (http://[0-9.:]+)`)

func startApp(t testing.TB, otlp string, extraEnv ...string) *app {
	t.Helper()
	return startAppArgs(t, otlp, extraEnv)
}

// startAppArgs is startApp with extra command-line arguments; they come
// after the defaults, so a flag given again (e.g. --stop-grace) overrides.
// The drain is off (--drain 0s) but in the tests of the drain itself.
func startAppArgs(t testing.TB, otlp string, extraEnv []string, extraArgs ...string) *app {
	t.Helper()
	env := append([]string{
		"WORKERSCOPE_TOKEN=" + token,
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + otlp,
		"OTEL_METRIC_EXPORT_INTERVAL=500",
		"OTEL_EXPORTER_OTLP_TIMEOUT=2000",
		"OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=e2e,team=infra",
		// Sandboxed workers' directories (--worker-sandbox auto): removed
		// with the test even when the binary is SIGKILLed.
		"WORKERSCOPE_WORKER_DIR_ROOT=" + filepath.Join(t.TempDir(), "workers"),
	}, extraEnv...)
	args := append([]string{"--listen", "127.0.0.1:0", "--demo-load=false", "--stop-grace", "2s", "--drain", "0s"}, extraArgs...)
	p := start(t, workerscopeBinary(t), env, args...)
	return &app{proc: p, url: waitServing(t, p)}
}

func (a *app) do(t testing.TB, method, path, body string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, a.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (a *app) rpc(t testing.TB, key, cmd string) map[string]any {
	t.Helper()
	code, b := a.do(t, "POST", "/api/sessions/"+key+"/rpc", cmd)
	if code != 200 {
		t.Fatalf("rpc %s %s: %d %s", key, cmd, code, b)
	}
	var r map[string]any
	_ = json.Unmarshal(b, &r)
	return r
}

// scrape is GET /metrics with the token and accept as the Accept header
// (text/plain;version=0.0.4 or application/openmetrics-text for the
// Prometheus expositions).
func (a *app) scrape(t testing.TB, accept string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, a.url+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", accept)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

type workerInfo struct {
	ID        string `json:"id"`
	Key       string `json:"key"`
	PID       int    `json:"pid"`
	State     string `json:"state"`
	UID       *int   `json:"uid"`       // with --worker-uids
	Sandboxed bool   `json:"sandboxed"` // under Landlock
}

func (a *app) workers(t testing.TB) map[string]workerInfo {
	t.Helper()
	code, b := a.do(t, "GET", "/api/workers", "")
	if code != 200 {
		t.Fatalf("/api/workers: %d %s", code, b)
	}
	var r struct{ Workers []workerInfo }
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	out := map[string]workerInfo{}
	for _, w := range r.Workers {
		out[w.Key] = w
	}
	return out
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool, procs ...*proc) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			for _, p := range procs {
				t.Logf("output of %s:\n%s", p.cmd.Path, tail(p.output(), 4000))
			}
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// dataPoint is one point read back from the collector's file exporter.
type dataPoint struct {
	Metric   string
	Attrs    map[string]string
	Resource map[string]string
	Time     time.Time
	Value    float64
}

// otlpFile is the subset of OTLP/JSON the file exporter writes that the
// test reads.
type otlpFile struct {
	ResourceMetrics []struct {
		Resource struct {
			Attributes []kv `json:"attributes"`
		} `json:"resource"`
		ScopeMetrics []struct {
			Metrics []struct {
				Name  string `json:"name"`
				Sum   *data  `json:"sum"`
				Gauge *data  `json:"gauge"`
			} `json:"metrics"`
		} `json:"scopeMetrics"`
	} `json:"resourceMetrics"`
}

type data struct {
	DataPoints []struct {
		Attributes   []kv    `json:"attributes"`
		TimeUnixNano string  `json:"timeUnixNano"`
		AsDouble     float64 `json:"asDouble"`
		AsInt        string  `json:"asInt"`
	} `json:"dataPoints"`
}

type kv struct {
	Key   string `json:"key"`
	Value struct {
		StringValue *string `json:"stringValue"`
		IntValue    *string `json:"intValue"`
	} `json:"value"`
}

func attrMap(kvs []kv) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, a := range kvs {
		switch {
		case a.Value.StringValue != nil:
			m[a.Key] = *a.Value.StringValue
		case a.Value.IntValue != nil:
			m[a.Key] = *a.Value.IntValue
		}
	}
	return m
}

// eachJSONLine decodes every complete line of the collector's file
// exporter output so far into a fresh T and hands it to fn (a line being
// written is skipped; a file not yet created has no lines).
func eachJSONLine[T any](t testing.TB, path string, fn func(doc *T)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return
		}
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var doc T
		if json.Unmarshal(sc.Bytes(), &doc) == nil {
			fn(&doc)
		}
	}
}

// readPoints parses every metric data point in the file so far.
func readPoints(t testing.TB, path string) []dataPoint {
	t.Helper()
	var out []dataPoint
	eachJSONLine(t, path, func(doc *otlpFile) {
		for _, rm := range doc.ResourceMetrics {
			res := attrMap(rm.Resource.Attributes)
			for _, sm := range rm.ScopeMetrics {
				for _, m := range sm.Metrics {
					d := m.Sum
					if d == nil {
						d = m.Gauge
					}
					if d == nil {
						continue
					}
					for _, p := range d.DataPoints {
						var ns int64
						fmt.Sscan(p.TimeUnixNano, &ns)
						v := p.AsDouble
						if p.AsInt != "" {
							fmt.Sscan(p.AsInt, &v)
						}
						out = append(out, dataPoint{Metric: m.Name, Attrs: attrMap(p.Attributes), Resource: res, Time: time.Unix(0, ns), Value: v})
					}
				}
			}
		}
	})
	return out
}

// rssOf reads a process's resident set size in bytes.
func rssOf(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(line, "VmRSS:"), "kB")), &kb)
			return kb << 10
		}
	}
	return 0
}

// failedExports are the lines of a collector's log where the exporter
// named id failed to export (and dropped or will retry the data).
func failedExports(log, id string) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `"`+id+`"`) && strings.Contains(line, "Exporting failed") {
			out = append(out, line)
		}
	}
	return out
}

// waitHealthy waits for a collector's health_check extension on addr.
func waitHealthy(t testing.TB, addr string, p *proc) {
	t.Helper()
	waitFor(t, 60*time.Second, "collector health check", func() bool {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, p)
}

// waitServing waits for workerscope to print the URL it serves on.
func waitServing(t testing.TB, p *proc) string {
	t.Helper()
	var url string
	waitFor(t, 30*time.Second, "workerscope to print its URL", func() bool {
		if m := servingRE.FindStringSubmatch(p.output()); m != nil {
			url = m[1]
			return true
		}
		return false
	}, p)
	return url
}

// procStat is pid's /proc/PID/stat after the command name (which ends at
// the last ')'): state, ppid, pgrp, ... (field 3 of the whole line is
// [0]), or nil when it cannot be read.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}
