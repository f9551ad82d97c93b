package otelsetup

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutlog"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	otellog "go.opentelemetry.io/otel/log"
	lognoop "go.opentelemetry.io/otel/log/noop"
	"go.opentelemetry.io/otel/propagation"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// signalSettings is what the OTEL_* variables ask of one signal's export
// (traces or logs), resolved like the metrics' (resolveExport): the
// signal-specific variable first, then the generic one, then our default
// (gRPC to localhost:4317, gzip).
type signalSettings struct {
	exporters []string
	otlpSettings
}

// resolveSignal reads OTEL_<SIGNAL>_EXPORTER (otlp, the default; console;
// none) and the OTLP protocol, endpoint and compression of signal. Unknown
// values are warned about through log and the defaults used.
func resolveSignal(env func(string) string, signal string, log *slog.Logger) (signalSettings, error) {
	warn := warner(log)
	s := signalSettings{exporters: exportersFromEnv(env, signal, warn, "otlp", "console")}
	var err error
	s.otlpSettings, err = resolveOTLP(env, signal, warn)
	return s, err
}

// grpcReconnect bounds gRPC's reconnect back-off (2 minutes by default) by
// maxDelay, so export resumes within seconds of a collector's return.
func grpcReconnect(maxDelay time.Duration) grpc.DialOption {
	return grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: maxDelay},
		MinConnectTimeout: maxDelay,
	})
}

// samplerFromEnv implements OTEL_TRACES_SAMPLER and _ARG (the spec's
// values; default parentbased_always_on). An unknown sampler or a ratio
// that is not a number from 0 to 1 is warned about and the default used
// (parentbased_always_on; ratio 1), as the spec asks.
func samplerFromEnv(env func(string) string, warn warnFunc) sdktrace.Sampler {
	name := strings.ToLower(firstEnv(env, "OTEL_TRACES_SAMPLER"))
	ratio := func() float64 {
		arg := firstEnv(env, "OTEL_TRACES_SAMPLER_ARG")
		if arg == "" {
			return 1
		}
		f, err := strconv.ParseFloat(arg, 64)
		if err != nil || f < 0 || f > 1 {
			warn("OTEL_TRACES_SAMPLER_ARG", arg, "a ratio from 0 to 1", 1.0)
			return 1
		}
		return f
	}
	switch name {
	case "", "parentbased_always_on":
	case "always_on":
		return sdktrace.AlwaysSample()
	case "always_off":
		return sdktrace.NeverSample()
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample())
	case "traceidratio":
		return sdktrace.TraceIDRatioBased(ratio())
	case "parentbased_traceidratio":
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio()))
	default:
		warn("OTEL_TRACES_SAMPLER", name, "always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio", "parentbased_always_on")
	}
	return sdktrace.ParentBased(sdktrace.AlwaysSample())
}

// propagatorFromEnv implements OTEL_PROPAGATORS: a comma list of
// tracecontext (W3C traceparent/tracestate) and baggage (W3C baggage), or
// none; default "tracecontext,baggage". Others (b3, jaeger, xray, ottrace)
// are not built in: warned about and skipped.
func propagatorFromEnv(env func(string) string, warn warnFunc) propagation.TextMapPropagator {
	v := firstEnv(env, "OTEL_PROPAGATORS")
	if v == "" {
		v = "tracecontext,baggage"
	}
	var props []propagation.TextMapPropagator
	for _, name := range strings.Split(strings.ToLower(v), ",") {
		switch name = strings.TrimSpace(name); name {
		case "tracecontext":
			props = append(props, propagation.TraceContext{})
		case "baggage":
			props = append(props, propagation.Baggage{})
		case "none", "":
		default:
			warn("OTEL_PROPAGATORS", name, "a comma list of tracecontext, baggage, or none", "skipped")
		}
	}
	return propagation.NewCompositeTextMapPropagator(props...)
}

