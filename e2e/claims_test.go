//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Tests of promises the docs make about the binary (issue 18), each run
// against bin/workerscope as a user starts it.

// nobody is the unprivileged uid and gid the tests run the supervisor as
// where the point is what a non-root service can and cannot do.
const nobody = 65534

// needRoot skips, or fails where the end-to-end tests are required, when
// the test cannot switch uids.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("WORKERSCOPE_E2E") == "required" {
		t.Fatal("this test runs the supervisor as another uid and needs root")
	}
	t.Skip("needs root to run the supervisor as another uid")
}

// publicDir is a fresh directory owned by uid (gid the same) that every
// uid can traverse (the test's temp dirs are 0700).
func publicDir(t *testing.T, uid int) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{d, filepath.Dir(d)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(d, uid, uid); err != nil {
		t.Fatal(err)
	}
	return d
}

// startAs starts bin as uid (and gid uid) with exactly env (nothing of
// the test's environment but PATH) and waits until it serves.
func startAs(t *testing.T, uid int, bin string, env []string, args ...string) *app {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, append([]string{"--listen", "127.0.0.1:0", "--demo-load=false", "--drain", "0s"}, args...)...)}
	p.cmd.Env = append([]string{"PATH=/usr/local/bin:/usr/bin:/bin", "WORKERSCOPE_TOKEN=" + token}, env...)
	p.cmd.Dir = "/"
	p.cmd.Stdout, p.cmd.Stderr = p, p
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if uid != os.Geteuid() {
		p.cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: []uint32{}}
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.kill()
		removeLeftoverCgroups(p.output())
	})
	return &app{proc: p, url: waitServing(t, p)}
}

