//go:build linux

package workers_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/testutil"

	"github.com/workerscope/workerscope/workers"
)

func TestRoundTripAndSnapshot(t *testing.T) {
	cfg := demoConfig(t)
	parallel(t, &cfg)
	m := newManager(t, cfg)
	r := send(t, m, "alpha", `{"type":"get_state","id":"mine-1"}`)
	if !r.Success || r.Command != "get_state" || r.Data.PID == 0 {
		t.Fatalf("bad response %+v", r)
	}
	if string(r.ID) != `"mine-1"` {
		t.Fatalf("caller's id not restored: %s", r.ID)
	}
	w, ok := snapshotOf(m, "alpha")
	if !ok || w.PID != r.Data.PID {
		t.Fatalf("snapshot %+v does not show pid %d", w, r.Data.PID)
	}
	if w.State != workers.StateIdle || w.Requests != 1 || w.Zombie || w.ID == "" || w.StartTicks == 0 {
		t.Fatalf("snapshot %+v", w)
	}
	// The same key reuses the worker; another key gets its own.
	if r2 := send(t, m, "alpha", `{"type":"get_state"}`); r2.Data.PID != r.Data.PID {
		t.Fatalf("worker not reused: %d vs %d", r2.Data.PID, r.Data.PID)
	}
	if r3 := send(t, m, "beta", `{"type":"get_state"}`); r3.Data.PID == r.Data.PID {
		t.Fatal("two sessions share a worker")
	}
	if st := m.Stats(); st.Spawns != 2 || st.ByState[workers.StateIdle] != 2 {
		t.Fatalf("stats %+v", st)
	}
	// Unknown commands get the worker's own error response.
	if r := send(t, m, "alpha", `{"type":"nope"}`); r.Success || !strings.Contains(r.Error, "Unknown command") {
		t.Fatalf("unknown command: %+v", r)
	}
}

func TestBadCommandsAndKeys(t *testing.T) {
	cfg := demoConfig(t)
	parallel(t, &cfg)
	m := newManager(t, cfg)
	ctx := context.Background()
	for _, cmd := range []string{``, `null`, `[]`, `"x"`, `{"type":1}`, `{"type":""}`, `{}`, `{"type":"get_state"`} {
		if _, err := m.Send(ctx, "k", []byte(cmd)); !errors.Is(err, workers.ErrBadCommand) {
			t.Errorf("command %q: err = %v, want ErrBadCommand", cmd, err)
		}
	}
	for _, key := range []string{"", "a/b", "a b", "..", strings.Repeat("k", 129), "ключ", "a\x00b"} {
		if _, err := m.Send(ctx, key, []byte(`{"type":"get_state"}`)); !errors.Is(err, workers.ErrBadKey) {
			t.Errorf("key %q: err = %v, want ErrBadKey", key, err)
		}
	}
	if len(m.Snapshot()) != 0 {
		t.Fatal("bad input spawned a worker")
	}
}

func TestPromptStreamsEventsAndState(t *testing.T) {
	cfg := demoConfig(t)
	parallel(t, &cfg)
	m := newManager(t, cfg)
	sub, err := m.Subscribe("s1", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	r := send(t, m, "s1", `{"type":"prompt","message":"hi","cpu_ms":300,"events":3}`)
	if !r.Success {
		t.Fatalf("prompt: %+v", r)
	}
	var types []string
	sawRunning := false
	timeout := time.After(20 * time.Second)
	for len(types) == 0 || types[len(types)-1] != "agent_end" {
		select {
		case ev := <-sub.C:
			types = append(types, ev.Type)
			if ev.Type == "message_update" {
				if w, _ := snapshotOf(m, "s1"); w.State == workers.StateRunning {
					sawRunning = true
				}
			}
		case <-timeout:
			t.Fatalf("events so far: %v", types)
		}
	}
	want := []string{"worker_start", "agent_start", "message_update", "message_update", "message_update", "agent_end"}
	if fmt.Sprint(types) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", types, want)
	}
	if !sawRunning {
		t.Fatal("worker never showed as running while streaming")
	}
	// agent_end returns it to idle at once.
	testutil.Eventually(t, time.Second, "idle after agent_end", func() bool {
		w, _ := snapshotOf(m, "s1")
		return w.State == workers.StateIdle
	})
}

