package otelsetup

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/runtime"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// Protocols of OTEL_EXPORTER_OTLP_[METRICS_]PROTOCOL.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// Defaults that differ from the OTel SDK's: a local collector over gRPC,
// gzip, and a 10 s interval (the SDK's are http/protobuf, none and 60 s).
const (
	defaultProtocol    = ProtocolGRPC
	defaultCompression = "gzip"
	defaultInterval    = 10 * time.Second
)

// exportSettings is what the OTEL_* variables ask of metric export,
// resolved and checked once, so the exporters get explicit options and do
// not read (and silently drop) the same variables again.
type exportSettings struct {
	exporters []string // "otlp", "console", "prometheus"; none when empty
	otlpSettings
	temporality string // "cumulative", "delta" or "lowmemory"
	interval    time.Duration
	timeout     time.Duration // 0: the SDK's default
	promAddr    string        // OTEL_EXPORTER_PROMETHEUS_HOST:PORT
}

// warnFunc reports a setting that is not valid: the variable, its value,
// what it wants, and the default used instead.
type warnFunc func(key, v, why string, def any)

// warner logs each invalid setting as a warning: the OTel environment spec
// asks that an unknown value or an unparseable number be warned about and
// replaced by the default, not stop start-up.
func warner(log *slog.Logger) warnFunc {
	return func(key, v, why string, def any) {
		log.Warn("invalid OTel setting; using the default", "variable", key, "value", v, "want", why, "default", def)
	}
}

// otlpSettings is one signal's OTLP protocol, endpoint and compression,
// resolved by resolveOTLP and used by newOTLP for every signal.
type otlpSettings struct {
	signal      string // METRICS, TRACES or LOGS
	protocol    string
	endpoint    *url.URL // scheme://host:port[/path]
	compression string
}

// resolveOTLP reads the OTLP protocol, endpoint and compression of signal:
// OTEL_EXPORTER_OTLP_<SIGNAL>_*, else OTEL_EXPORTER_OTLP_*, else our
// defaults (gRPC to localhost:4317, gzip). An unknown protocol or
// compression is warned about and the default kept; an endpoint that is
// neither a URL nor host:port is an error.
func resolveOTLP(env func(string) string, signal string, warn warnFunc) (otlpSettings, error) {
	s := otlpSettings{signal: signal}
	s.protocol = signalSetting(env, signal, "PROTOCOL", defaultProtocol, warn, "grpc or http/protobuf", ProtocolGRPC, ProtocolHTTP)
	s.compression = signalSetting(env, signal, "COMPRESSION", defaultCompression, warn, "gzip or none", "gzip", "none")
	var err error
	s.endpoint, err = resolveSignalEndpoint(env, signal, s.protocol)
	return s, err
}

// exportersFromEnv reads OTEL_<SIGNAL>_EXPORTER: a comma list of known,
// or none. An unknown name is warned about and skipped; when no known name
// (nor none) remains, the default otlp is used.
func exportersFromEnv(env func(string) string, signal string, warn warnFunc, known ...string) []string {
	key := "OTEL_" + signal + "_EXPORTER"
	v := firstEnv(env, key)
	if v == "" {
		return []string{"otlp"}
	}
	var out []string
	none := false
	for _, name := range strings.Split(strings.ToLower(v), ",") {
		switch name = strings.TrimSpace(name); {
		case slices.Contains(known, name):
			out = append(out, name)
		case name == "none" || name == "":
			none = true
		default:
			warn(key, name, "a comma list of "+strings.Join(known, ", ")+", or none", "otlp")
		}
	}
	if len(out) == 0 && !none {
		return []string{"otlp"}
	}
	return out
}

// newOTLP builds one signal's OTLP exporter: the choice of protocol and
// compression is made here once for every signal; overHTTP and overGRPC
// bind it to the signal's exporter package (endpoint URL, gzip or not).
func newOTLP[E any](ctx context.Context, s otlpSettings,
	overHTTP func(ctx context.Context, endpoint string, gzip bool) (E, error),
	overGRPC func(ctx context.Context, endpoint string, gzip bool) (E, error)) (E, error) {
	gzip := s.compression == "gzip"
	if s.protocol == ProtocolHTTP {
		return overHTTP(ctx, s.endpoint.String(), gzip)
	}
	return overGRPC(ctx, s.endpoint.String(), gzip)
}

