//go:build linux

package oteltrace_test

import (
	"bytes"
	"context"
	"syscall"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/workerscope/workerscope/telemetry/oteltrace"
	"github.com/workerscope/workerscope/workers"
	"github.com/workerscope/workerscope/workers/workerstest"
)

func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCommandOverhead sends get_state to one demo worker at 1,000
// commands a second and reports the supervisor's CPU per command (the
// worker's is not counted): bare, with the cost reading (two targeted
// reads of the worker's tree), and with cost plus a sampled span exported
// through a batch processor. The differences are the overhead that
// docs/performance.md budgets.
//
// The +cgroup variants give the worker its own cgroup (Cgroups=required and
// a memory limit: a v2 group on cgroup v2, v1 memory and the unified
// membership group on a hybrid host), where a cost reading is the group's
// cpu.stat, memory and cgroup.procs instead of a walk of /proc; they are
// skipped where per-worker cgroups cannot be made.
func BenchmarkCommandOverhead(b *testing.B) {
	for _, v := range []struct {
		name                string
		cost, trace, cgroup bool
	}{{"bare", false, false, false}, {"cost", true, false, false}, {"cost+span", true, true, false},
		{"bare+cgroup", false, false, true}, {"cost+cgroup", true, false, true}} {
		b.Run(v.name, func(b *testing.B) {
			withCgroup := func(c *workers.Config) {
				if v.cgroup {
					c.Cgroups, c.MemoryMax = workers.CgroupsRequired, 1<<30
				}
			}
			if v.cgroup {
				probe, err := workers.New(workerstest.DemoConfig(withCgroup))
				if err != nil {
					b.Skipf("no per-worker cgroups: %v", err)
				}
				_ = probe.Close(context.Background())
			}
			m := workerstest.NewDemoManager(b, withCgroup, func(c *workers.Config) {
				if v.cost {
					c.OnRPC = func(workers.RPCResult) {}
				}
				if v.trace {
					tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
					b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
					c.Tracer = oteltrace.New(oteltrace.Options{TracerProvider: tp})
				}
			})
			ctx := context.Background()
			cmd := []byte(`{"type":"get_state"}`)
			for i := 0; i < 50; i++ { // spawn and warm up
				if _, err := m.Send(ctx, "bench", cmd); err != nil {
					b.Fatal(err)
				}
			}
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			b.ResetTimer()
			cpu0, t0 := selfCPU(), time.Now()
			for i := 0; i < b.N; i++ {
				<-tick.C
				if _, err := m.Send(ctx, "bench", cmd); err != nil {
					b.Fatal(err)
				}
			}
			cpu, wall := selfCPU()-cpu0, time.Since(t0)
			b.StopTimer()
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/cmd")
			b.ReportMetric(float64(b.N)/wall.Seconds(), "cmd/s")
		})
	}
}

// BenchmarkAgentEventOverhead measures the supervisor's CPU per event of
// an agent run, like BenchmarkCommandOverhead: one demo worker streams a
// run per iteration and the supervisor's own CPU (getrusage) is divided
// by the events it read. "stream" is the baseline: a run of plain
// message_update events (routing, the header parse, the command span's
// events). "agent" streams pi's model-call and tool-call events for the
// same number of events (message_start/_end with usage, tool_execution_*
// with args and result), decoded into ModelCall and ToolCall, made into
// chat and execute_tool spans and recorded as metrics (a no-op meter is
// not used: the spans go through a batch processor), without the tool
// calls' tree readings; "agent+toolcost" adds those (two targeted /proc
// readings per tool call). Each run has 8 events per tool turn.
func BenchmarkAgentEventOverhead(b *testing.B) {
	const turns = 25
	for _, v := range []struct {
		name            string
		agent, toolCost bool
	}{{"stream", false, false}, {"agent", true, false}, {"agent+toolcost", true, true}} {
		b.Run(v.name, func(b *testing.B) {
			var models, tools int
			m := workerstest.NewDemoManager(b, func(c *workers.Config) {
				tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
				b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
				c.Tracer = oteltrace.New(oteltrace.Options{TracerProvider: tp, AgentName: "demo-worker"})
				c.DisableCommandCost = !v.toolCost
				c.OnModelCall = func(workers.ModelCall) { models++ }
				c.OnToolCall = func(workers.ToolCall) { tools++ }
			})
			sub, err := m.Subscribe("bench", 4096)
			if err != nil {
				b.Fatal(err)
			}
			defer sub.Close()
			cmd := []byte(`{"type":"prompt","message":"bench","events":200,"cpu_ms":0}`)
			if v.agent {
				cmd = []byte(`{"type":"prompt","message":"bench","agent_events":true,"turns":25,"cpu_ms":0}`)
			}
			ctx := context.Background()
			run := func() int {
				for { // the demo worker refuses a prompt until its last run has wound down
					resp, err := m.Send(ctx, "bench", cmd)
					if err != nil {
						b.Fatal(err)
					}
					if bytes.Contains(resp, []byte(`"success":true`)) {
						break
					}
					time.Sleep(time.Millisecond)
				}
				n := 0
				for ev := range sub.C {
					n++
					if ev.Type == "agent_end" {
						return n
					}
				}
				b.Fatal("subscription closed")
				return 0
			}
			for i := 0; i < 3; i++ { // spawn and warm up
				run()
			}
			b.ResetTimer()
			events := 0
			cpu0 := selfCPU()
			for i := 0; i < b.N; i++ {
				events += run()
			}
			cpu := selfCPU() - cpu0
			b.StopTimer()
			b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(events), "cpu-µs/event")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/run")
			b.ReportMetric(float64(events)/float64(b.N), "events/run")
		})
	}
}