func TestCrashAtStartReportsStderr(t *testing.T) {
	cfg := demoConfig(t, "WORKERSCOPE_DEMO_CRASH_AT_START=cannot open config: boom-42")
	cfg.RestartBackoff, cfg.MaxRestartBackoff = time.Minute, time.Hour
	parallel(t, &cfg)
	m, clock := newClockManager(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := m.Send(ctx, "c", []byte(`{"type":"get_state"}`))
	var xe *workers.ExitError
	if !errors.As(err, &xe) || xe.Reason != workers.ExitCrashed || !strings.Contains(xe.StderrTail, "boom-42") || !strings.Contains(xe.Status, "exit status 3") {
		t.Fatalf("err = %v", err)
	}
	if !errors.Is(err, workers.ErrWorkerExit) {
		t.Fatal("ExitError does not match ErrWorkerExit")
	}
	// Repeated crashes back off: the third attempt in a row must wait, and
	// a caller whose deadline is shorter than the back-off is told so.
	_, _ = m.Send(ctx, "c", []byte(`{"type":"get_state"}`))
	short, cancel2 := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel2()
	_, err = m.Send(short, "c", []byte(`{"type":"get_state"}`))
	var be *workers.BackoffError
	if !errors.As(err, &be) || be.RetryAfter != cfg.RestartBackoff {
		t.Fatalf("third attempt: err = %v, want BackoffError after %s", err, cfg.RestartBackoff)
	}
	if st := m.Stats(); st.Exits[workers.ExitCrashed] != 2 {
		t.Fatalf("crash exits = %d", st.Exits[workers.ExitCrashed])
	}
	// Once the back-off has passed the session spawns again; the next
	// back-off is twice as long.
	clock.Advance(cfg.RestartBackoff)
	if _, err := m.Send(ctx, "c", []byte(`{"type":"get_state"}`)); !errors.As(err, &xe) {
		t.Fatalf("after the back-off: err = %v, want the worker's exit", err)
	}
	short3, cancel3 := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel3()
	if _, err := m.Send(short3, "c", []byte(`{"type":"get_state"}`)); !errors.As(err, &be) || be.RetryAfter != 2*cfg.RestartBackoff {
		t.Fatalf("fourth crash: err = %v, want BackoffError after %s", err, 2*cfg.RestartBackoff)
	}
}

func TestCrashMidRequestFailsPendingAtOnce(t *testing.T) {
	cfg := demoConfig(t)
	parallel(t, &cfg)
	m := newManager(t, cfg)
	first := send(t, m, "k", `{"type":"get_state"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := m.Send(ctx, "k", []byte(`{"type":"sleep","ms":20000}`))
		errc <- err
	}()
	testutil.Eventually(t, 5*time.Second, "sleep in flight", func() bool {
		w, _ := snapshotOf(m, "k")
		return w.State == workers.StateRunning
	})
	start := time.Now()
	_, err := m.Send(ctx, "k", []byte(`{"type":"crash","message":"panic: nil map write","code":7}`))
	var xe *workers.ExitError
	if !errors.As(err, &xe) || !strings.Contains(xe.StderrTail, "nil map write") {
		t.Fatalf("crash call: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.As(err, &xe) || !strings.Contains(err.Error(), "nil map write") || !strings.Contains(err.Error(), "exit status 7") {
			t.Fatalf("pending call: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pending call not failed after the crash")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("pending call waited for its own timeout")
	}
	// The next command respawns.
	next := send(t, m, "k", `{"type":"get_state"}`)
	if next.Data.PID == first.Data.PID || next.Data.PID == 0 {
		t.Fatalf("not respawned: %d", next.Data.PID)
	}
	if w, _ := snapshotOf(m, "k"); w.Restarts != 1 {
		t.Fatalf("restarts = %d", w.Restarts)
	}
}

func TestContextDeadlineLeavesWorkerUsable(t *testing.T) {
	cfg := demoConfig(t)
	parallel(t, &cfg)
	m := newManager(t, cfg)
	send(t, m, "k", `{"type":"get_state"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := m.Send(ctx, "k", []byte(`{"type":"sleep","ms":1000}`))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if r := send(t, m, "k", `{"type":"get_state"}`); !r.Success {
		t.Fatalf("worker unusable after a timeout: %+v", r)
	}
	// The late response is dropped and counted, not delivered to anyone.
	testutil.Eventually(t, 3*time.Second, "late response counted", func() bool { return m.Stats().UnmatchedResponses == 1 })
}

func TestIgnoresSIGTERMIsKilledAfterGrace(t *testing.T) {
	cfg := demoConfig(t)
	parallel(t, &cfg)
	cfg.StopGrace = 300 * time.Millisecond
	m := newManager(t, cfg)
	r := send(t, m, "k", `{"type":"ignore_sigterm"}`)
	if !r.Success {
		t.Fatal(r.Error)
	}
	w, _ := snapshotOf(m, "k")
	start := time.Now()
	if err := m.Stop(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("stopped after %s, before the grace", d)
	}
	if alive(w.PID) {
		t.Fatal("worker alive after Stop")
	}
	if st := m.Stats(); st.Exits[workers.ExitKilled] != 1 {
		t.Fatalf("exits %v", st.Exits)
	}
	if err := m.Stop(context.Background(), "k"); !errors.Is(err, workers.ErrNotFound) {
		t.Fatalf("second stop: %v", err)
	}
}

func TestFloodedOutputIsCountedAndSessionSurvives(t *testing.T) {
	cfg := demoConfig(t)
	parallel(t, &cfg)
	cfg.MaxLineBytes = 64 << 10
	m := newManager(t, cfg)
	if r := send(t, m, "k", `{"type":"flood","lines":500,"bytes":100,"kind":"invalid"}`); !r.Success {
		t.Fatal(r.Error)
	}
	if r := send(t, m, "k", `{"type":"flood","lines":20,"bytes":200000,"kind":"oversize"}`); !r.Success {
		t.Fatal(r.Error)
	}
	st := m.Stats()
	if st.InvalidLines != 500 || st.OversizeLines != 20 {
		t.Fatalf("invalid %d oversize %d", st.InvalidLines, st.OversizeLines)
	}
	if r := send(t, m, "k", `{"type":"get_state"}`); !r.Success {
		t.Fatal("session did not survive the flood")
	}
}

func TestStopKillsWholeTree(t *testing.T) {
	tests := []struct {
		name   string
		prompt string
	}{
		{"child in group", `{"type":"prompt","child_ms":60000}`},
		{"setsid child", `{"type":"prompt","child_ms":60000,"child_setsid":true}`},
		{"orphaned grandchild", `{"type":"prompt","child_ms":60000,"child_orphan":true}`},
		{"orphan in new session", `{"type":"prompt","child_ms":60000,"child_orphan":true,"child_setsid":true}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newManager(t, demoConfig(t))
			send(t, m, "k", tt.prompt)
			w, _ := snapshotOf(m, "k")
			testutil.Eventually(t, 5*time.Second, "worker and its descendant", func() bool { return len(treeOf(t, w.ID)) == 2 })
			tree := treeOf(t, w.ID)
			if err := m.Stop(context.Background(), "k"); err != nil {
				t.Fatal(err)
			}
			for _, pid := range tree {
				if alive(pid) {
					stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
					t.Errorf("pid %d of the tree survived Stop: %s (worker pid %d)", pid, stat, w.PID)
				}
			}
		})
	}
}

func TestCrashKillsLeftoverTree(t *testing.T) {
	m := newManager(t, demoConfig(t))
	send(t, m, "k", `{"type":"prompt","child_ms":60000,"child_orphan":true,"child_setsid":true}`)
	w, _ := snapshotOf(m, "k")
	testutil.Eventually(t, 5*time.Second, "descendant", func() bool { return len(treeOf(t, w.ID)) == 2 })
	_, _ = m.Send(context.Background(), "k", []byte(`{"type":"crash"}`))
	testutil.Eventually(t, 5*time.Second, "leftovers of a crashed worker gone", func() bool { return len(treeOf(t, w.ID)) == 0 })
}

func TestIdleReapAndZombie(t *testing.T) {
	cfg := demoConfig(t)
	cfg.IdleTTL = time.Minute
	cfg.StopGrace = time.Second
	parallel(t, &cfg)
	m, clock := newClockManager(t, cfg)
	send(t, m, "plain", `{"type":"get_state"}`)
	send(t, m, "stuck", `{"type":"ignore_sigterm"}`)
	clock.Advance(cfg.IdleTTL - time.Second)
	workers.ReapNow(m)
	if w, ok := snapshotOf(m, "plain"); !ok || w.State != workers.StateIdle || w.Zombie {
		t.Fatalf("within its TTL: %+v", w)
	}
	clock.Advance(2 * time.Second)
	workers.ReapNow(m)
	testutil.Eventually(t, 5*time.Second, "plain reaped", func() bool { _, ok := snapshotOf(m, "plain"); return !ok })
	if m.Stats().Exits[workers.ExitIdleReaped] != 1 {
		t.Fatalf("exits %v", m.Stats().Exits)
	}
	// The stuck one ignores the reaper's SIGTERM: during the grace it is
	// alive, idle past the TTL, and flagged as a zombie.
	testutil.Eventually(t, 2*time.Second, "stuck flagged as zombie", func() bool {
		w, ok := snapshotOf(m, "stuck")
		return ok && w.Zombie && w.State == workers.StateStopping
	})
	testutil.Eventually(t, 10*time.Second, "stuck killed", func() bool { _, ok := snapshotOf(m, "stuck"); return !ok })
	if m.Stats().Exits[workers.ExitKilled] != 1 {
		t.Fatalf("exits %v", m.Stats().Exits)
	}
}

func TestRunningWorkerIsNeverZombie(t *testing.T) {
	cfg := demoConfig(t)
	cfg.IdleTTL = time.Minute
	parallel(t, &cfg)
	m, clock := newClockManager(t, cfg)
	send(t, m, "k", `{"type":"get_state"}`)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = m.Send(context.Background(), "k", []byte(`{"type":"sleep","ms":300}`))
	}()
	testutil.Eventually(t, 5*time.Second, "k running", func() bool { w, _ := snapshotOf(m, "k"); return w.State == workers.StateRunning })
	clock.Advance(2 * cfg.IdleTTL)
	workers.ReapNow(m)
	if w, ok := snapshotOf(m, "k"); !ok || w.State != workers.StateRunning || w.Zombie {
		t.Fatalf("running past the TTL: %+v (found %v), want running, not a zombie", w, ok)
	}
	<-done
	if n := m.Stats().Exits[workers.ExitIdleReaped]; n != 0 {
		t.Fatalf("%d idle reaps of a running worker", n)
	}
}

// TestQuietRunIsNotReaped: between agent_start and agent_end the agent
// is at work even when it streams nothing (a long model call, a quiet
// tool): the worker stays running past its idle TTL and is not reaped
// mid-run. A run older than MaxRunDuration counts as stuck: idle again,
// so the reaper can stop it.
func TestQuietRunIsNotReaped(t *testing.T) {
	cfg := demoConfig(t)
	cfg.IdleTTL = time.Minute
	cfg.MaxRunDuration = 10 * time.Minute
	parallel(t, &cfg)
	m, clock := newClockManager(t, cfg)
	sub, err := m.Subscribe("k", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	send(t, m, "k", `{"type":"prompt","message":"think quietly","cpu_ms":8000,"events":0}`)
	for ev := range sub.C {
		if ev.Type == "agent_start" {
			break
		}
	}
	clock.Advance(2 * cfg.IdleTTL) // past the running window and the TTL, the run still going
	workers.ReapNow(m)
	if w, ok := snapshotOf(m, "k"); !ok || w.State != workers.StateRunning || w.Zombie {
		t.Fatalf("a quiet run past the idle TTL: %+v (found %v), want running", w, ok)
	}
	clock.Advance(cfg.MaxRunDuration) // the run is now older than MaxRunDuration: stuck
	if w, _ := snapshotOf(m, "k"); w.State != workers.StateIdle || !w.Zombie {
		t.Fatalf("a run past MaxRunDuration: %+v, want idle and flagged", w)
	}
	workers.ReapNow(m)
	testutil.Eventually(t, 10*time.Second, "the stuck run's worker reaped", func() bool { _, ok := snapshotOf(m, "k"); return !ok })
	if n := m.Stats().Exits[workers.ExitIdleReaped]; n != 1 {
		t.Fatalf("%d idle reaps, want 1", n)
	}
}

// TestRunningWindow: a streamed event keeps a worker running for
// RunningWindow, agent_end ends it at once.
func TestRunningWindow(t *testing.T) {
	cfg := demoConfig(t)
	cfg.RunningWindow = 10 * time.Second
	parallel(t, &cfg)
	m, clock := newClockManager(t, cfg)
	// One event, printed (and so routed) before the response.
	send(t, m, "k", `{"type":"flood","kind":"oversize","lines":1,"bytes":1}`)
	state := func() workers.State { w, _ := snapshotOf(m, "k"); return w.State }
	if st := state(); st != workers.StateRunning {
		t.Fatalf("state %s just after an event, want running", st)
	}
	clock.Advance(cfg.RunningWindow - time.Millisecond)
	if st := state(); st != workers.StateRunning {
		t.Fatalf("state %s inside the window, want running", st)
	}
	clock.Advance(time.Millisecond)
	if st := state(); st != workers.StateIdle {
		t.Fatalf("state %s after the window, want idle", st)
	}
}

func TestMaxWorkersEvictsLongestIdle(t *testing.T) {
	cfg := demoConfig(t)
	cfg.MaxWorkers = 2
	parallel(t, &cfg)
	m, clock := newClockManager(t, cfg)
	send(t, m, "a", `{"type":"get_state"}`)
	clock.Advance(time.Second)
	send(t, m, "b", `{"type":"get_state"}`)
	send(t, m, "c", `{"type":"get_state"}`) // evicts a, the longest idle
	testutil.Eventually(t, 5*time.Second, "a evicted", func() bool { _, ok := snapshotOf(m, "a"); return !ok })
	if m.Stats().Exits[workers.ExitLimit] != 1 {
		t.Fatalf("exits %v", m.Stats().Exits)
	}
	// Both busy: the pool is full.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, k := range []string{"b", "c"} {
		wg.Add(1)
		go func() { defer wg.Done(); _, _ = m.Send(ctx, k, []byte(`{"type":"sleep","ms":1500}`)) }()
	}
	testutil.Eventually(t, 5*time.Second, "both running", func() bool {
		return m.Stats().ByState[workers.StateRunning] == 2
	})
	if _, err := m.Send(ctx, "d", []byte(`{"type":"get_state"}`)); !errors.Is(err, workers.ErrPoolFull) {
		t.Fatalf("err = %v, want ErrPoolFull", err)
	}
	wg.Wait()
}

func TestManyConcurrentSessions(t *testing.T) {
	cfg := demoConfig(t)
	parallel(t, &cfg)
	cfg.MaxWorkers = 60
	m := newManager(t, cfg)
	const n = 50
	var wg sync.WaitGroup
	pids := make([]int, n)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			raw, err := m.Send(ctx, fmt.Sprintf("s-%d", i), []byte(`{"type":"prompt","cpu_ms":20}`))
			if err != nil {
				errs <- err
				return
			}
			raw, err = m.Send(ctx, fmt.Sprintf("s-%d", i), []byte(`{"type":"get_state"}`))
			if err != nil {
				errs <- err
				return
			}
			var r response
			_ = json.Unmarshal(raw, &r)
			pids[i] = r.Data.PID
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range pids {
		if p == 0 || seen[p] {
			t.Fatalf("pids %v", pids)
		}
		seen[p] = true
	}
	if got := len(m.Snapshot()); got != n {
		t.Fatalf("%d workers, want %d", got, n)
	}
}

func TestSlowSubscriberNeverBlocksWorker(t *testing.T) {
	cfg := demoConfig(t)
	parallel(t, &cfg)
	cfg.EventBuffer = 2
	m := newManager(t, cfg)
	sub, err := m.Subscribe("k", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// Nobody reads sub.C; the worker streams 50 events per prompt.
	for i := 0; i < 3; i++ {
		send(t, m, "k", `{"type":"prompt","events":50}`)
		testutil.Eventually(t, 5*time.Second, "prompt done", func() bool {
			return send(t, m, "k", `{"type":"get_state"}`).Data.Streaming == false
		})
	}
	if sub.Dropped() == 0 || m.Stats().EventsDropped != sub.Dropped() {
		t.Fatalf("dropped %d / %d", sub.Dropped(), m.Stats().EventsDropped)
	}
}

func TestCloseWithBusyWorkersLeavesNothing(t *testing.T) {
	cfg := demoConfig(t)
	cfg.StopGrace = 500 * time.Millisecond
	m, err := workers.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := 0; i < 5; i++ {
		key := fmt.Sprintf("busy-%d", i)
		send(t, m, key, `{"type":"prompt","cpu_ms":10000,"child_ms":60000,"child_orphan":true,"child_setsid":true}`)
		if i%2 == 0 {
			send(t, m, key, `{"type":"ignore_sigterm"}`)
		}
		w, _ := snapshotOf(m, key)
		ids = append(ids, w.ID)
	}
	for _, id := range ids {
		testutil.Eventually(t, 5*time.Second, "descendants started", func() bool { return len(treeOf(t, id)) == 2 })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if left := treeOf(t, id); len(left) > 0 {
			t.Errorf("worker %s left %v", id, left)
		}
	}
	if _, err := m.Send(ctx, "x", []byte(`{"type":"get_state"}`)); !errors.Is(err, workers.ErrClosed) {
		t.Fatalf("send after close: %v", err)
	}
}

func TestSpawnFailure(t *testing.T) {
	cfg := demoConfig(t)
	parallel(t, &cfg)
	cfg.Command = []string{"/nonexistent/worker-binary"}
	m := newManager(t, cfg)
	_, err := m.Send(context.Background(), "k", []byte(`{"type":"get_state"}`))
	if !errors.Is(err, workers.ErrSpawn) || !strings.Contains(err.Error(), "nonexistent") {
		t.Fatalf("err = %v", err)
	}
	if m.Stats().SpawnFailures != 1 {
		t.Fatal("spawn failure not counted")
	}
}

func TestWorkerKilledExternally(t *testing.T) {
	cfg := demoConfig(t)
	parallel(t, &cfg)
	m := newManager(t, cfg)
	r := send(t, m, "k", `{"type":"get_state"}`)
	_ = syscall.Kill(r.Data.PID, syscall.SIGKILL)
	testutil.Eventually(t, 5*time.Second, "exit noticed", func() bool { return m.Stats().Exits[workers.ExitCrashed] == 1 })
	if r2 := send(t, m, "k", `{"type":"get_state"}`); r2.Data.PID == r.Data.PID {
		t.Fatal("not respawned")
	}
}

func TestNegativeStopGraceKillsAtOnce(t *testing.T) {
	cfg := demoConfig(t)
	parallel(t, &cfg)
	cfg.StopGrace = -1
	m := newManager(t, cfg)
	send(t, m, "k", `{"type":"ignore_sigterm"}`)
	if err := m.Stop(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	if st := m.Stats(); st.Exits[workers.ExitStopped] != 1 {
		t.Fatalf("exits %v: a configured zero grace is a plain stop, not an escalation", st.Exits)
	}
}

func TestWorkerEnvironment(t *testing.T) {
	t.Setenv("WORKERSCOPE_TOKEN", "secret-should-not-leak")
	t.Setenv("KEEP_ME", "yes")
	cfg := demoConfig(t, "EXTRA=1")
	cfg.EnvDrop = []string{"WORKERSCOPE_TOKEN"}
	m := newManager(t, cfg)
	r := send(t, m, "env-key", `{"type":"get_state"}`)
	env := string(must(os.ReadFile(fmt.Sprintf("/proc/%d/environ", r.Data.PID))))
	w, _ := snapshotOf(m, "env-key")
	for _, want := range []string{"KEEP_ME=yes", "EXTRA=1", workers.MarkerEnv + "=" + w.ID, workers.KeyEnv + "=env-key"} {
		if !strings.Contains(env, want+"\x00") {
			t.Errorf("worker env lacks %s", want)
		}
	}
	if strings.Contains(env, "secret-should-not-leak") {
		t.Error("dropped variable reached the worker")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestMaxWorkersHoldsUnderConcurrentSpawns(t *testing.T) {
	cfg := demoConfig(t)
	parallel(t, &cfg)
	cfg.MaxWorkers = 2
	m := newManager(t, cfg)
	var wg sync.WaitGroup
	var full atomic.Int32
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := m.Send(context.Background(), fmt.Sprintf("k%d", i), []byte(`{"type":"sleep","ms":300}`))
			if errors.Is(err, workers.ErrPoolFull) {
				full.Add(1)
			} else if err != nil {
				t.Error(err)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; { // the bound holds for as long as they compete
		select {
		case <-done:
			running = false
		case <-time.After(5 * time.Millisecond):
		}
		if n := len(m.Snapshot()); n > 2 {
			t.Fatalf("%d live workers with MaxWorkers 2", n)
		}
	}
	if full.Load() == 0 {
		t.Fatal("no request was refused although 8 busy sessions competed for 2 workers")
	}
}

func TestLongFirstCommandIsNotReaped(t *testing.T) {
	cfg := demoConfig(t)
	cfg.IdleTTL = time.Minute
	parallel(t, &cfg)
	m, clock := newClockManager(t, cfg)
	done := make(chan response)
	go func() { done <- send(t, m, "k", `{"type":"sleep","ms":300}`) }()
	testutil.Eventually(t, 5*time.Second, "k spawned", func() bool { _, ok := snapshotOf(m, "k"); return ok })
	clock.Advance(2 * cfg.IdleTTL) // the first command runs past the TTL
	workers.ReapNow(m)
	if r := <-done; !r.Success {
		t.Fatalf("%+v", r)
	}
	if m.Stats().Exits[workers.ExitIdleReaped] != 0 {
		t.Fatal("a worker running its first command was reaped")
	}
}

func TestWorkerThatExitsAtOnceLeavesThePool(t *testing.T) {
	cfg := demoConfig(t)
	parallel(t, &cfg)
	cfg.Command = []string{"/bin/true"}
	m := newManager(t, cfg)
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := m.Send(ctx, fmt.Sprintf("t%d", i), []byte(`{"type":"get_state"}`))
		cancel()
		if err == nil {
			t.Fatal("a worker that exits at once answered")
		}
	}
	testutil.Eventually(t, 5*time.Second, "exited workers gone from the pool", func() bool { return len(m.Snapshot()) == 0 })
}

func TestConfigRejectsNegativeLimits(t *testing.T) {
	t.Parallel() // every config is refused before New touches the process
	for _, mut := range []func(*workers.Config){
		func(c *workers.Config) { c.StderrTailBytes = -1 },
		func(c *workers.Config) { c.ReapInterval = -time.Second },
		func(c *workers.Config) { c.MaxCommandBytes = -5 },
		func(c *workers.Config) { c.MaxWorkers = -1 },
		func(c *workers.Config) { c.Command = nil },
	} {
		cfg := demoConfig(t)
		mut(&cfg)
		if m, err := workers.New(cfg); err == nil {
			_ = m.Close(context.Background())
			t.Errorf("config %+v accepted", cfg)
		}
	}
}

// TestCrashLoopingSessionsAndErrorTypes: a session whose workers crash at
// start counts as crash-looping from the third crash in a row, until it is
// gone; every RPC result names its error type.
func TestCrashLoopingSessionsAndErrorTypes(t *testing.T) {
	cfg := demoConfig(t, "WORKERSCOPE_DEMO_CRASH_AT_START=boom")
	parallel(t, &cfg)
	cfg.RestartBackoff, cfg.MaxRestartBackoff = time.Millisecond, 5*time.Millisecond
	var mu sync.Mutex
	var types []string
	cfg.OnRPC = func(r workers.RPCResult) {
		mu.Lock()
		types = append(types, r.ErrorType)
		mu.Unlock()
	}
	m := newManager(t, cfg)
	for i := 0; i < workers.CrashLoopCrashes; i++ {
		if st := m.Stats(); st.CrashLooping != 0 {
			t.Fatalf("after %d crashes: %d crash-looping sessions", i, st.CrashLooping)
		}
		testutil.Eventually(t, 5*time.Second, "a crash", func() bool {
			_, err := m.Send(context.Background(), "loop", []byte(`{"type":"get_state"}`))
			return errors.Is(err, workers.ErrWorkerExit)
		})
	}
	if st := m.Stats(); st.CrashLooping != 1 || st.MaxWorkers != m.Config().MaxWorkers {
		t.Fatalf("stats: crash looping %d, max workers %d", st.CrashLooping, st.MaxWorkers)
	}
	_, _ = m.Send(context.Background(), "bad key!", []byte(`{"type":"get_state"}`))
	_, _ = m.Send(context.Background(), "k2", []byte(`not json`))
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(types, workers.CodeWorkerExit) || !slices.Contains(types, workers.CodeBadKey) || !slices.Contains(types, workers.CodeBadCommand) {
		t.Fatalf("error types %q", types)
	}
	for _, typ := range types {
		if typ == "" || typ == workers.CodeOther {
			t.Fatalf("unnamed error type in %q", types)
		}
	}
}

func TestErrorCode(t *testing.T) {
	t.Parallel()
	deadline, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	tests := []struct {
		ctx  context.Context
		err  error
		want string
	}{
		{nil, nil, ""},
		{nil, fmt.Errorf("x: %w", workers.ErrPoolFull), workers.CodePoolFull},
		{nil, &workers.BackoffError{Key: "k"}, workers.CodeBackoff},
		{nil, &workers.ExitError{}, workers.CodeWorkerExit},
		{nil, fmt.Errorf("%w: %w", context.DeadlineExceeded, &workers.ExitError{}), workers.CodeWorkerExit},
		{nil, context.DeadlineExceeded, workers.CodeTimeout},
		{deadline, fmt.Errorf("%w: write |1: i/o timeout", workers.ErrWriteFailed), workers.CodeTimeout},
		{context.Background(), fmt.Errorf("%w: broken pipe", workers.ErrWriteFailed), workers.CodeWriteFailed},
		{nil, context.Canceled, workers.CodeCanceled},
		{nil, workers.ErrSpawn, workers.CodeSpawnFailed},
		{nil, workers.ErrClosed, workers.CodeClosed},
		{nil, workers.ErrNotFound, workers.CodeNotFound},
		{nil, errors.New("something else"), workers.CodeOther},
	}
	for _, tt := range tests {
		if got := workers.ErrorCode(tt.ctx, tt.err); got != tt.want {
			t.Errorf("ErrorCode(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