// resolveExport reads the metric export settings. An unknown value or an
// unparseable number is logged as a warning and replaced by the default,
// as the spec asks; an endpoint that is neither a URL nor host:port and a
// Prometheus port that cannot be listened on are errors.
func resolveExport(env func(string) string, log *slog.Logger) (exportSettings, error) {
	s := exportSettings{temporality: "cumulative", interval: defaultInterval}
	warn := warner(log)
	s.exporters = exportersFromEnv(env, "METRICS", warn, "otlp", "prometheus", "console")
	var err error
	if s.otlpSettings, err = resolveOTLP(env, "METRICS", warn); err != nil {
		return s, err
	}

	if v := firstEnv(env, "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"); v != "" {
		switch strings.ToLower(v) {
		case "cumulative", "delta", "lowmemory":
			s.temporality = strings.ToLower(v)
		default:
			warn("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", v, "cumulative, delta or lowmemory", s.temporality)
		}
	}

	millis := func(key string, def time.Duration) time.Duration {
		v := firstEnv(env, key)
		if v == "" {
			return def
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			warn(key, v, "an integer number of milliseconds", def)
			return def
		}
		if n <= 0 {
			log.Warn("ignoring a non-positive OTel setting; using the default", "variable", key, "value", v, "default", def)
			return def
		}
		return time.Duration(n) * time.Millisecond
	}
	s.interval = millis("OTEL_METRIC_EXPORT_INTERVAL", defaultInterval)
	s.timeout = millis("OTEL_METRIC_EXPORT_TIMEOUT", 0)

	host, port := firstEnv(env, "OTEL_EXPORTER_PROMETHEUS_HOST"), firstEnv(env, "OTEL_EXPORTER_PROMETHEUS_PORT")
	if host == "" {
		host = "localhost"
	}
	if n, err := strconv.Atoi(port); port != "" && (err != nil || n < 0 || n > 65535) {
		warn("OTEL_EXPORTER_PROMETHEUS_PORT", port, "a port number", 9464)
		port = ""
	}
	if port == "" {
		port = "9464"
	}
	s.promAddr = net.JoinHostPort(host, port)
	return s, nil
}

// signalSetting reads OTEL_EXPORTER_OTLP_<SIGNAL>_<NAME>, else
// OTEL_EXPORTER_OTLP_<NAME>, lower-cased; def when neither is set; a value
// not among allowed is warned about (naming the variable it came from)
// and def is kept.
func signalSetting(env func(string) string, signal, name, def string, warn warnFunc, why string, allowed ...string) string {
	key := "OTEL_EXPORTER_OTLP_" + signal + "_" + name
	v := firstEnv(env, key)
	if v == "" {
		key = "OTEL_EXPORTER_OTLP_" + name
		v = firstEnv(env, key)
	}
	if v == "" {
		return def
	}
	if l := strings.ToLower(v); slices.Contains(allowed, l) {
		return l
	}
	warn(key, v, why, def)
	return def
}

