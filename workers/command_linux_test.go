//go:build linux

package workers_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/testutil"
	"github.com/workerscope/workerscope/workers"
)

// recTracer records what the Manager hands a CommandTracer.
type recTracer struct {
	mu    sync.Mutex
	spans []*recSpan
}

type ctxKey struct{}

func (t *recTracer) StartCommand(ctx context.Context, key, typ string) (context.Context, workers.CommandSpan) {
	s := &recSpan{key: key, typ: typ}
	t.mu.Lock()
	t.spans = append(t.spans, s)
	t.mu.Unlock()
	return context.WithValue(ctx, ctxKey{}, s), s
}

type recSpan struct {
	key, typ string
	mu       sync.Mutex
	events   []string
	ended    int
	result   workers.RPCResult
}

func (s *recSpan) Event(ev workers.Event) {
	s.mu.Lock()
	s.events = append(s.events, ev.Type)
	s.mu.Unlock()
}

func (s *recSpan) End(r workers.RPCResult) {
	s.mu.Lock()
	s.ended++
	s.result = r
	s.mu.Unlock()
}

func (s *recSpan) TraceID() string { return "trace-" + s.typ }

// TestCommandCost: a command that burns CPU in the worker and in a child
// that exits before the answer reports the whole tree's CPU, the child as
// a process started, and its events; the span sees it all before Send
// returns, and the worker remembers it.
func TestCommandCost(t *testing.T) {
	tr := &recTracer{}
	var rpcs []workers.RPCResult
	var mu sync.Mutex
	cfg := demoConfig(t)
	cfg.Tracer = tr
	cfg.CostSampleInterval = 100 * time.Millisecond
	cfg.OnRPC = func(r workers.RPCResult) {
		mu.Lock()
		rpcs = append(rpcs, r)
		mu.Unlock()
		if r.Context == nil || (r.Type != "" && r.Context.Value(ctxKey{}) == nil) {
			t.Errorf("OnRPC context %v does not carry the span", r.Context)
		}
	}
	m := newManager(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := m.Send(ctx, "c", []byte(`{"type":"get_state"}`)); err != nil {
		t.Fatal(err)
	}
	// The truth: the worker's tree read from /proc by the test right
	// before and right after the command. "work" answers only after its
	// child has exited and been reaped, so afterwards the child's time is
	// in the worker's cutime/cstime.
	pid := m.Snapshot()[0].PID
	before := testutil.ReadTreeCPU(t, pid)
	if _, err := m.Send(ctx, "c", []byte(`{"type":"work","cpu_ms":400,"child_cpu_ms":300,"child_ms":400,"mem_mib":16,"events":3}`)); err != nil {
		t.Fatal(err)
	}
	truth := testutil.ReadTreeCPU(t, pid).Sub(before)
	tr.mu.Lock()
	s := tr.spans[1]
	tr.mu.Unlock()
	s.mu.Lock()
	r, ended, events := s.result, s.ended, len(s.events)
	s.mu.Unlock()
	if ended != 1 || s.typ != "work" || s.key != "c" {
		t.Fatalf("span: ended %d times, type %q, key %q", ended, s.typ, s.key)
	}
	if r.Cost == nil {
		t.Fatal("no cost")
	}
	cpu := r.Cost.CPU()
	t.Logf("cost %+v (cpu %s), events %d; /proc: %s (%s reaped)", *r.Cost, cpu, events, truth.Total(), truth.Reaped)
	// The test's window holds the command's; outside it the idle worker
	// uses well under a tick.
	const outside = 10 * time.Millisecond
	if tol := testutil.CPUSlack(truth.Processes) + outside; cpu < truth.Total()-tol || cpu > truth.Total()+tol {
		t.Errorf("cost.cpu %s, want the tree's %s ±%s read from /proc around the command (the worker's own and its exited child's)", cpu, truth.Total(), tol)
	}
	if truth.Reaped <= 0 || cpu <= 0 {
		t.Errorf("cost.cpu %s, reaped child time %s: want both > 0", cpu, truth.Reaped)
	}
	if r.Cost.Processes < 1 {
		t.Errorf("cost.processes %d, want the child counted", r.Cost.Processes)
	}
	if r.Cost.MemoryPeak < 16<<20 {
		t.Errorf("cost.memory_peak %d, want ≥ 16 MiB", r.Cost.MemoryPeak)
	}
	if r.Cost.Shared {
		t.Error("a lone command marked shared")
	}
	if events != 3 || r.Events != 3 {
		t.Errorf("span events %d, result events %d, want 3", events, r.Events)
	}
	snap := m.Snapshot()
	if r.WorkerID != snap[0].ID || r.PID != snap[0].PID {
		t.Errorf("result names worker %s/%d, snapshot %s/%d", r.WorkerID, r.PID, snap[0].ID, snap[0].PID)
	}
	last := snap[0].LastCommands
	if len(last) != 2 || last[1].Type != "work" || !last[1].HasCost || last[1].TraceID != "trace-work" {
		t.Errorf("last commands %+v", last)
	}
	// The summaries carry what OnRPC got: the duration (a "work" command
	// answers after its work) and the error type.
	if len(last) == 2 && (last[1].Duration <= 0 || last[1].Duration != rpcsDuration(&mu, rpcs, 1)) {
		t.Errorf("last command's duration %v, OnRPC's %v", last[1].Duration, rpcsDuration(&mu, rpcs, 1))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(rpcs) != 2 || rpcs[1].Cost == nil {
		t.Errorf("OnRPC got %+v", rpcs)
	}
}

// TestCommandCostShared: commands in flight together on one worker are
// marked shared, each with the whole tree's cost.
func TestCommandCostShared(t *testing.T) {
	var mu sync.Mutex
	var got []workers.RPCResult
	cfg := demoConfig(t)
	cfg.OnRPC = func(r workers.RPCResult) { mu.Lock(); got = append(got, r); mu.Unlock() }
	m := newManager(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := m.Send(ctx, "s", []byte(`{"type":"get_state"}`)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := m.Send(ctx, "s", []byte(`{"type":"sleep","ms":300}`)); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for _, r := range got[1:] {
		if r.Cost == nil || !r.Cost.Shared {
			t.Errorf("overlapping command %+v: want cost marked shared", r.Cost)
		}
	}
}

// TestStderrHook: stderr lines reach OnStderr with the worker's identity
// and the in-flight command's context; a flood is cut at the rate and
// counted; lifecycle events reach OnLifecycle.
func TestStderrHook(t *testing.T) {
	var mu sync.Mutex
	var lines []workers.StderrLine
	var withSpan int
	var life []string
	cfg := demoConfig(t)
	parallel(t, &cfg)
	cfg.Tracer = &recTracer{}
	cfg.StderrRate = 1
	cfg.StderrBurst = 20
	cfg.StderrLineBytes = 1024
	cfg.OnStderr = func(ctx context.Context, l workers.StderrLine) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, l)
		if ctx.Value(ctxKey{}) != nil {
			withSpan++
		}
	}
	cfg.OnLifecycle = func(ev workers.Lifecycle) { mu.Lock(); life = append(life, ev.Type); mu.Unlock() }
	m := newManager(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := m.Send(ctx, "e", []byte(`{"type":"stderr","message":"level=error boom"}`)); err != nil {
		t.Fatal(err)
	}
	// The line is read by its own goroutine; the next command is after it.
	waitUntil(t, 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(lines) == 1 })
	mu.Lock()
	l := lines[0]
	if string(l.Line) != "level=error boom" || l.Key != "e" || l.WorkerID == "" || l.PID == 0 {
		t.Errorf("line %+v", l)
	}
	mu.Unlock()
	long := strings.Repeat("y", 3000)
	if _, err := m.Send(ctx, "e", []byte(`{"type":"stderr","lines":500,"message":"`+long+`"}`)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, func() bool { return m.Stats().StderrLinesDropped+uint64(count(&mu, &lines)) >= 501 })
	mu.Lock()
	n := len(lines)
	trunc := lines[n-1].Truncated && len(lines[n-1].Line) == 1024
	mu.Unlock()
	if n > 25 || n < 19 {
		t.Errorf("%d lines passed a bucket of 20 at 1/s", n)
	}
	if !trunc {
		t.Error("a 3000-byte line was not cut to StderrLineBytes")
	}
	if d := m.Stats().StderrLinesDropped; d < 470 {
		t.Errorf("dropped %d, want the flood's excess counted", d)
	}
	if err := m.Stop(ctx, "e"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(life) != 2 || life[0] != "worker_start" || life[1] != "worker_exit" {
		t.Errorf("lifecycle %v", life)
	}
	_ = withSpan // the context of a line depends on when it is read: see the e2e test
}

func count(mu *sync.Mutex, l *[]workers.StderrLine) int {
	mu.Lock()
	defer mu.Unlock()
	return len(*l)
}

func waitUntil(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func rpcsDuration(mu *sync.Mutex, rpcs []workers.RPCResult, i int) time.Duration {
	mu.Lock()
	defer mu.Unlock()
	if i >= len(rpcs) {
		return -1
	}
	return rpcs[i].Duration
}

// TestCommandCostFromCgroup: with a per-worker cgroup a command's cost is
// read from the group's cpu.stat at both ends, so it includes a
// descendant that escaped the tree (double fork, re-parented away, reaped
// by someone else) and burned CPU inside the command: a walk of the
// worker's tree loses that time. The truth is independent of both: the
// worker's tree read from /proc by the test around the command, plus the
// escaped shell's own times(2), which it writes to a file before exiting.
func TestCommandCostFromCgroup(t *testing.T) {
	cfg := demoConfig(t)
	cfg.Cgroups, cfg.MemoryMax = workers.CgroupsRequired, 512<<20
	var mu sync.Mutex
	var last workers.RPCResult
	cfg.OnRPC = func(r workers.RPCResult) {
		mu.Lock()
		last = r
		mu.Unlock()
	}
	m := startManager(t, cfg, func(cfg workers.Config) (*workers.Manager, error) {
		m, err := workers.New(cfg)
		if err != nil {
			t.Skipf("no per-worker cgroups here: %v", err)
		}
		return m, nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := m.Send(ctx, "c", []byte(`{"type":"get_state"}`)); err != nil {
		t.Fatal(err)
	}
	snap := m.Snapshot()[0]
	var u workers.CgroupUsage
	if !m.WorkerCgroupUsage(snap.ID, &u) || !u.HasCPU {
		t.Fatalf("worker %s (cgroup %q) has no cgroup CPU figure: %+v", snap.ID, snap.Cgroup, u)
	}
	times := filepath.Join(t.TempDir(), "times")
	cmd := testutil.EscapedBurner(times)
	before := testutil.ReadTreeCPU(t, snap.PID)
	resp, err := m.Send(ctx, "c", cmd)
	if err != nil {
		t.Fatal(err)
	}
	tree := testutil.ReadTreeCPU(t, snap.PID).Sub(before)
	mu.Lock()
	res := last
	mu.Unlock()
	b, err := os.ReadFile(times)
	if err != nil {
		t.Fatalf("the escaped burner left no times: %v (exec answered %s)", err, resp)
	}
	escaped := testutil.ShellTimes(t, string(b))
	if res.Cost == nil {
		t.Fatal("no cost")
	}
	cpu, truth := res.Cost.CPU(), tree.Total()+escaped
	// The /proc readings truncate to ticks (the tree's processes plus the
	// escaped shell's two fields); outside the window the idle worker uses
	// well under a tick.
	tol := testutil.CPUSlack(tree.Processes+1) + 10*time.Millisecond
	t.Logf("cost %s (%+v); truth %s = tree %s + escaped %s", cpu, *res.Cost, truth, tree.Total(), escaped)
	if escaped < 50*time.Millisecond {
		t.Fatalf("the escaped burner used only %s: the test proves nothing", escaped)
	}
	if cpu < truth-tol || cpu > truth+tol {
		t.Errorf("cost.cpu %s, want %s ±%s: the tree's own time and the escaped burner's", cpu, truth, tol)
	}
}
