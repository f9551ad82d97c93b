//go:build linux

package workers_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/testutil"
	"github.com/workerscope/workerscope/workers"
)

// runRecorder collects what OnRPC and OnRun receive.
type runRecorder struct {
	mu         sync.Mutex
	rpcs, runs []workers.RPCResult
}

func (r *runRecorder) onRPC(x workers.RPCResult) {
	r.mu.Lock()
	r.rpcs = append(r.rpcs, x)
	r.mu.Unlock()
}
func (r *runRecorder) onRun(x workers.RPCResult) {
	r.mu.Lock()
	r.runs = append(r.runs, x)
	r.mu.Unlock()
}

func (r *runRecorder) get() (rpcs, runs []workers.RPCResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.rpcs), slices.Clone(r.runs)
}

func runConfig(t *testing.T, tr *recTracer, rec *runRecorder) workers.Config {
	cfg := demoConfig(t)
	cfg.Tracer = tr
	cfg.CostSampleInterval = 100 * time.Millisecond
	cfg.OnRPC = rec.onRPC
	cfg.OnRun = rec.onRun
	return cfg
}

// spanOf waits until the i-th span has ended and returns it.
func spanOf(t *testing.T, tr *recTracer, i int) (*recSpan, workers.RPCResult, []string) {
	t.Helper()
	var s *recSpan
	waitUntil(t, 20*time.Second, func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		if len(tr.spans) <= i {
			return false
		}
		s = tr.spans[i]
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.ended > 0
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended != 1 {
		t.Errorf("span %d (%s) ended %d times", i, s.typ, s.ended)
	}
	return s, s.result, slices.Clone(s.events)
}

// TestPromptRunCost: pi's prompt (and the demo worker's) answers at once
// and then works until agent_end. Its span stays open for the run and
// carries the whole run's cost; OnRPC reports the response, OnRun the run.
func TestPromptRunCost(t *testing.T) {
	tr, rec := &recTracer{}, &runRecorder{}
	m := newManager(t, runConfig(t, tr, rec))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The truth: the worker's CPU read from /proc by the test before the
	// prompt and after its run has ended (the worker idles after
	// agent_end).
	if _, err := m.Send(ctx, "p", []byte(`{"type":"get_state"}`)); err != nil {
		t.Fatal(err)
	}
	pid := m.Snapshot()[0].PID
	before := testutil.ReadTreeCPU(t, pid)
	if _, err := m.Send(ctx, "p", []byte(`{"type":"prompt","message":"hi","cpu_ms":500,"events":3}`)); err != nil {
		t.Fatal(err)
	}
	s, r, events := spanOf(t, tr, 1)
	truth := testutil.ReadTreeCPU(t, pid).Sub(before)
	if s.typ != "prompt" || r.Run == nil {
		t.Fatalf("span %s ended with run %+v, want the prompt's run", s.typ, r.Run)
	}
	if r.Run.End != workers.RunEndAgentEnd {
		t.Errorf("run ended by %q, want agent_end", r.Run.End)
	}
	if r.Run.Cost == nil || r.Cost == nil {
		t.Fatalf("run cost %v, response cost %v: want both measured", r.Run.Cost, r.Cost)
	}
	cpu := r.Run.Cost.CPU()
	t.Logf("response after %s (cpu %s); run %s, cpu %s, %d events %v; /proc: %s", r.Duration, r.Cost.CPU(), r.Run.Duration, cpu, r.Run.Events, events, truth.Total())
	// The test's window holds the run's; outside it the idle worker uses
	// well under a tick.
	const outside = 10 * time.Millisecond
	if tol := testutil.CPUSlack(truth.Processes) + outside; cpu < truth.Total()-tol || cpu > truth.Total()+tol || cpu <= 0 {
		t.Errorf("run cpu %s, want the worker's %s ±%s read from /proc around the run", cpu, truth.Total(), tol)
	}
	if r.Cost.CPU() > r.Run.Cost.CPU() || r.Duration > r.Run.Duration {
		t.Errorf("response (%s, %s) not within the run (%s, %s)", r.Duration, r.Cost.CPU(), r.Run.Duration, r.Run.Cost.CPU())
	}
	if r.Run.Cost.Shared {
		t.Error("a lone prompt's run marked shared")
	}
	if want := []string{"agent_start", "message_update", "message_update", "message_update", "agent_end"}; !slices.Equal(events, want) || r.Run.Events != len(want) {
		t.Errorf("span events %v (counted %d), want %v", events, r.Run.Events, want)
	}
	rpcs, runs := rec.get()
	if len(rpcs) != 2 || rpcs[1].Run != nil || rpcs[1].Duration != r.Duration { // get_state's, then the prompt's response
		t.Errorf("OnRPC got %+v, want get_state's and the prompt's response only", rpcs)
	}
	if len(runs) != 1 || runs[0].Run == nil || runs[0].Run.End != workers.RunEndAgentEnd || runs[0].Context.Value(ctxKey{}) == nil {
		t.Errorf("OnRun got %+v, want the run with the span's context", runs)
	}
	last := m.Snapshot()[0].LastCommands
	if len(last) != 2 || !last[1].Run || !last[1].HasCost || last[1].CPU != r.Run.Cost.CPU() || last[1].Duration != r.Run.Duration {
		t.Errorf("last commands %+v, want the run", last)
	}
}

// TestPromptRunEnds: a run ends at agent_end after an abort, at the
// worker's exit (measured up to the last reading), and at MaxRunDuration;
// a prompt rejected while another runs, or a command that is not a run
// command, ends at its response.
func TestPromptRunEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	send := func(m *workers.Manager, key, cmd string) {
		t.Helper()
		if _, err := m.Send(ctx, key, []byte(cmd)); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("abort", func(t *testing.T) {
		tr, rec := &recTracer{}, &runRecorder{}
		m := newManager(t, runConfig(t, tr, rec))
		send(m, "a", `{"type":"prompt","cpu_ms":20000,"events":200}`)
		waitUntil(t, 10*time.Second, func() bool { return m.Snapshot()[0].State == workers.StateRunning })
		send(m, "a", `{"type":"prompt","cpu_ms":10}`) // rejected: "already processing"
		send(m, "a", `{"type":"abort"}`)
		_, r, _ := spanOf(t, tr, 0)
		if r.Run == nil || r.Run.End != workers.RunEndAgentEnd {
			t.Errorf("aborted prompt: run %+v, want ended by agent_end", r.Run)
		}
		if r.Run != nil && (r.Run.Cost == nil || !r.Run.Cost.Shared) {
			t.Errorf("aborted prompt's cost %+v: want measured, shared with the commands sent during it", r.Run.Cost)
		}
		for i, typ := range []string{"prompt", "abort"} {
			s, r, _ := spanOf(t, tr, i+1)
			if s.typ != typ || r.Run != nil {
				t.Errorf("span %d: %s with run %+v, want %s ended at its response", i+1, s.typ, r.Run, typ)
			}
		}
		_, runs := rec.get()
		if len(runs) != 1 {
			t.Errorf("OnRun called %d times, want once", len(runs))
		}
	})

	t.Run("worker_exit", func(t *testing.T) {
		tr, rec := &recTracer{}, &runRecorder{}
		m := newManager(t, runConfig(t, tr, rec))
		send(m, "x", `{"type":"prompt","cpu_ms":20000,"events":200}`)
		waitUntil(t, 10*time.Second, func() bool {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			s := tr.spans[0]
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.events) >= 3 // a few readings into the run
		})
		time.Sleep(300 * time.Millisecond)
		if err := m.Stop(ctx, "x"); err != nil {
			t.Fatal(err)
		}
		_, r, _ := spanOf(t, tr, 0)
		if r.Run == nil || r.Run.End != workers.RunEndWorkerExit {
			t.Fatalf("run %+v, want ended by the worker's exit", r.Run)
		}
		if r.Run.Cost == nil || r.Run.Cost.CPU() <= 0 {
			t.Errorf("run cost %+v, want the CPU up to the last reading", r.Run.Cost)
		}
	})

	t.Run("max_duration", func(t *testing.T) {
		tr, rec := &recTracer{}, &runRecorder{}
		cfg := runConfig(t, tr, rec)
		cfg.MaxRunDuration = 500 * time.Millisecond
		m := newManager(t, cfg)
		send(m, "d", `{"type":"prompt","cpu_ms":20000,"events":200}`)
		_, r, _ := spanOf(t, tr, 0)
		if r.Run == nil || r.Run.End != workers.RunEndMaxDuration || r.Run.Cost == nil {
			t.Errorf("run %+v, want ended at the bound with its cost", r.Run)
		}
		// The worker keeps streaming the run; the next prompt is refused
		// and starts nothing.
		send(m, "d", `{"type":"get_state"}`)
		if _, r, _ := spanOf(t, tr, 1); r.Run != nil {
			t.Errorf("get_state has run %+v", r.Run)
		}
	})

	t.Run("no_run", func(t *testing.T) {
		tr, rec := &recTracer{}, &runRecorder{}
		cfg := runConfig(t, tr, rec)
		cfg.RunCommands = []string{"get_state"}
		cfg.RunStartWait = 200 * time.Millisecond
		m := newManager(t, cfg)
		send(m, "n", `{"type":"get_state"}`)
		_, r, _ := spanOf(t, tr, 0)
		if r.Run != nil || r.Start.IsZero() || r.Duration <= 0 {
			t.Errorf("a run command without agent_start: run %+v, start %v, duration %s; want none, ended at its response", r.Run, r.Start, r.Duration)
		}
		if _, runs := rec.get(); len(runs) != 0 {
			t.Errorf("OnRun got %+v", runs)
		}
	})

	t.Run("off", func(t *testing.T) {
		tr, rec := &recTracer{}, &runRecorder{}
		cfg := runConfig(t, tr, rec)
		cfg.MaxRunDuration = -1
		m := newManager(t, cfg)
		send(m, "o", `{"type":"prompt","cpu_ms":300}`)
		tr.mu.Lock()
		s := tr.spans[0]
		tr.mu.Unlock()
		s.mu.Lock()
		ended, run := s.ended, s.result.Run
		s.mu.Unlock()
		if ended != 1 || run != nil {
			t.Errorf("with runs off, the prompt's span ended %d times before Send returned, run %+v", ended, run)
		}
	})
}
