package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	otelpyroscope "github.com/grafana/otel-profiling-go"

	"github.com/workerscope/workerscope/httpapi"
	"github.com/workerscope/workerscope/telemetry/otellogs"
	"github.com/workerscope/workerscope/telemetry/otelmetrics"
	"github.com/workerscope/workerscope/telemetry/otelmetrics/workerseries"
	"github.com/workerscope/workerscope/telemetry/otelsetup"
	"github.com/workerscope/workerscope/telemetry/oteltrace"
	"github.com/workerscope/workerscope/telemetry/profiling"
	"github.com/workerscope/workerscope/telemetry/report"
	"github.com/workerscope/workerscope/telemetry/sampler"
	"github.com/workerscope/workerscope/telemetry/webui"
	"github.com/workerscope/workerscope/workers"
)

// telemetryStack is the measuring side of the supervisor, built in the
// order the data flows: the provider (exporters and readers) and
// profiling first; then what the Manager reports to as things happen (the
// Recorder's instruments, the command tracer, the worker-log emitter);
// then, once the Manager exists, the sampler reading it and the
// observable instruments reading the sampler (observe).
type telemetryStack struct {
	provider *otelsetup.Provider
	prom     http.Handler // Prometheus exposition of the same instruments
	profiler *profiling.Profiler
	recorder *otelmetrics.Recorder
	series   *workerseries.Series // the per-worker series, produced for every reader
	tracer   *oteltrace.Tracer    // nil: commands get no span
	logs     *otellogs.Logger     // nil: worker logs are not exported
	// Set by observe.
	sampler *sampler.Sampler
	metrics *otelmetrics.Metrics
}

// startTelemetry builds provider → profiling → recorder, tracer and
// worker-log emitter. log is the telemetry's logger, sdkLog takes the
// OTel SDK's own lines (component=otel).
func startTelemetry(ctx context.Context, cfg *config, version string, log, sdkLog *slog.Logger) (*telemetryStack, error) {
	t := &telemetryStack{series: workerseries.New(instrumentation.Scope{Name: otelsetup.MeterName, Version: version})}
	promReader, promHandler, err := otelsetup.NewPrometheus(t.series.Producer)
	if err != nil {
		return nil, err
	}
	t.prom = promHandler
	t.provider, err = otelsetup.NewProvider(ctx, otelsetup.ProviderOptions{
		Version:          version,
		Getenv:           cfg.Getenv,
		Readers:          []sdkmetric.Reader{promReader},
		Producers:        []otelsetup.ReaderProducer{t.series.Producer},
		CardinalityLimit: 2*workerSeries(cfg) + 96,
		RuntimeMetrics:   true,
		Logger:           log,
		SDKLogger:        sdkLog,
	})
	if err != nil {
		return nil, err
	}
	if err := t.start(cfg, version, log); err != nil {
		abortStart(t, nil)
		return nil, err
	}
	return t, nil
}

// workerSeries is the per-worker series cap: live workers plus as many
// again still stopping (an evicted tree that ignores SIGTERM stays until
// --stop-grace), at least 2,000. The SDK's per-instrument limit leaves
// room for two series per worker (cpu.mode) and the pool-wide ones.
func workerSeries(cfg *config) int { return max(2*cfg.Worker.MaxWorkers, 2000) }

// start builds what comes after the provider.
func (t *telemetryStack) start(cfg *config, version string, log *slog.Logger) error {
	var err error
	if t.profiler, err = startProfiling(cfg, t.provider, version, log.With("component", "profiling")); err != nil {
		return err
	}
	if t.recorder, err = otelmetrics.NewRecorder(t.provider.Meter); err != nil {
		return err
	}
	// With no span exporter (OTEL_TRACES_EXPORTER=none, or the SDK
	// disabled) commands get no span at all: exemplars and last_commands'
	// trace ids would name traces nobody can look up.
	if t.provider.Tracing {
		opts := oteltrace.Options{
			TracerProvider: t.provider.TracerProvider,
			Version:        version,
			DropWorkerKey:  cfg.DropWorkerKey,
			AgentName:      agentName(cfg),
		}
		if t.profiler.Enabled() {
			// Span profiles: CPU samples taken while a command's span is
			// open carry its span id, so Grafana links a slow span to its
			// flame graph (the span gets a pyroscope.profile.id attribute).
			opts.TracerProvider = otelpyroscope.NewTracerProvider(opts.TracerProvider)
			log.Info("span profiles on: the supervisor's CPU profiles carry the span ids of the commands it handles")
		}
		t.tracer = oteltrace.New(opts)
	}
	if otelsetup.LogsEnabled(cfg.Getenv) {
		t.logs = otellogs.New(otellogs.Options{
			LoggerProvider: t.provider.LoggerProvider,
			Version:        version,
			DropWorkerKey:  cfg.DropWorkerKey,
		})
	}
	return nil
}

