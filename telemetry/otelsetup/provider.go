package otelsetup

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/workerscope/workerscope/internal/faillog"
	"github.com/workerscope/workerscope/internal/proflabel"
	"go.opentelemetry.io/contrib/instrumentation/runtime"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otellog "go.opentelemetry.io/otel/log"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0" // the version resource.Default() of sdk v1.47 uses
	"go.opentelemetry.io/otel/trace"
)

// MeterName is the name of the scope of workerscope's instruments
// (Provider.Meter); its version is ProviderOptions.Version.
const MeterName = "github.com/workerscope/workerscope/telemetry"

// ProviderOptions configures the MeterProvider and its OTLP exporter.
type ProviderOptions struct {
	// ServiceName is the default service.name (OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES override it). Default "workerscope".
	ServiceName string
	// Version is service.version.
	Version string
	// InstanceID is service.instance.id; default a random UUID. Pyroscope
	// tags use the same value so metrics and profiles line up.
	InstanceID string
	// Getenv reads the environment (tests pass their own).
	Getenv func(string) string
	// Readers are extra readers (e.g. a Prometheus exporter) that stay on
	// even when OTLP export is switched off.
	Readers []sdkmetric.Reader
	// Producers add metric data made outside the SDK's instruments to
	// every reader the provider builds (OTLP, console, Prometheus); give
	// the same to the extra Readers.
	Producers []ReaderProducer
	// CardinalityLimit caps the attribute sets per instrument. Default
	// 4096 (2000 workers × 2 CPU modes, plus room).
	CardinalityLimit int
	// RuntimeMetrics adds the Go runtime metrics. Default true via Start.
	RuntimeMetrics bool
	Logger         *slog.Logger
	// SDKLogger takes the OpenTelemetry SDK's own log lines and errors
	// (default: Logger with component=otel).
	SDKLogger *slog.Logger
}

// Provider is the configured MeterProvider.
type Provider struct {
	// Meter is workerscope's meter (a no-op one when the SDK is disabled).
	Meter metric.Meter
	// Resource describes this process (built even when the SDK is
	// disabled: its service.name and service.instance.id also name the
	// process's profiles).
	Resource *resource.Resource
	// ServiceName and InstanceID are the resource's service.name and
	// service.instance.id, after OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES.
	ServiceName, InstanceID string
	// Disabled is true when OTEL_SDK_DISABLED=true: no instrument
	// records anything, so the Prometheus exposition is empty too.
	Disabled bool
	// Exporting is true when OTLP export is on.
	Exporting bool
	// Endpoint is the OTLP endpoint in use, as a URL ("" when not
	// exporting), and Protocol its protocol.
	Endpoint, Protocol string

	// TracerProvider makes the command spans (a no-op one when the SDK is
	// disabled or OTEL_TRACES_EXPORTER=none), LoggerProvider the worker
	// log records (no-op when disabled or OTEL_LOGS_EXPORTER=none).
	TracerProvider trace.TracerProvider
	LoggerProvider otellog.LoggerProvider
	// TracesEndpoint and LogsEndpoint are the OTLP endpoints of spans and
	// log records ("" when not exported over OTLP).
	TracesEndpoint, LogsEndpoint string
	// Tracing and Logging say whether spans and log records go anywhere.
	Tracing, Logging bool
	// Propagator reads (and writes) the trace context of requests, as
	// OTEL_PROPAGATORS says: tracecontext and baggage by default, none for
	// nothing. NewProvider also makes it the global one
	// (otel.SetTextMapPropagator).
	Propagator propagation.TextMapPropagator

	mp       *sdkmetric.MeterProvider
	tp       *sdktrace.TracerProvider
	lp       *sdklog.LoggerProvider
	exporter *loggingExporter
	prom     *promServer
	log      *slog.Logger
}

