//go:build linux

package oteltrace_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/workerscope/workerscope/internal/modelstub"
	"github.com/workerscope/workerscope/telemetry/attrkey"
	"github.com/workerscope/workerscope/telemetry/oteltrace"
	"github.com/workerscope/workerscope/workers"
)

// piPrice is the scripted model's price in pi's models.json ($ per
// million tokens).
var piPrice = modelstub.Price{Input: 3, Output: 15, CacheRead: 0.3}

// piRig is the real pi, pointed at a scripted model, under a Manager whose
// command spans go to a span recorder.
type piRig struct {
	m    *workers.Manager
	rec  *tracetest.SpanRecorder
	srv  *modelstub.Server
	dir  string
	sub  *workers.Subscription
	key  string
	ctx  context.Context
	done func()
}

func startPi(t *testing.T, script []modelstub.Reply, mut func(*workers.Config)) *piRig {
	t.Helper()
	pi, err := exec.LookPath("pi")
	if err != nil {
		if os.Getenv("WORKERSCOPE_PI") == "required" { // as in CI
			t.Fatal("pi not on PATH")
		}
		t.Skip("pi not on PATH; install with: npm install -g @mariozechner/pi-coding-agent@0.73.1")
	}
	dir := t.TempDir()
	srv := modelstub.Start(script)
	t.Cleanup(srv.Close)
	env, err := modelstub.PiAgentDir(filepath.Join(dir, "agent"), srv.URL, "scripted", "m1", piPrice)
	if err != nil {
		t.Fatal(err)
	}
	tr, rec := newTracer(t, oteltrace.Options{AgentName: "pi"})
	cfg := workers.Config{
		Command:            []string{pi, "--mode", "rpc", "--no-session", "--provider", "scripted", "--model", "m1"},
		Env:                append(env, "HOME="+dir),
		Dir:                dir,
		Tracer:             tr,
		StopGrace:          3 * time.Second,
		CostSampleInterval: 200 * time.Millisecond,
		Logger:             slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mut != nil {
		mut(&cfg)
	}
	m, err := workers.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(func() {
		cancel()
		cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ccancel()
		if err := m.Close(cctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	sub, err := m.Subscribe("pi", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Close)
	return &piRig{m: m, rec: rec, srv: srv, dir: dir, sub: sub, key: "pi", ctx: ctx}
}

// prompt sends a prompt and waits for its run's agent_end.
func (r *piRig) prompt(t *testing.T, msg string) {
	t.Helper()
	raw, err := r.m.Send(r.ctx, r.key, []byte(fmt.Sprintf(`{"type":"prompt","message":%q}`, msg)))
	if err != nil || !strings.Contains(string(raw), `"success":true`) {
		t.Fatalf("prompt: %s, %v", raw, err)
	}
	for {
		select {
		case ev, ok := <-r.sub.C:
			if !ok {
				t.Fatal("subscription closed")
			}
			if ev.Type == "agent_end" {
				return
			}
		case <-r.ctx.Done():
			t.Fatal("no agent_end")
		}
	}
}

// runSpan waits for the invoke_agent span (the prompt's, renamed) and
// returns it with its children, in the order they ended.
func (r *piRig) runSpan(t *testing.T) (sdktrace.ReadOnlySpan, []sdktrace.ReadOnlySpan) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ended := r.rec.Ended()
		for _, s := range ended {
			if s.Name() == "invoke_agent pi" {
				var kids []sdktrace.ReadOnlySpan
				for _, k := range ended {
					if k.Parent().SpanID() == s.SpanContext().SpanID() {
						kids = append(kids, k)
					}
				}
				return s, kids
			}
		}
		if time.Now().After(deadline) {
			var names []string
			for _, s := range ended {
				names = append(names, s.Name())
			}
			t.Fatalf("no invoke_agent span; spans %v", names)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// readStatCPU is utime+stime of the /proc/PID/stat line in path.
func readStatCPU(t *testing.T, path string) time.Duration {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		t.Fatalf("stat %q", s)
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return time.Duration(u+st) * 10 * time.Millisecond
}

// TestRealPiGenAISpans runs the real pi against a scripted model that asks
// for the bash tool with a CPU burn and then answers: the prompt's span
// is invoke_agent with a chat span per model call and an execute_tool
// span for the tool; the chat spans carry exactly the tokens the model
// reported and the cost pi computed from models.json's price; the tool
// span's CPU is within 10 % of the burn's own CPU, which the burning shell
// reads from its own /proc/PID/stat as it ends.
func TestRealPiGenAISpans(t *testing.T) {
	stat := filepath.Join(t.TempDir(), "burn.stat")
	// A shell loop (no children) of a fixed amount of work (about 4 s of
	// CPU), then its own CPU time, read by the shell itself (cat is its
	// child and reads the parent's stat: $$). pi itself spends about a
	// quarter of a second of CPU around each bash call (measured: ~0.25 s
	// for a `sleep 2`); that is in the tool's tree cost too, and the burn
	// is large enough for it to stay under 10 %.
	burn := fmt.Sprintf(`i=0; while [ $i -lt 2000000 ]; do i=$((i+1)); done; cat /proc/$$/stat > %s`, stat)
	u1 := modelstub.Usage{Prompt: 1200, Completion: 40, Cached: 200}
	u2 := modelstub.Usage{Prompt: 1500, Completion: 12, Cached: 1000}
	r := startPi(t, []modelstub.Reply{
		{ToolCalls: []modelstub.ToolCall{{ID: "call_burn", Name: "bash", Arguments: map[string]any{"command": burn}}}, Usage: u1, Delay: 150 * time.Millisecond},
		{Text: "The burn is done.", Usage: u2, Delay: 50 * time.Millisecond},
	}, nil)
	r.prompt(t, "burn some CPU, then say so")
	root, kids := r.runSpan(t)
	var names []string
	for _, k := range kids {
		names = append(names, k.Name())
	}
	if want := []string{"chat m1", "execute_tool bash", "chat m1"}; !slices.Equal(names, want) {
		t.Fatalf("children %v, want %v", names, want)
	}
	chat1, tool, chat2 := kids[0], kids[1], kids[2]
	if !(chat1.EndTime().Compare(tool.StartTime()) <= 0 && tool.EndTime().Compare(chat2.StartTime()) <= 0) {
		t.Errorf("steps overlap: chat %s–%s, tool %s–%s, chat %s–%s", chat1.StartTime(), chat1.EndTime(),
			tool.StartTime(), tool.EndTime(), chat2.StartTime(), chat2.EndTime())
	}
	for i, c := range []struct {
		s sdktrace.ReadOnlySpan
		u modelstub.Usage
		f string
	}{{chat1, u1, "toolUse"}, {chat2, u2, "stop"}} {
		wantAttrs(t, c.s, map[string]any{
			"gen_ai.provider.name": "scripted", "gen_ai.request.model": "m1",
			"gen_ai.usage.input_tokens": int64(c.u.Prompt), "gen_ai.usage.output_tokens": int64(c.u.Completion),
			"gen_ai.usage.cache_read.input_tokens": int64(c.u.Cached), "gen_ai.response.finish_reasons": []string{c.f},
		})
		got := attrs(c.s)[attrkey.GenAICost].AsFloat64()
		if want := piPrice.Cost(c.u); math.Abs(got-want) > 1e-12 {
			t.Errorf("chat %d cost $%g, want $%g (the scripted usage at models.json's price)", i, got, want)
		}
	}
	wantAttrs(t, tool, map[string]any{"gen_ai.tool.name": "bash", "gen_ai.tool.call.id": "call_burn"})
	if _, ok := attrs(tool)["gen_ai.tool.call.arguments"]; ok {
		t.Error("tool arguments recorded without the content opt-in")
	}
	burnCPU := readStatCPU(t, stat)
	toolCPU := time.Duration(attrs(tool)[attrkey.CostCPU].AsFloat64() * float64(time.Second))
	// The tree's CPU over the tool's interval: the burn, plus what pi
	// itself did meanwhile (start the shell, wait); clock ticks (10 ms)
	// on each reading.
	t.Logf("tool span cpu %s, the burn's own /proc %s", toolCPU, burnCPU)
	if burnCPU < time.Second {
		t.Fatalf("the burn used only %s of CPU", burnCPU)
	}
	if lo, hi := burnCPU-20*time.Millisecond, burnCPU+burnCPU/10; toolCPU < lo || toolCPU > hi {
		t.Errorf("tool span cpu %s, want the burn's %s within 10%% (%s–%s)", toolCPU, burnCPU, lo, hi)
	}
	total := piPrice.Cost(u1) + piPrice.Cost(u2)
	wantAttrs(t, root, map[string]any{
		"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "pi", "gen_ai.conversation.id": "pi",
		"gen_ai.usage.input_tokens": int64(u1.Prompt + u2.Prompt), "gen_ai.usage.output_tokens": int64(u1.Completion + u2.Completion),
		attrkey.GenAIModelCalls: int64(2), attrkey.GenAIToolCalls: int64(1), attrkey.RPCMethod: "prompt",
	})
	if got := attrs(root)[attrkey.GenAICost].AsFloat64(); math.Abs(got-total) > 1e-12 {
		t.Errorf("run cost $%g, want $%g", got, total)
	}
	if st := r.m.Stats(); st.AgentEventsSkipped != 0 {
		t.Errorf("%d of pi's agent events skipped", st.AgentEventsSkipped)
	}
}

// TestRealPiBudgetAborts: a spend budget the first model call goes past
// aborts the real pi's run in the tool it started (a 60 s sleep): the run
// ends long before the sleep would, its span says budget_exceeded, and
// the next prompt is refused until the session is reset.
func TestRealPiBudgetAborts(t *testing.T) {
	u := modelstub.Usage{Prompt: 100000, Completion: 1000}
	budget := piPrice.Cost(u) / 2
	r := startPi(t, []modelstub.Reply{
		{ToolCalls: []modelstub.ToolCall{{ID: "call_sleep", Name: "bash", Arguments: map[string]any{"command": "sleep 60"}}}, Usage: u},
		{Text: "done", Usage: modelstub.Usage{Prompt: 10, Completion: 1}},
	}, func(c *workers.Config) { c.SessionSpendBudgetUSD = budget })
	start := time.Now()
	r.prompt(t, "sleep")
	took := time.Since(start)
	root, _ := r.runSpan(t)
	if took > 30*time.Second {
		t.Errorf("the run took %s: not aborted", took)
	}
	wantAttrs(t, root, map[string]any{attrkey.ErrorType: workers.CodeBudgetExceeded, attrkey.Budget: workers.BudgetSpend})
	if root.Status().Code != codes.Error {
		t.Errorf("status %v", root.Status())
	}
	_, err := r.m.Send(r.ctx, r.key, []byte(`{"type":"prompt","message":"more"}`))
	if !errors.Is(err, workers.ErrBudgetExceeded) {
		t.Fatalf("prompt past the budget: %v, want ErrBudgetExceeded", err)
	}
	if n := r.srv.Calls(); n != 1 {
		t.Errorf("the model was called %d times, want once (the abort ends the run)", n)
	}
	t.Logf("aborted after %s; span attributes %v", took, filterAttrs(root.Attributes(), "gen_ai.", "workerscope.budget"))
}

func filterAttrs(kvs []attribute.KeyValue, prefixes ...string) []attribute.KeyValue {
	var out []attribute.KeyValue
	for _, kv := range kvs {
		for _, p := range prefixes {
			if strings.HasPrefix(string(kv.Key), p) {
				out = append(out, kv)
				break
			}
		}
	}
	return out
}
