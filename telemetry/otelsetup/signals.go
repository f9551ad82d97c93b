package otelsetup

import (
	"context"
	"errors"
	"fmt"
	"net/url"
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
	signal      string // TRACES or LOGS
	exporters   []string
	protocol    string
	endpoint    *url.URL
	compression string
}

// resolveSignal reads OTEL_<SIGNAL>_EXPORTER (otlp, the default; console;
// none) and the OTLP protocol, endpoint and compression of signal.
func resolveSignal(env func(string) string, signal string) (signalSettings, error) {
	s := signalSettings{signal: signal, protocol: defaultProtocol, compression: defaultCompression}
	var errs []error
	bad := func(key, v, why string) { errs = append(errs, fmt.Errorf("otelsetup: invalid %s %q: %s", key, v, why)) }
	expKey := "OTEL_" + signal + "_EXPORTER"
	if v := firstEnv(env, expKey); v != "" {
		for _, name := range strings.Split(strings.ToLower(v), ",") {
			switch name = strings.TrimSpace(name); name {
			case "otlp", "console":
				s.exporters = append(s.exporters, name)
			case "none", "":
			default:
				bad(expKey, v, "want a comma list of otlp, console, or none")
			}
		}
	} else {
		s.exporters = []string{"otlp"}
	}
	s.protocol = signalSetting(env, signal, "PROTOCOL", s.protocol, bad, "want grpc or http/protobuf", ProtocolGRPC, ProtocolHTTP)
	var err error
	if s.endpoint, err = resolveSignalEndpoint(env, signal, s.protocol); err != nil {
		errs = append(errs, err)
	}
	s.compression = signalSetting(env, signal, "COMPRESSION", s.compression, bad, "want gzip or none", "gzip", "none")
	return s, errors.Join(errs...)
}

// grpcReconnect bounds gRPC's reconnect back-off (2 minutes by default),
// so export resumes within seconds of a collector's return.
func grpcReconnect() grpc.DialOption {
	return grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 250 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
		MinConnectTimeout: 5 * time.Second,
	})
}

// samplerFromEnv implements OTEL_TRACES_SAMPLER and _ARG (the spec's
// values; default parentbased_always_on) from env.
func samplerFromEnv(env func(string) string) (sdktrace.Sampler, error) {
	name := strings.ToLower(firstEnv(env, "OTEL_TRACES_SAMPLER"))
	arg := firstEnv(env, "OTEL_TRACES_SAMPLER_ARG")
	ratio := func() (float64, error) {
		if arg == "" {
			return 1, nil
		}
		f, err := strconv.ParseFloat(arg, 64)
		if err != nil || f < 0 || f > 1 {
			return 0, fmt.Errorf("otelsetup: invalid OTEL_TRACES_SAMPLER_ARG %q: want a ratio from 0 to 1", arg)
		}
		return f, nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio", "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		if name == "traceidratio" {
			return sdktrace.TraceIDRatioBased(r), nil
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), nil
	}
	return nil, fmt.Errorf("otelsetup: invalid OTEL_TRACES_SAMPLER %q: want always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio", name)
}

// newTracerProvider builds the TracerProvider from OTEL_TRACES_EXPORTER,
// the OTLP settings and the sampler; batching follows OTEL_BSP_*, which
// the SDK reads itself.
func newTracerProvider(ctx context.Context, env func(string) string, res *resource.Resource) (*sdktrace.TracerProvider, signalSettings, error) {
	s, err := resolveSignal(env, "TRACES")
	if err != nil {
		return nil, s, err
	}
	sampler, err := samplerFromEnv(env)
	if err != nil {
		return nil, s, err
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sampler)}
	for _, name := range s.exporters {
		var exp sdktrace.SpanExporter
		switch name {
		case "otlp":
			if s.protocol == ProtocolHTTP {
				c := otlptracehttp.NoCompression
				if s.compression == "gzip" {
					c = otlptracehttp.GzipCompression
				}
				exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(s.endpoint.String()), otlptracehttp.WithCompression(c))
			} else {
				o := []otlptracegrpc.Option{otlptracegrpc.WithEndpointURL(s.endpoint.String()), otlptracegrpc.WithDialOption(grpcReconnect())}
				if s.compression == "gzip" {
					o = append(o, otlptracegrpc.WithCompressor("gzip"))
				}
				exp, err = otlptracegrpc.New(ctx, o...)
			}
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
func newLoggerProvider(ctx context.Context, env func(string) string, res *resource.Resource) (*sdklog.LoggerProvider, signalSettings, error) {
	s, err := resolveSignal(env, "LOGS")
	if err != nil {
		return nil, s, err
	}
	opts := []sdklog.LoggerProviderOption{sdklog.WithResource(res)}
	for _, name := range s.exporters {
		var exp sdklog.Exporter
		switch name {
		case "otlp":
			if s.protocol == ProtocolHTTP {
				c := otlploghttp.NoCompression
				if s.compression == "gzip" {
					c = otlploghttp.GzipCompression
				}
				exp, err = otlploghttp.New(ctx, otlploghttp.WithEndpointURL(s.endpoint.String()), otlploghttp.WithCompression(c))
			} else {
				o := []otlploggrpc.Option{otlploggrpc.WithEndpointURL(s.endpoint.String()), otlploggrpc.WithDialOption(grpcReconnect())}
				if s.compression == "gzip" {
					o = append(o, otlploggrpc.WithCompressor("gzip"))
				}
				exp, err = otlploggrpc.New(ctx, o...)
			}
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
	s, err := resolveSignal(env, "LOGS")
	return err != nil || len(s.exporters) > 0 // invalid settings stop start-up later
}