// newTracerProvider builds the TracerProvider from OTEL_TRACES_EXPORTER,
// the OTLP settings and the sampler; batching follows OTEL_BSP_*, which
// the SDK reads itself.
func newTracerProvider(ctx context.Context, env func(string) string, res *resource.Resource, log *slog.Logger) (*sdktrace.TracerProvider, signalSettings, error) {
	s, err := resolveSignal(env, "TRACES", log)
	if err != nil {
		return nil, s, err
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(samplerFromEnv(env, warner(log)))}
	for _, name := range s.exporters {
		var exp sdktrace.SpanExporter
		switch name {
		case "otlp":
			exp, err = newOTLP(ctx, s.otlpSettings,
				func(ctx context.Context, endpoint string, gzip bool) (sdktrace.SpanExporter, error) {
					c := otlptracehttp.NoCompression
					if gzip {
						c = otlptracehttp.GzipCompression
					}
					return otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint), otlptracehttp.WithCompression(c))
				},
				func(ctx context.Context, endpoint string, gzip bool) (sdktrace.SpanExporter, error) {
					o := []otlptracegrpc.Option{otlptracegrpc.WithEndpointURL(endpoint), otlptracegrpc.WithDialOption(grpcReconnect(5 * time.Second))}
					if gzip {
						o = append(o, otlptracegrpc.WithCompressor("gzip"))
					}
					return otlptracegrpc.New(ctx, o...)
				})
		case "console":
			exp, err = stdouttrace.New(stdouttrace.WithWriter(os.Stdout))
		}
		if err != nil {
			return nil, s, fmt.Errorf("otelsetup: trace exporter %s (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_*): %w", name, err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	return sdktrace.NewTracerProvider(opts...), s, nil
}

// newLoggerProvider builds the LoggerProvider from OTEL_LOGS_EXPORTER and
// the OTLP settings; batching follows OTEL_BLRP_*, which the SDK reads
// itself.
func newLoggerProvider(ctx context.Context, env func(string) string, res *resource.Resource, log *slog.Logger) (*sdklog.LoggerProvider, signalSettings, error) {
	s, err := resolveSignal(env, "LOGS", log)
	if err != nil {
		return nil, s, err
	}
	opts := []sdklog.LoggerProviderOption{sdklog.WithResource(res)}
	for _, name := range s.exporters {
		var exp sdklog.Exporter
		switch name {
		case "otlp":
			exp, err = newOTLP(ctx, s.otlpSettings,
				func(ctx context.Context, endpoint string, gzip bool) (sdklog.Exporter, error) {
					c := otlploghttp.NoCompression
					if gzip {
						c = otlploghttp.GzipCompression
					}
					return otlploghttp.New(ctx, otlploghttp.WithEndpointURL(endpoint), otlploghttp.WithCompression(c))
				},
				func(ctx context.Context, endpoint string, gzip bool) (sdklog.Exporter, error) {
					o := []otlploggrpc.Option{otlploggrpc.WithEndpointURL(endpoint), otlploggrpc.WithDialOption(grpcReconnect(5 * time.Second))}
					if gzip {
						o = append(o, otlploggrpc.WithCompressor("gzip"))
					}
					return otlploggrpc.New(ctx, o...)
				})
		case "console":
			exp, err = stdoutlog.New(stdoutlog.WithWriter(os.Stdout))
		}
		if err != nil {
			return nil, s, fmt.Errorf("otelsetup: log exporter %s (OTEL_LOGS_EXPORTER, OTEL_EXPORTER_OTLP_*): %w", name, err)
		}
		opts = append(opts, sdklog.WithProcessor(sdklog.NewBatchProcessor(exp)))
	}
	return sdklog.NewLoggerProvider(opts...), s, nil
}

// noopTracing is what a disabled SDK hands out.
func noopTracing() (trace.TracerProvider, otellog.LoggerProvider) {
	return tracenoop.NewTracerProvider(), lognoop.NewLoggerProvider()
}

func (s signalSettings) otlp() bool {
	for _, e := range s.exporters {
		if e == "otlp" {
			return true
		}
	}
	return false
}

// LogsEnabled reports whether the environment leaves log records on
// (OTEL_SDK_DISABLED is not true and OTEL_LOGS_EXPORTER is not none), so
// that a caller can skip producing records nobody exports.
func LogsEnabled(env func(string) string) bool {
	if strings.EqualFold(strings.TrimSpace(env("OTEL_SDK_DISABLED")), "true") {
		return false
	}
	s, err := resolveSignal(env, "LOGS", slog.New(slog.DiscardHandler)) // NewProvider warns
	return err != nil || len(s.exporters) > 0                           // an invalid endpoint stops start-up later
}