// resolveSignalEndpoint returns the OTLP endpoint of signal (METRICS,
// TRACES or LOGS) as a URL. The spec's form is a URL (http:// for
// plaintext, https:// for TLS); a bare host:port, as users often type it,
// is accepted too: plaintext when the host is a loopback address or
// OTEL_EXPORTER_OTLP_[<SIGNAL>_]INSECURE is true, TLS otherwise. For
// http/protobuf the generic endpoint gets the signal's path (/v1/metrics,
// /v1/traces, /v1/logs) appended; a signal-specific URL is used as is (the
// spec), and a signal-specific bare host:port, which has no path to use,
// gets the signal's path too rather than posting to /.
func resolveSignalEndpoint(env func(string) string, signal, protocol string) (*url.URL, error) {
	path := "/v1/" + strings.ToLower(signal)
	key, raw := "OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT", firstEnv(env, "OTEL_EXPORTER_OTLP_"+signal+"_ENDPOINT")
	generic := raw == ""
	if generic {
		key, raw = "OTEL_EXPORTER_OTLP_ENDPOINT", firstEnv(env, "OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	if raw == "" {
		if protocol == ProtocolHTTP {
			return &url.URL{Scheme: "http", Host: "localhost:4318", Path: path}, nil
		}
		return &url.URL{Scheme: "http", Host: "localhost:4317"}, nil
	}
	bare := !strings.Contains(raw, "://")
	if bare {
		host, _, err := net.SplitHostPort(raw)
		if err != nil {
			return nil, fmt.Errorf("otelsetup: invalid %s %q: want a URL such as http://collector:4317 or https://otlp.example.com, or host:port", key, raw)
		}
		scheme := "https"
		insecure := strings.EqualFold(firstEnv(env, "OTEL_EXPORTER_OTLP_"+signal+"_INSECURE", "OTEL_EXPORTER_OTLP_INSECURE"), "true")
		if ip := net.ParseIP(host); insecure || strings.EqualFold(host, "localhost") || (ip != nil && ip.IsLoopback()) {
			scheme = "http"
		}
		raw = scheme + "://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("otelsetup: invalid %s %q: want a URL such as http://collector:4317 or https://otlp.example.com, or host:port", key, raw)
	}
	if u.Port() == "" {
		port := "4317"
		switch {
		case protocol == ProtocolHTTP && u.Scheme == "https":
			port = "443"
		case protocol == ProtocolHTTP:
			port = "4318"
		case u.Scheme == "https":
			port = "443"
		}
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	if protocol == ProtocolHTTP && (generic || bare) {
		u.Path = strings.TrimSuffix(u.Path, "/") + path
	}
	if protocol == ProtocolGRPC {
		u.Path = ""
	}
	u.User = nil // credentials belong in OTEL_EXPORTER_OTLP_HEADERS
	return u, nil
}

// temporalitySelector implements OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE.
func temporalitySelector(pref string) sdkmetric.TemporalitySelector {
	switch pref {
	case "delta":
		return func(k sdkmetric.InstrumentKind) metricdata.Temporality {
			switch k {
			case sdkmetric.InstrumentKindUpDownCounter, sdkmetric.InstrumentKindObservableUpDownCounter:
				return metricdata.CumulativeTemporality
			}
			return metricdata.DeltaTemporality
		}
	case "lowmemory":
		return func(k sdkmetric.InstrumentKind) metricdata.Temporality {
			switch k {
			case sdkmetric.InstrumentKindCounter, sdkmetric.InstrumentKindHistogram:
				return metricdata.DeltaTemporality
			}
			return metricdata.CumulativeTemporality
		}
	}
	return sdkmetric.DefaultTemporalitySelector
}

// newOTLPExporter builds the OTLP exporter the settings describe. Headers,
// TLS certificates and the request timeout still come from the standard
// OTEL_EXPORTER_OTLP_* variables, which the exporter reads itself.
func newOTLPExporter(ctx context.Context, s exportSettings) (sdkmetric.Exporter, error) {
	temporality := temporalitySelector(s.temporality)
	return newOTLP(ctx, s.otlpSettings,
		func(ctx context.Context, endpoint string, gzip bool) (sdkmetric.Exporter, error) {
			c := otlpmetrichttp.NoCompression
			if gzip {
				c = otlpmetrichttp.GzipCompression
			}
			return otlpmetrichttp.New(ctx, otlpmetrichttp.WithEndpointURL(endpoint), otlpmetrichttp.WithTemporalitySelector(temporality), otlpmetrichttp.WithCompression(c))
		},
		func(ctx context.Context, endpoint string, gzip bool) (sdkmetric.Exporter, error) {
			// gRPC's reconnect back-off grows to 2 minutes by default: after a
			// collector restart export would resume only that late. Bound it by
			// the interval (at most 5 s), so export resumes within two intervals.
			opts := []otlpmetricgrpc.Option{
				otlpmetricgrpc.WithEndpointURL(endpoint),
				otlpmetricgrpc.WithTemporalitySelector(temporality),
				otlpmetricgrpc.WithDialOption(grpcReconnect(min(max(s.interval, time.Second), 5*time.Second))),
			}
			if gzip {
				opts = append(opts, otlpmetricgrpc.WithCompressor("gzip"))
			}
			return newEncodingExporter(ctx, opts...)
		})
}

// ReaderProducer makes a producer of metric data for one reader, given
// the reader's temporality: a producer's sums (and their start times)
// must follow it, as the SDK's instruments do. otelmetrics'
// WorkerSeries.Producer is one.
type ReaderProducer func(temporality sdkmetric.TemporalitySelector) sdkmetric.Producer

// readerOptions are the periodic reader's options: interval, timeout, the
// Go runtime producer (go.schedule.duration) and producers, each made for
// exp's temporality.
func (s exportSettings) readerOptions(exp sdkmetric.Exporter, producers []ReaderProducer) []sdkmetric.PeriodicReaderOption {
	opts := []sdkmetric.PeriodicReaderOption{sdkmetric.WithInterval(s.interval), sdkmetric.WithProducer(newRuntimeProducer())}
	for _, p := range producers {
		opts = append(opts, sdkmetric.WithProducer(p(exp.Temporality)))
	}
	if s.timeout > 0 {
		opts = append(opts, sdkmetric.WithTimeout(s.timeout))
	}
	return opts
}

// newConsoleReader prints every collection to stdout as JSON.
func newConsoleReader(s exportSettings, producers []ReaderProducer) (sdkmetric.Reader, error) {
	exp, err := stdoutmetric.New(stdoutmetric.WithWriter(os.Stdout))
	if err != nil {
		return nil, fmt.Errorf("otelsetup: console exporter: %w", err)
	}
	return sdkmetric.NewPeriodicReader(exp, s.readerOptions(exp, producers)...), nil
}

// promServer is OTEL_METRICS_EXPORTER=prometheus: the spec's pull endpoint
// on OTEL_EXPORTER_PROMETHEUS_HOST:PORT (localhost:9464 by default). Like
// every Prometheus exporter it has no authentication: keep it on loopback
// or behind a proxy; the token-protected GET /metrics serves the same
// exposition.
type promServer struct {
	srv *http.Server
	ln  net.Listener
}

// NewPrometheus returns a metric reader that exposes the provider's
// instruments (and the Go runtime's, and what producers make) in the
// Prometheus and OpenMetrics exposition formats, and the HTTP handler that
// serves them; pass the reader in ProviderOptions.Readers. The binary
// serves the handler at the token-protected GET /metrics;
// OTEL_METRICS_EXPORTER=prometheus serves another on its own port.
func NewPrometheus(producers ...ReaderProducer) (sdkmetric.Reader, http.Handler, error) {
	reg := prometheus.NewRegistry()
	opts := []otelprom.Option{otelprom.WithRegisterer(reg), otelprom.WithProducer(newRuntimeProducer())}
	for _, p := range producers {
		// Prometheus exposes cumulative sums only.
		opts = append(opts, otelprom.WithProducer(p(sdkmetric.DefaultTemporalitySelector)))
	}
	exp, err := otelprom.New(opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("otelsetup: prometheus exporter: %w", err)
	}
	return exp, promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}), nil
}

func newPromServer(addr string, log *slog.Logger, producers []ReaderProducer) (sdkmetric.Reader, *promServer, error) {
	exp, handler, err := NewPrometheus(producers...)
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("otelsetup: prometheus exporter (OTEL_EXPORTER_PROMETHEUS_HOST/PORT): listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", handler)
	p := &promServer{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}}
	go func() { _ = p.srv.Serve(ln) }()
	return exp, p, nil
}

func (p *promServer) shutdown(ctx context.Context) error {
	if p == nil {
		return nil
	}
	return p.srv.Shutdown(ctx)
}

// newRuntimeProducer returns the Go runtime's producer of
// go.schedule.duration for one reader. The contrib producer re-reads the
// runtime at most every 15 s by default and stamps its points with that
// read's time, so a reader collecting more often would send the same
// timestamp again, which a Prometheus-compatible backend can reject whole
// (and with it the rest of that OTLP request). Reading runtime/metrics'
// one histogram costs microseconds: read it on every collection.
func newRuntimeProducer() sdkmetric.Producer {
	// The option is a ProducerOption; its declared type is the wider Option.
	return runtime.NewProducer(runtime.WithMinimumReadMemStatsInterval(time.Millisecond).(runtime.ProducerOption))
}
