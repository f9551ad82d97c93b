package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	otelpyroscope "github.com/grafana/otel-profiling-go"

	"github.com/workerscope/workerscope/httpapi"
	"github.com/workerscope/workerscope/telemetry/otellogs"
	"github.com/workerscope/workerscope/telemetry/otelmetrics"
	"github.com/workerscope/workerscope/telemetry/otelsetup"
	"github.com/workerscope/workerscope/telemetry/oteltrace"
	"github.com/workerscope/workerscope/telemetry/profiling"
	"github.com/workerscope/workerscope/telemetry/report"
	"github.com/workerscope/workerscope/telemetry/sampler"
	"github.com/workerscope/workerscope/telemetry/webui"
	"github.com/workerscope/workerscope/workers"
)

// telemetryStack is the measuring side of the supervisor: one sampler
// feeding the OTel instruments (exported over OTLP and shown in Prometheus
// format) and the JSON report, plus continuous profiling.
type telemetryStack struct {
	sampler  *sampler.Sampler
	provider *otelsetup.Provider
	metrics  *otelmetrics.Metrics
	prom     http.Handler // Prometheus exposition of the same instruments
	profiler atomic.Pointer[profiling.Profiler]

	traceHook *oteltrace.Hook   // the Manager's Tracer, when tracing is wired
	traceOpts oteltrace.Options // what it was built with
}

// telemetryDeps are the values the stack reads from the rest of serve,
// each wired once here.
type telemetryDeps struct {
	mgr        *workers.Manager
	hook       *otelmetrics.Hook // the Manager's OnRPC, set before it was created
	traceHook  *oteltrace.Hook   // the Manager's Tracer (nil: none)
	logHook    *otellogs.Hook    // the Manager's OnStderr and OnLifecycle (nil: none)
	sseClients func() int64
	gauges     *otelmetrics.Gauges // an embedding application's own gauges; nil for none
	started    time.Time
	version    string
	sdkLog     *slog.Logger // the OTel SDK's own lines (component=otel); nil: the telemetry's logger
}

// startTelemetry builds sampler → provider → instruments, in that order,
// and attaches the hook.
func startTelemetry(ctx context.Context, cfg *config, d telemetryDeps, log *slog.Logger) (*telemetryStack, error) {
	t := &telemetryStack{}
	var err error
	t.sampler, err = sampler.New(d.mgr, sampler.Options{OnPass: d.hook.OnPass})
	if err != nil {
		return nil, err
	}
	promReader, promHandler, err := otelsetup.NewPrometheus()
	if err != nil {
		return nil, err
	}
	t.prom = promHandler
	// Live workers plus as many again still stopping (an evicted tree that
	// ignores SIGTERM stays until --stop-grace) and at least 2,000; the
	// SDK's per-instrument limit leaves room for two series per worker
	// (cpu.mode) and the pool-wide ones.
	workerSeries := max(2*cfg.MaxWorkers, 2000)
	t.provider, err = otelsetup.NewProvider(ctx, otelsetup.ProviderOptions{
		Version:          d.version,
		Getenv:           cfg.Getenv,
		Readers:          []sdkmetric.Reader{promReader},
		CardinalityLimit: 2*workerSeries + 96,
		RuntimeMetrics:   true,
		Logger:           log,
		SDKLogger:        d.sdkLog,
	})
	if err != nil {
		return nil, err
	}
	t.metrics, err = otelmetrics.NewMetrics(t.provider.Meter, otelmetrics.MetricsOptions{
		Sampler:               t.sampler,
		Stats:                 d.mgr,
		DropWorkerKey:         cfg.DropWorkerKey,
		MaxWorkerSeries:       workerSeries,
		SSEClients:            d.sseClients,
		ExportErrors:          t.provider.ExportErrors,
		ProfilingUploadErrors: func() uint64 { return t.profiler.Load().UploadErrors() },
		Limits:                d.mgr.Limits,
		Started:               d.started,
		Gauges:                d.gauges,
		Logger:                log,
		SessionTokenBudget:    cfg.SessionTokenBudget,
		SessionSpendBudgetUSD: cfg.SessionSpendBudgetUSD,
	})
	if err != nil {
		_ = t.provider.Shutdown(ctx)
		return nil, err
	}
	d.hook.Attach(t.metrics)
	// With no span exporter (OTEL_TRACES_EXPORTER=none, or the SDK
	// disabled) commands get no span at all: exemplars and last_commands'
	// trace ids would name traces nobody can look up.
	if d.traceHook != nil && t.provider.Tracing {
		t.traceHook = d.traceHook
		t.traceOpts = oteltrace.Options{
			TracerProvider: t.provider.TracerProvider,
			Version:        d.version,
			DropWorkerKey:  cfg.DropWorkerKey,
			AgentName:      agentName(cfg),
		}
		d.traceHook.Attach(oteltrace.New(t.traceOpts))
	}
	if d.logHook != nil {
		d.logHook.Attach(otellogs.New(otellogs.Options{
			LoggerProvider: t.provider.LoggerProvider,
			Version:        d.version,
			DropWorkerKey:  cfg.DropWorkerKey,
		}))
	}
	return t, nil
}

// startProfiling starts Pyroscope (off without a server address), tagged
// with the same service name and instance id as the metrics.
func (t *telemetryStack) startProfiling(cfg *config, version string, log *slog.Logger) error {
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
	prof, err := profiling.Start(profiling.Options{
		Getenv:                 getenv,
		DefaultApplicationName: t.provider.ServiceName,
		Version:                version,
		InstanceID:             t.provider.InstanceID,
		Logger:                 log,
	})
	if err != nil {
		return err
	}
	t.profiler.Store(prof)
	if prof.Enabled() && t.traceHook != nil && t.provider.Tracing {
		// Span profiles: CPU samples taken while a command's span is open
		// carry its span id, so Grafana links a slow span to its flame
		// graph (the span gets a pyroscope.profile.id attribute).
		opts := t.traceOpts
		opts.TracerProvider = otelpyroscope.NewTracerProvider(opts.TracerProvider)
		t.traceHook.Attach(oteltrace.New(opts))
		log.Info("span profiles on: the supervisor's CPU profiles carry the span ids of the commands it handles")
	}
	return nil
}

// mount registers the telemetry routes on the API's mux, behind its
// authentication.
func (t *telemetryStack) mount(api *httpapi.Server, d telemetryDeps) {
	api.Handle("GET /api/metrics", report.JSON(report.JSONOptions{
		Sampler:    t.sampler,
		Gauges:     d.gauges,
		SSEClients: d.sseClients,
		Limits:     d.mgr.Limits,
		Isolation:  d.mgr.Isolation,
		StderrTail: d.mgr.StderrTail,
		Version:    d.version,
		Started:    d.started,
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
	go func() { profErr <- t.profiler.Load().Stop(ctx) }()
	var errs []error
	if err := t.provider.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("telemetry: %w", err))
	}
	if err := <-profErr; err != nil {
		errs = append(errs, fmt.Errorf("profiling: %w", err))
	}
	return errors.Join(errs...)
}

// agentName is gen_ai.agent.name on invoke_agent spans: the worker
// program's name ("pi"), or demo-worker.
func agentName(cfg *config) string {
	if cfg.DemoWorker || len(cfg.WorkerCmd) == 0 {
		return "demo-worker"
	}
	return filepath.Base(cfg.WorkerCmd[0])
}