// NewProvider builds the MeterProvider from opts and the standard OTEL_*
// environment, following the OpenTelemetry specification:
//   - OTEL_SDK_DISABLED: "true" (any case) turns the SDK off (a no-op
//     meter); any other value is false;
//   - OTEL_METRICS_EXPORTER: a comma list of otlp (default), prometheus (a
//     pull endpoint on OTEL_EXPORTER_PROMETHEUS_HOST:PORT, default
//     localhost:9464), console (JSON on stdout), or none; extra readers
//     (opts.Readers) stay on in every case;
//   - OTEL_EXPORTER_OTLP_[METRICS_]PROTOCOL: grpc (our default) or
//     http/protobuf (what Grafana Cloud's OTLP gateway takes directly);
//   - OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT: a URL, or host:port (plaintext
//     for loopback or with OTEL_EXPORTER_OTLP_INSECURE=true, else TLS);
//     default localhost:4317 (gRPC) or localhost:4318 (HTTP), plaintext;
//   - OTEL_EXPORTER_OTLP_[METRICS_]COMPRESSION: gzip (our default) or none;
//   - OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: cumulative
//     (default), delta or lowmemory;
//   - OTEL_METRIC_EXPORT_INTERVAL and _TIMEOUT in milliseconds (interval
//     default 10 s; a value ≤ 0 is logged and replaced by the default);
//   - OTEL_EXPORTER_OTLP_[METRICS_]HEADERS, _TIMEOUT, _CERTIFICATE and
//     _CLIENT_*, read by the OTLP exporter itself;
//   - OTEL_PROPAGATORS: tracecontext, baggage (both by default) or none.
//
// An unknown exporter, protocol, compression, temporality, sampler or
// propagator and a number that does not parse (an interval, a timeout, the
// sampler's ratio, the Prometheus port) are logged as warnings naming the
// variable, and the default is used, as the specification asks. An
// endpoint that is not a URL or host:port stops start-up with an error
// naming the variable.
func NewProvider(ctx context.Context, opts ProviderOptions) (*Provider, error) {
	if opts.Getenv == nil {
		return nil, errors.New("otelsetup: ProviderOptions.Getenv is nil")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ServiceName == "" {
		opts.ServiceName = "workerscope"
	}
	if opts.InstanceID == "" {
		opts.InstanceID = newUUID()
	}
	if opts.CardinalityLimit <= 0 {
		opts.CardinalityLimit = 4096
	}
	env := opts.Getenv
	p := &Provider{log: opts.Logger}
	if opts.SDKLogger == nil {
		opts.SDKLogger = opts.Logger.With("component", "otel")
	}
	routeOTelLogs(opts.SDKLogger)
	p.Propagator = propagatorFromEnv(env, warner(p.log))
	otel.SetTextMapPropagator(p.Propagator)

	attrs := []attribute.KeyValue{
		semconv.ServiceName(opts.ServiceName),
		semconv.ServiceInstanceID(opts.InstanceID),
	}
	if opts.Version != "" {
		attrs = append(attrs, semconv.ServiceVersion(opts.Version))
	}
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithAttributes(attrs...),
		resource.WithHost(),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win
	)
	if err != nil && res == nil {
		return nil, fmt.Errorf("otelsetup: resource: %w", err)
	}
	if err != nil {
		p.log.Warn("some resource attributes could not be detected", "err", err)
	}
	p.Resource = res
	p.ServiceName, p.InstanceID = opts.ServiceName, opts.InstanceID
	if v, ok := res.Set().Value(semconv.ServiceNameKey); ok && v.AsString() != "" {
		p.ServiceName = v.AsString()
	}
	if v, ok := res.Set().Value(semconv.ServiceInstanceIDKey); ok && v.AsString() != "" {
		p.InstanceID = v.AsString()
	}

	if strings.EqualFold(strings.TrimSpace(env("OTEL_SDK_DISABLED")), "true") {
		p.Disabled = true
		p.Meter = noop.NewMeterProvider().Meter("workerscope")
		p.TracerProvider, p.LoggerProvider = noopTracing()
		p.log.Info("OpenTelemetry SDK disabled by OTEL_SDK_DISABLED=true: no metrics are recorded or exported")
		return p, nil
	}
	s, err := resolveExport(env, p.log)
	if err != nil {
		return nil, err
	}

	mpOpts := []sdkmetric.Option{
		sdkmetric.WithResource(res),
		sdkmetric.WithCardinalityLimit(opts.CardinalityLimit),
		sdkmetric.WithView(compactExemplarViews()...),
	}
	for _, r := range opts.Readers {
		mpOpts = append(mpOpts, sdkmetric.WithReader(r))
	}
	for _, name := range s.exporters {
		switch name {
		case "otlp":
			exp, err := newOTLPExporter(ctx, s)
			if err != nil {
				return nil, fmt.Errorf("otelsetup: OTLP exporter (OTEL_EXPORTER_OTLP_*): %w", err)
			}
			p.exporter = newLoggingExporter(exp, p.log, s.endpoint.String())
			mpOpts = append(mpOpts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(p.exporter, s.readerOptions(p.exporter, opts.Producers)...)))
			p.Exporting, p.Endpoint, p.Protocol = true, s.endpoint.String(), s.protocol
		case "console":
			r, err := newConsoleReader(s, opts.Producers)
			if err != nil {
				return nil, err
			}
			mpOpts = append(mpOpts, sdkmetric.WithReader(r))
		case "prometheus":
			r, srv, err := newPromServer(s.promAddr, p.log, opts.Producers)
			if err != nil {
				return nil, err
			}
			p.prom = srv
			mpOpts = append(mpOpts, sdkmetric.WithReader(r))
			p.log.Info("Prometheus exporter on (OTEL_METRICS_EXPORTER=prometheus): unauthenticated pull endpoint", "url", "http://"+srv.ln.Addr().String()+"/metrics")
		}
	}
	if !p.Exporting {
		p.log.Info("OTLP metric export off", "OTEL_METRICS_EXPORTER", env("OTEL_METRICS_EXPORTER"))
	}

	if err := p.startTracesAndLogs(ctx, env, res); err != nil {
		return nil, err
	}
	p.mp = sdkmetric.NewMeterProvider(mpOpts...)
	p.Meter = p.mp.Meter(MeterName, metric.WithInstrumentationVersion(opts.Version))
	if opts.RuntimeMetrics {
		if err := runtime.Start(runtime.WithMeterProvider(p.mp)); err != nil {
			return nil, fmt.Errorf("otelsetup: runtime metrics: %w", err)
		}
	}
	return p, nil
}

