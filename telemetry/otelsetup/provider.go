package otelsetup

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/workerscope/workerscope/internal/faillog"
	"github.com/workerscope/workerscope/internal/proflabel"
	"go.opentelemetry.io/contrib/instrumentation/runtime"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0" // the version resource.Default() of sdk v1.47 uses
)

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
	// CardinalityLimit caps the attribute sets per instrument. Default
	// 4096 (2000 workers × 2 CPU modes, plus room).
	CardinalityLimit int
	// RuntimeMetrics adds the Go runtime metrics. Default true via Start.
	RuntimeMetrics bool
	Logger         *slog.Logger
}

// Provider is the configured MeterProvider.
type Provider struct {
	// Meter is workerscope's meter (a no-op one when the SDK is disabled).
	Meter metric.Meter
	// Resource describes this process.
	Resource *resource.Resource
	// InstanceID is service.instance.id.
	InstanceID string
	// Exporting is true when OTLP export is on.
	Exporting bool
	// Endpoint is the OTLP endpoint in use ("" when not exporting).
	Endpoint string

	mp       *sdkmetric.MeterProvider
	exporter *loggingExporter
	log      *slog.Logger
}

// NewProvider builds the MeterProvider from opts and the standard OTEL_*
// environment:
//   - OTEL_SDK_DISABLED=true: no SDK at all (a no-op meter);
//   - OTEL_METRICS_EXPORTER=none: no OTLP export (extra readers still work);
//   - OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT, _INSECURE, _HEADERS,
//     _COMPRESSION, _TIMEOUT, _CERTIFICATE, and
//     OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, read by the
//     OTLP gRPC exporter itself;
//   - OTEL_METRIC_EXPORT_INTERVAL and _TIMEOUT, read by the periodic reader.
//
// Defaults that differ from the OTel SDK's: with no endpoint set, export
// goes to localhost:4317 without TLS (a local collector); compression is
// gzip; the export interval is 10 s.
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
	p := &Provider{InstanceID: opts.InstanceID, log: opts.Logger}

	if b, err := envBool(env, "OTEL_SDK_DISABLED"); err != nil {
		return nil, err
	} else if b {
		p.Meter = noop.NewMeterProvider().Meter("workerscope")
		p.log.Info("OpenTelemetry SDK disabled by OTEL_SDK_DISABLED")
		return p, nil
	}

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

	mpOpts := []sdkmetric.Option{
		sdkmetric.WithResource(res),
		sdkmetric.WithCardinalityLimit(opts.CardinalityLimit),
	}
	for _, r := range opts.Readers {
		mpOpts = append(mpOpts, sdkmetric.WithReader(r))
	}

	switch v := strings.ToLower(strings.TrimSpace(env("OTEL_METRICS_EXPORTER"))); v {
	case "", "otlp":
		proto := firstEnv(env, "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
		if proto != "" && proto != "grpc" {
			return nil, fmt.Errorf("otelsetup: invalid OTEL_EXPORTER_OTLP_PROTOCOL %q: workerscope exports OTLP over gRPC only (send to a collector, which can forward over HTTP)", proto)
		}
		var eopts []otlpmetricgrpc.Option
		endpoint := firstEnv(env, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
		if endpoint == "" {
			endpoint = "localhost:4317"
			eopts = append(eopts, otlpmetricgrpc.WithEndpoint(endpoint), otlpmetricgrpc.WithInsecure())
		}
		if firstEnv(env, "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION") == "" {
			eopts = append(eopts, otlpmetricgrpc.WithCompressor("gzip"))
		}
		exp, err := otlpmetricgrpc.New(ctx, eopts...)
		if err != nil {
			return nil, fmt.Errorf("otelsetup: OTLP exporter (OTEL_EXPORTER_OTLP_*): %w", err)
		}
		p.exporter = newLoggingExporter(exp, p.log, endpoint)
		// go.schedule.duration comes from the runtime producer, per reader.
		ropts := []sdkmetric.PeriodicReaderOption{sdkmetric.WithProducer(runtime.NewProducer())}
		if env("OTEL_METRIC_EXPORT_INTERVAL") == "" {
			ropts = append(ropts, sdkmetric.WithInterval(10*time.Second))
		} else if _, err := strconv.Atoi(env("OTEL_METRIC_EXPORT_INTERVAL")); err != nil {
			return nil, fmt.Errorf("otelsetup: invalid OTEL_METRIC_EXPORT_INTERVAL %q: want milliseconds", env("OTEL_METRIC_EXPORT_INTERVAL"))
		}
		mpOpts = append(mpOpts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(p.exporter, ropts...)))
		p.Exporting, p.Endpoint = true, endpoint
	case "none":
		p.log.Info("OTLP metric export off (OTEL_METRICS_EXPORTER=none)")
	default:
		return nil, fmt.Errorf("otelsetup: invalid OTEL_METRICS_EXPORTER %q: want otlp or none", v)
	}

	p.mp = sdkmetric.NewMeterProvider(mpOpts...)
	p.Meter = p.mp.Meter("github.com/workerscope/workerscope/telemetry", metric.WithInstrumentationVersion(opts.Version))
	if opts.RuntimeMetrics {
		if err := runtime.Start(runtime.WithMeterProvider(p.mp)); err != nil {
			return nil, fmt.Errorf("otelsetup: runtime metrics: %w", err)
		}
	}
	return p, nil
}

// ExportErrors is the number of failed OTLP exports so far.
func (p *Provider) ExportErrors() uint64 {
	if p.exporter == nil {
		return 0
	}
	return p.exporter.fails.Failures()
}

// Shutdown flushes the last export and stops the provider, waiting no
// longer than ctx allows.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p.mp == nil {
		return nil
	}
	err := p.mp.Shutdown(ctx)
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

func envBool(env func(string) string, key string) (bool, error) {
	v := strings.TrimSpace(env(key))
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("otelsetup: invalid %s %q: want true or false", key, v)
	}
	return b, nil
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