// wire makes the Manager report to the telemetry: commands, runs, model
// and tool calls to the Recorder, commands to the tracer, stderr lines and
// lifecycle events to the worker-log emitter.
func (t *telemetryStack) wire(c *workers.Config) {
	c.OnRPC, c.OnRun = t.recorder.RecordRPC, t.recorder.RecordRun
	c.OnModelCall, c.OnToolCall = t.recorder.RecordModelCall, t.recorder.RecordToolCall
	if t.tracer != nil {
		c.Tracer = t.tracer
	}
	if t.logs != nil {
		c.OnStderr, c.OnLifecycle = t.logs.Stderr, t.logs.Lifecycle
	}
}

// observed are the sources the observable instruments read besides the
// Manager.
type observed struct {
	sseClients func() int64
	gauges     *otelmetrics.Gauges // an embedding application's own gauges; nil for none
	started    time.Time
}

// observe builds the sampler over mgr and the observable instruments
// reading it.
func (t *telemetryStack) observe(cfg *config, mgr *workers.Manager, o observed, log *slog.Logger) error {
	var err error
	t.sampler, err = sampler.New(mgr, sampler.Options{OnPass: t.recorder.RecordSamplerPass})
	if err != nil {
		return err
	}
	t.metrics, err = otelmetrics.NewMetrics(t.provider.Meter, otelmetrics.MetricsOptions{
		Sampler:               t.sampler,
		Stats:                 mgr,
		DropWorkerKey:         cfg.DropWorkerKey,
		MaxWorkerSeries:       workerSeries(cfg),
		SSEClients:            o.sseClients,
		ExportErrors:          t.provider.ExportErrors,
		ProfilingUploadErrors: t.profiler.UploadErrors,
		Limits:                mgr.Limits,
		Started:               o.started,
		Gauges:                o.gauges,
		Logger:                log,
		SessionTokenBudget:    cfg.Worker.SessionTokenBudget,
		SessionSpendBudgetUSD: cfg.Worker.SessionSpendBudgetUSD,
		WorkerSeries:          t.series,
	})
	return err
}

// startProfiling starts Pyroscope (off without a server address), tagged
// with the same service name and instance id as the metrics.
func startProfiling(cfg *config, provider *otelsetup.Provider, version string, log *slog.Logger) (*profiling.Profiler, error) {
	// --pyroscope-server and --pyroscope-app are resolved already (a flag
	// given empty wins over the variable): profiling reads them as such.
	getenv := func(k string) string {
		switch k {
		case "PYROSCOPE_SERVER_ADDRESS":
			return cfg.PyroscopeServer
		case "PYROSCOPE_APPLICATION_NAME":
			return cfg.PyroscopeApp
		}
		return cfg.Getenv(k)
	}
	return profiling.Start(profiling.Options{
		Getenv:                 getenv,
		DefaultApplicationName: provider.ServiceName,
		Version:                version,
		InstanceID:             provider.InstanceID,
		Logger:                 log,
	})
}

// mount registers the telemetry routes on the API's mux, behind its
// authentication.
func (t *telemetryStack) mount(api *httpapi.Server, mgr *workers.Manager, o observed, version string) {
	api.Handle("GET /api/metrics", report.JSON(report.JSONOptions{
		Sampler:    t.sampler,
		Gauges:     o.gauges,
		SSEClients: o.sseClients,
		Limits:     mgr.Limits,
		Isolation:  mgr.Isolation,
		StderrTail: mgr.StderrTail,
		Version:    version,
		Started:    o.started,
	}))
	api.Handle("/api/debug/pprof/", report.Pprof())
	prom := t.prom
	if t.provider.Disabled {
		prom = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "Prometheus exposition is off: the OpenTelemetry SDK is disabled (OTEL_SDK_DISABLED=true)", http.StatusServiceUnavailable)
		})
	}
	api.Handle("GET /metrics", report.Negotiate(webui.Handler(), prom))
}

// shutdown sends the last export and the last profile upload, sharing one
// bounded wait (ctx).
func (t *telemetryStack) shutdown(ctx context.Context) error {
	profErr := make(chan error, 1)
	go func() { profErr <- t.profiler.Stop(ctx) }()
	var errs []error
	if err := t.provider.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("telemetry: %w", err))
	}
	if err := <-profErr; err != nil {
		errs = append(errs, fmt.Errorf("profiling: %w", err))
	}
	if t.sampler != nil { // after the last export's pass
		if err := t.sampler.Close(); err != nil {
			errs = append(errs, fmt.Errorf("sampler: %w", err))
		}
	}
	return errors.Join(errs...)
}

// agentName is gen_ai.agent.name on invoke_agent spans: the worker
// program's name ("pi"), or demo-worker.
func agentName(cfg *config) string {
	if cfg.DemoWorker || len(cfg.Worker.Command) == 0 {
		return "demo-worker"
	}
	return filepath.Base(cfg.Worker.Command[0])
}
