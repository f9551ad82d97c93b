package otelmetrics

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/workerscope/workerscope/telemetry/attrkey"
	"github.com/workerscope/workerscope/workers"
)

// Recorder holds the synchronous instruments: it records what happens
// between collections (commands and their runs, model and tool calls,
// sampling passes) as the Manager and the Sampler report it. It needs
// nothing but a meter, so it exists before them: pass its methods as
// workers.Config.OnRPC, OnRun, OnModelCall, OnToolCall and
// sampler.Options.OnPass.
type Recorder struct {
	in recorded

	cmdMu    sync.Mutex
	commands map[string]attribute.KeyValue // bounded set of command types seen

	genai genaiAttrs // bounded sets of models and tools seen (genai.go)
}

// rpcSystem is rpc.system.name on every command's and run's points.
var rpcSystem = attribute.String(attrkey.RPCSystem, attrkey.RPCSystemJSONL)

// NewRecorder registers the contract's synchronous instruments on meter.
func NewRecorder(meter metric.Meter) (*Recorder, error) {
	in, err := registerRecorded(meter)
	if err != nil {
		return nil, err
	}
	return &Recorder{in: in, commands: make(map[string]attribute.KeyValue), genai: newGenAIAttrs()}, nil
}

// RecordRPC records one finished command: its duration, and the CPU its
// worker's tree used when measured. It records with the command's context,
// so that a sampled span becomes the duration's exemplar. Use it as
// workers.Config.OnRPC.
func (m *Recorder) RecordRPC(r workers.RPCResult) {
	method := m.methodAttr(r.Type)
	opt := metric.WithAttributes(rpcSystem, method)
	if r.ErrorType != "" {
		opt = metric.WithAttributes(rpcSystem, method, attribute.String(attrkey.ErrorType, r.ErrorType))
	}
	ctx := r.Context
	if ctx == nil {
		ctx = context.Background()
	}
	m.in.rpcDuration.Record(ctx, r.Duration.Seconds(), opt)
	if r.Cost != nil {
		m.in.rpcCPUTime.Record(ctx, r.Cost.CPU().Seconds(), opt)
	}
}

// RecordRun records the streamed run that followed a command (r.Run; a
// result without one is ignored): its duration from the command's arrival
// and the CPU its worker's tree used meanwhile. Use it as
// workers.Config.OnRun.
func (m *Recorder) RecordRun(r workers.RPCResult) {
	if r.Run == nil {
		return
	}
	method := m.methodAttr(r.Type)
	opt := metric.WithAttributes(rpcSystem, method)
	switch {
	case r.Run.Budget != "":
		opt = metric.WithAttributes(rpcSystem, method, attribute.String(attrkey.ErrorType, workers.CodeBudgetExceeded))
	case r.Run.End == workers.RunEndWorkerExit:
		opt = metric.WithAttributes(rpcSystem, method, attribute.String(attrkey.ErrorType, workers.CodeWorkerExit))
	}
	ctx := r.Context
	if ctx == nil {
		ctx = context.Background()
	}
	m.in.runDuration.Record(ctx, r.Run.Duration.Seconds(), opt)
	if r.Run.Cost != nil {
		m.in.runCPUTime.Record(ctx, r.Run.Cost.CPU().Seconds(), opt)
	}
}

// methodAttr bounds rpc.method: command types come from clients, so only
// the first maxCommandTypes distinct ones get a series.
func (m *Recorder) methodAttr(typ string) attribute.KeyValue {
	m.cmdMu.Lock()
	defer m.cmdMu.Unlock()
	if kv, ok := m.commands[typ]; ok {
		return kv
	}
	if typ == "" || len(m.commands) >= maxCommandTypes {
		return attribute.String(attrkey.RPCMethod, otherMethod)
	}
	kv := attribute.String(attrkey.RPCMethod, typ)
	m.commands[typ] = kv
	return kv
}

// RecordSamplerPass records one sampling pass. Use it as
// sampler.Options.OnPass.
func (m *Recorder) RecordSamplerPass(took time.Duration, _ int) {
	m.in.samplerDuration.Record(context.Background(), took.Seconds())
}