// startTracesAndLogs builds the TracerProvider and the LoggerProvider.
func (p *Provider) startTracesAndLogs(ctx context.Context, env func(string) string, res *resource.Resource) error {
	tp, ts, err := newTracerProvider(ctx, env, res, p.log)
	if err != nil {
		return err
	}
	lp, ls, err := newLoggerProvider(ctx, env, res, p.log)
	if err != nil {
		_ = tp.Shutdown(ctx)
		return err
	}
	p.tp, p.lp = tp, lp
	p.TracerProvider, p.LoggerProvider = tp, lp
	p.Tracing, p.Logging = len(ts.exporters) > 0, len(ls.exporters) > 0
	if !p.Tracing {
		// OTEL_TRACES_EXPORTER=none: no span is recorded, so none can be
		// named by an exemplar or a trace id that was never exported.
		p.TracerProvider, _ = noopTracing()
	}
	if ts.otlp() {
		p.TracesEndpoint = ts.endpoint.String()
	}
	if ls.otlp() {
		p.LogsEndpoint = ls.endpoint.String()
	}
	return nil
}

// ExportErrors is the number of failed OTLP exports so far.
func (p *Provider) ExportErrors() uint64 {
	if p.exporter == nil {
		return 0
	}
	return p.exporter.fails.Failures()
}

// ForceFlush collects and exports now what every periodic reader (OTLP,
// console) would at its next interval, waiting no longer than ctx allows;
// pull readers (Prometheus) are not collected. It does nothing when the
// SDK is disabled.
func (p *Provider) ForceFlush(ctx context.Context) error {
	if p.mp == nil {
		return nil
	}
	if err := p.mp.ForceFlush(ctx); err != nil {
		return fmt.Errorf("otelsetup: flush: %w", err)
	}
	return nil
}

// Shutdown flushes the last export and stops the provider, waiting no
// longer than ctx allows.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p.mp == nil {
		return nil
	}
	err := errors.Join(p.mp.Shutdown(ctx), p.prom.shutdown(ctx))
	if p.tp != nil {
		err = errors.Join(err, p.tp.Shutdown(ctx))
	}
	if p.lp != nil {
		err = errors.Join(err, p.lp.Shutdown(ctx))
	}
	if p.exporter != nil {
		p.exporter.fails.Summarize()
	}
	if err != nil {
		return fmt.Errorf("otelsetup: shutdown: %w", err)
	}
	return nil
}

// loggingExporter counts failed exports and logs them rate-limited (see
// faillog). It returns nil to the reader after logging, so the SDK's
// global error handler does not print every failure again.
type loggingExporter struct {
	sdkmetric.Exporter
	fails *faillog.Log
}

func newLoggingExporter(exp sdkmetric.Exporter, log *slog.Logger, endpoint string) *loggingExporter {
	return &loggingExporter{Exporter: exp, fails: faillog.New(log, faillog.Messages{
		First:     "OTLP export failed; retrying every interval, further failures summarized once a minute",
		Still:     "OTLP export still failing",
		Recovered: "OTLP export recovered",
	}, time.Minute, nil, "endpoint", endpoint)}
}

func (e *loggingExporter) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	var err error
	proflabel.Do(ctx, proflabel.Export, func(ctx context.Context) { err = e.Exporter.Export(ctx, rm) })
	if err != nil {
		e.fails.Failed(err.Error())
	} else {
		e.fails.Succeeded()
	}
	return nil
}

func firstEnv(env func(string) string, keys ...string) string {
	for _, k := range keys {
		if v := strings.TrimSpace(env(k)); v != "" {
			return v
		}
	}
	return ""
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