// TestSupervisorClosedToWorkers (issue 19, tier 1): a worker running as
// the supervisor's own uid tries to read the supervisor's environment
// (where WORKERSCOPE_TOKEN and OTEL_EXPORTER_OTLP_HEADERS were), open its
// memory and list its descriptors. The supervisor is not dumpable, so the
// kernel refuses all three; it keeps serving.
func TestSupervisorClosedToWorkers(t *testing.T) {
	needRoot(t)
	bin := workerscopeBinary(t)
	home := publicDir(t, nobody)
	script := filepath.Join(publicDir(t, 0), "hostile.sh")
	// The attack runs before the worker answers its first command.
	const hostile = `#!/bin/sh
out="$HOME/attack"
if cat /proc/$PPID/environ >"$HOME/environ" 2>/dev/null; then echo environ:read; else echo environ:refused; fi >"$out"
if (exec 3</proc/$PPID/mem) 2>/dev/null; then echo mem:read; else echo mem:refused; fi >>"$out"
if ls /proc/$PPID/fd >/dev/null 2>&1; then echo fd:read; else echo fd:refused; fi >>"$out"
echo done >>"$out"
while read -r line; do
  id=$(printf '%s' "$line" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
  printf '{"type":"response","id":"%s","success":true}\n' "$id"
done
`
	if err := os.WriteFile(script, []byte(hostile), 0o755); err != nil {
		t.Fatal(err)
	}
	a := startAs(t, nobody, bin, []string{
		"HOME=" + home,
		"OTEL_METRICS_EXPORTER=none", "OTEL_TRACES_EXPORTER=none", "OTEL_LOGS_EXPORTER=none",
		"OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20otlp-secret-0123456789",
	}, "--worker-cmd", "/bin/sh "+script, "--worker-sandbox", "off") // tier 1 alone: tiers 2 and 3 are TestIsolationThroughTheBinary's
	a.rpc(t, "mallory", `{"type":"get_state"}`)
	attack, err := os.ReadFile(filepath.Join(home, "attack"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"environ:refused", "mem:refused", "fd:refused"} {
		if !strings.Contains(string(attack), want+"\n") {
			t.Errorf("the worker's attack on its supervisor: want %s, got\n%s", want, attack)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(home, "environ")); strings.Contains(string(b), token) || strings.Contains(string(b), "otlp-secret") {
		t.Errorf("the worker read the supervisor's secrets: %q", b)
	}
	if code, b := a.do(t, http.MethodGet, "/api/workers", ""); code != http.StatusOK {
		t.Fatalf("supervisor after the attack: %d %s", code, b)
	}
	for _, want := range []string{"supervisor not dumpable", "secrets removed from the supervisor's environment"} {
		if !strings.Contains(a.output(), want) {
			t.Errorf("start-up log lacks %q:\n%s", want, tail(a.output(), 20))
		}
	}
}

// TestRuntimeDirectoryKeepsRecovery (item 7): as a non-root service under
// systemd, the instance lock goes to $RUNTIME_DIRECTORY, not to $TMPDIR,
// which PrivateTmp= renews at every start. After kill -9 of the supervisor
// and a start with a fresh TMPDIR, the dead instance's surviving
// descendants are found and stopped.
func TestRuntimeDirectoryKeepsRecovery(t *testing.T) {
	needRoot(t)
	bin := workerscopeBinary(t)
	runtimeDir := publicDir(t, nobody)
	env := func() []string {
		return []string{"RUNTIME_DIRECTORY=" + runtimeDir, "TMPDIR=" + publicDir(t, nobody), "HOME=" + publicDir(t, nobody),
			"OTEL_METRICS_EXPORTER=none", "OTEL_TRACES_EXPORTER=none", "OTEL_LOGS_EXPORTER=none"}
	}
	first := startAs(t, nobody, bin, env(), "--cgroups", "off")
	first.rpc(t, "orphan-maker", `{"type":"prompt","child_ms":120000,"child_orphan":true,"child_setsid":true,"events":0}`)
	w := first.workers(t)["orphan-maker"]
	locks, _ := filepath.Glob(filepath.Join(runtimeDir, "*.lock"))
	if len(locks) != 1 {
		t.Fatalf("locks in RUNTIME_DIRECTORY: %v", locks)
	}
	var orphans map[int]string
	waitFor(t, 10*time.Second, "the worker's setsid orphan", func() bool {
		orphans = workerMarkers(instancePrefix(w.ID))
		delete(orphans, w.PID)
		// The worker's own child only starts the orphan and exits: it is
		// not the survivor (the test caught it once and found it gone).
		for pid := range orphans {
			if parentOf(pid) == w.PID {
				delete(orphans, pid)
			}
		}
		return len(orphans) > 0
	}, first.proc)
	t.Cleanup(func() {
		for pid := range workerMarkers(instancePrefix(w.ID)) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	first.kill() // kill -9: no clean-up runs
	for pid := range orphans {
		if syscall.Kill(pid, 0) != nil {
			t.Fatalf("orphan %d died with its supervisor; the test needs a survivor", pid)
		}
	}
	second := startAs(t, nobody, bin, env(), "--cgroups", "off")
	waitFor(t, 10*time.Second, "the dead instance's orphan to be stopped", func() bool {
		return len(workerMarkers(instancePrefix(w.ID))) == 0
	}, second.proc)
	// The line comes once the recovery's last round found nothing left,
	// a little after the orphan is gone.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(second.output(), "stopped leftovers of a dead supervisor instance") {
		if time.Now().After(deadline) {
			t.Fatalf("no recovery log line:\n%s", tail(second.output(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStartupFailureReturnsPromptly (item 6): a start-up that fails after
// the telemetry started (port in use, a bad Pyroscope setting) exits with
// its error at once, not after the OTLP timeout waiting on a collector
// that is down.
func TestStartupFailureReturnsPromptly(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bin := workerscopeBinary(t)
	for _, tt := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"port in use", nil, []string{"--listen", busy.Addr().String()}, "address already in use"},
		{"bad pyroscope interval", []string{"PYROSCOPE_SERVER_ADDRESS=http://127.0.0.1:1", "PYROSCOPE_UPLOAD_INTERVAL=often"}, []string{"--listen", "127.0.0.1:0"}, "PYROSCOPE_UPLOAD_INTERVAL"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// A collector that is down, and an OTLP timeout far above the
			// wait allowed here.
			const otlpTimeout = 60 * time.Second
			ctx, cancel := context.WithTimeout(context.Background(), otlpTimeout/3)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, tt.args...)
			cmd.Env = append(os.Environ(), append([]string{
				"WORKERSCOPE_TOKEN=" + token, "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:1",
				fmt.Sprintf("OTEL_EXPORTER_OTLP_TIMEOUT=%d", otlpTimeout.Milliseconds()),
			}, tt.env...)...)
			out, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Fatalf("still running after %s: the failed start waits on the collector\n%s", otlpTimeout/3, out)
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 || !strings.Contains(string(out), tt.want) {
				t.Fatalf("exit %v, want a failure naming %q:\n%s", err, tt.want, out)
			}
		})
	}
}

// TestSeriesCoverStoppingWorkers (item 3): with --max-workers 1, a worker
// evicted while it ignores SIGTERM is still stopping when its successor
// starts; both keep their per-worker series and none is unobserved.
func TestSeriesCoverStoppingWorkers(t *testing.T) {
	a := startAppBin(t, workerscopeBinary(t), []string{"OTEL_METRICS_EXPORTER=none", "OTEL_TRACES_EXPORTER=none", "OTEL_LOGS_EXPORTER=none"},
		"--max-workers", "1", "--stop-grace", "60s", "--cgroups", "off")
	a.rpc(t, "stuck", `{"type":"ignore_sigterm"}`)
	a.rpc(t, "next", `{"type":"get_state"}`) // evicts "stuck", which will not stop for 60 s
	var body string
	waitFor(t, 10*time.Second, "both workers' series, none unobserved", func() bool {
		body = a.scrape(t, "text/plain;version=0.0.4")
		return strings.Contains(body, `workerscope_worker_key="stuck"`) && strings.Contains(body, `workerscope_worker_key="next"`) &&
			regexp.MustCompile(`(?m)^workerscope_worker_unobserved(\{[^}]*\})? 0$`).MatchString(body)
	}, a.proc)
	if !regexp.MustCompile(`workerscope_worker_count\{[^}]*workerscope_worker_state="stopping"[^}]*\} 1`).MatchString(body) {
		t.Logf("no stopping worker counted (the stop may have raced): %s", grepLines(body, "workerscope_worker_count{"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestLogOTLPKeepsTypes (item 4): with --log-otlp the supervisor's records
// reach the collector with named string types as their text and durations
// as on stderr, not "unhandled: (T) v" or integer nanoseconds.
func TestLogOTLPKeepsTypes(t *testing.T) {
	col := startCollector(t, freePort(t), filepath.Join(t.TempDir(), "otlp.json"))
	a := startAppArgs(t, col.grpc, []string{"OTEL_BLRP_SCHEDULE_DELAY=100"}, "--log-otlp=true", "--idle-ttl", "1s")
	a.rpc(t, "idler", `{"type":"get_state"}`)
	var exited, started map[string]string
	waitFor(t, 30*time.Second, "the idle_reaped exit and the start record at the collector", func() bool {
		for _, r := range logRecords(readSignals(t, col.file)) {
			switch r.Body.String() {
			case "worker exited":
				exited = kvs(r.Attributes)
			case "started":
				started = kvs(r.Attributes)
			}
		}
		return exited != nil && started != nil
	}, a.proc, col.proc)
	if exited["reason"] != "idle_reaped" {
		t.Errorf("worker exited: reason %q, want idle_reaped (all: %v)", exited["reason"], exited)
	}
	if started["idle_ttl"] != "1s" {
		t.Errorf("started: idle_ttl %q, want 1s as on stderr (all: %v)", started["idle_ttl"], started)
	}
}

// TestTracesOffNamesNoTraces (item 5): with OTEL_TRACES_EXPORTER=none a
// command (even one carrying a caller's traceparent) names no trace in
// GET /api/metrics' last_commands and no exemplar in the OpenMetrics
// exposition: nothing would ever be found under those ids.
func TestTracesOffNamesNoTraces(t *testing.T) {
	a := startAppBin(t, workerscopeBinary(t), []string{"OTEL_METRICS_EXPORTER=none", "OTEL_TRACES_EXPORTER=none", "OTEL_LOGS_EXPORTER=none"})
	a.rpcTraced(t, "traced", `{"type":"get_state"}`, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	a.rpc(t, "plain", `{"type":"get_state"}`)
	code, b := a.do(t, http.MethodGet, "/api/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("/api/metrics: %d", code)
	}
	var rep struct {
		Workers []struct {
			Key          string `json:"key"`
			LastCommands []struct {
				Type    string `json:"type"`
				TraceID string `json:"trace_id"`
			} `json:"last_commands"`
		} `json:"workers"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, w := range rep.Workers {
		for _, c := range w.LastCommands {
			n++
			if c.TraceID != "" {
				t.Errorf("%s's %s names trace %s, which was never exported", w.Key, c.Type, c.TraceID)
			}
		}
	}
	if n < 2 {
		t.Fatalf("last_commands missing: %s", b)
	}
	om := a.scrape(t, "application/openmetrics-text;version=1.0.0")
	if strings.Contains(om, "trace_id=") {
		t.Errorf("exemplars name traces:\n%s", grepLines(om, "trace_id="))
	}
}

// TestEmptyFlagWins (item 8): a flag given empty on the command line wins
// over its variable: --pyroscope-server "" keeps profiling off although
// PYROSCOPE_SERVER_ADDRESS is set, and --run-commands "" follows no run
// although WORKERSCOPE_RUN_COMMANDS names prompt. The start-up log also
// names the limit tier at info (item 9).
func TestEmptyFlagWins(t *testing.T) {
	a := startAppBin(t, workerscopeBinary(t), []string{
		"OTEL_METRICS_EXPORTER=none", "OTEL_TRACES_EXPORTER=none", "OTEL_LOGS_EXPORTER=none",
		"PYROSCOPE_SERVER_ADDRESS=http://127.0.0.1:1", "WORKERSCOPE_RUN_COMMANDS=prompt",
	}, "--pyroscope-server", "", "--run-commands", "")
	a.rpc(t, "p", `{"type":"prompt","message":"hi","cpu_ms":5,"events":2}`)
	code, b := a.do(t, http.MethodGet, "/api/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("/api/metrics: %d", code)
	}
	if strings.Contains(string(b), `"run":true`) {
		t.Errorf("a prompt was followed as a run although --run-commands was given empty: %s", b)
	}
	out := a.output()
	if strings.Contains(out, "Pyroscope on") || strings.Contains(out, "127.0.0.1:1") {
		t.Errorf("profiling started although --pyroscope-server was given empty:\n%s", tail(out, 20))
	}
	if !regexp.MustCompile(`level=INFO msg="worker limits" .*tier=`).MatchString(out) {
		t.Errorf("the limit tier is not logged at info at start:\n%s", tail(out, 20))
	}
}

// TestDemoWorkerSwitchesReachIt (item 10): the WORKERSCOPE_DEMO_* switches
// documented in workers/demoworker, set in the supervisor's environment,
// reach the demo worker (other WORKERSCOPE_* settings do not).
func TestDemoWorkerSwitchesReachIt(t *testing.T) {
	a := startAppBin(t, workerscopeBinary(t), []string{
		"OTEL_METRICS_EXPORTER=none", "OTEL_TRACES_EXPORTER=none", "OTEL_LOGS_EXPORTER=none",
		"WORKERSCOPE_DEMO_CRASH_AT_START=demo-switch-arrived",
	})
	code, b := a.do(t, http.MethodPost, "/api/sessions/crashy/rpc", `{"type":"get_state"}`)
	if code == http.StatusOK || !strings.Contains(string(b), "demo-switch-arrived") {
		t.Fatalf("rpc to a demo worker told to crash at start: %d %s", code, b)
	}
}

// TestBareHostPortEndpoint (item 11): OTLP over http/protobuf to a bare
// host:port works and logs no error; the OTel SDK's own lines carry
// component=otel once.
func TestBareHostPortEndpoint(t *testing.T) {
	grpcAddr, httpAddr := freePort(t), freePort(t)
	file := filepath.Join(t.TempDir(), "otlp.json")
	startOtelcol(t, []string{"OTELCOL_GRPC_ENDPOINT=" + grpcAddr, "OTELCOL_HTTP_ENDPOINT=" + httpAddr, "OTELCOL_FILE_PATH=" + file},
		"otel-collector.yaml", "otel-collector.test.yaml")
	a := startAppBin(t, workerscopeBinary(t), []string{
		"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT=" + httpAddr,
		"OTEL_PROPAGATORS=tracecontext",
	})
	a.rpc(t, "bare", `{"type":"get_state"}`)
	waitFor(t, 20*time.Second, "metrics at the collector", func() bool {
		b, _ := os.ReadFile(file)
		return strings.Contains(string(b), "workerscope.worker.count")
	}, a.proc)
	a.stop(t, 15*time.Second)
	out := a.output()
	if strings.Contains(out, "level=ERROR") {
		t.Errorf("errors logged for a working endpoint:\n%s", grepLines(out, "level=ERROR"))
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Count(l, "component=") > 1 {
			t.Errorf("component twice: %s", l)
		}
	}
}

// parentOf is pid's parent pid from /proc, or 0 when it cannot be read.
func parentOf(pid int) int {
	f := procStat(pid)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}
