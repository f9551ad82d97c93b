package otelsetup

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/workerscope/workerscope/internal/testutil"
)

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestProviderEnv(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		env      []string
		wantErr  string // start-up stops with an error naming this
		warn     string // a warning names this variable, and start-up goes on with the default
		export   bool
		endpoint string
		disabled bool
	}{
		{"default exports to a local collector over gRPC", nil, "", "", true, "http://localhost:4317", false},
		{"none", []string{"OTEL_METRICS_EXPORTER", "none"}, "", "", false, "", false},
		{"disabled", []string{"OTEL_SDK_DISABLED", "TRUE"}, "", "", false, "", true},
		{"disabled only by true, as the spec says", []string{"OTEL_SDK_DISABLED", "yes"}, "", "", true, "http://localhost:4317", false},
		{"bad exporter", []string{"OTEL_METRICS_EXPORTER", "zipkin"}, "", "OTEL_METRICS_EXPORTER", true, "http://localhost:4317", false},
		{"console", []string{"OTEL_METRICS_EXPORTER", "console"}, "", "", false, "", false},
		{"otlp and console", []string{"OTEL_METRICS_EXPORTER", "otlp, console"}, "", "", true, "http://localhost:4317", false},
		{"http/protobuf defaults to 4318", []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"}, "", "", true, "http://localhost:4318/v1/metrics", false},
		{"http/protobuf generic endpoint gets the signal path", []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT", "https://otlp-gateway.example.net/otlp"}, "", "", true, "https://otlp-gateway.example.net:443/otlp/v1/metrics", false},
		{"http/protobuf signal endpoint as is", []string{"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://127.0.0.1:9090/api/v1/otlp/v1/metrics"}, "", "", true, "http://127.0.0.1:9090/api/v1/otlp/v1/metrics", false},
		{"bad protocol", []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"}, "", "OTEL_EXPORTER_OTLP_PROTOCOL", true, "http://localhost:4317", false},
		{"host:port on loopback is plaintext", []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "127.0.0.1:4317"}, "", "", true, "http://127.0.0.1:4317", false},
		{"host:port elsewhere is TLS", []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "collector.example.net:4317"}, "", "", true, "https://collector.example.net:4317", false},
		{"host:port with INSECURE is plaintext", []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "collector.example.net:4317", "OTEL_EXPORTER_OTLP_INSECURE", "true"}, "", "", true, "http://collector.example.net:4317", false},
		{"bad endpoint", []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "collector"}, "OTEL_EXPORTER_OTLP_ENDPOINT", "", false, "", false},
		{"bad scheme", []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://x:1"}, "OTEL_EXPORTER_OTLP_ENDPOINT", "", false, "", false},
		{"bad compression", []string{"OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"}, "", "OTEL_EXPORTER_OTLP_COMPRESSION", true, "http://localhost:4317", false},
		{"bad temporality", []string{"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "sometimes"}, "", "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", true, "http://localhost:4317", false},
		{"delta temporality", []string{"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "Delta"}, "", "", true, "http://localhost:4317", false},
		{"bad interval", []string{"OTEL_METRIC_EXPORT_INTERVAL", "10s"}, "", "OTEL_METRIC_EXPORT_INTERVAL", true, "http://localhost:4317", false},
		{"zero interval takes the default", []string{"OTEL_METRIC_EXPORT_INTERVAL", "0"}, "", "OTEL_METRIC_EXPORT_INTERVAL", true, "http://localhost:4317", false},
		{"unknown sampler", []string{"OTEL_TRACES_SAMPLER", "sometimes"}, "", "OTEL_TRACES_SAMPLER", true, "http://localhost:4317", false},
		{"bad sampler ratio", []string{"OTEL_TRACES_SAMPLER", "traceidratio", "OTEL_TRACES_SAMPLER_ARG", "half"}, "", "OTEL_TRACES_SAMPLER_ARG", true, "http://localhost:4317", false},
		{"unknown propagator", []string{"OTEL_PROPAGATORS", "b3"}, "", "OTEL_PROPAGATORS", true, "http://localhost:4317", false},
		{"bad traces compression", []string{"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "br"}, "", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", true, "http://localhost:4317", false},
		{"bad Prometheus port", []string{"OTEL_METRICS_EXPORTER", "none", "OTEL_EXPORTER_PROMETHEUS_PORT", "http"}, "", "OTEL_EXPORTER_PROMETHEUS_PORT", false, "", false},
		{"http/protobuf signal host:port gets the signal path", []string{"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "127.0.0.1:4318"}, "", "", true, "http://127.0.0.1:4318/v1/metrics", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs strings.Builder
			p, err := NewProvider(ctx, ProviderOptions{Getenv: testutil.Env(tt.env...), Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if tt.wantErr != "" {
				if err == nil || !contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				_ = p.Shutdown(sctx)
			}()
			warned := contains(logs.String(), "level=WARN") && contains(logs.String(), "using the default")
			if tt.warn != "" && (!warned || !contains(logs.String(), "variable="+tt.warn)) {
				t.Errorf("no warning naming %s:\n%s", tt.warn, logs.String())
			}
			if tt.warn == "" && warned {
				t.Errorf("unexpected warning:\n%s", logs.String())
			}
			if p.Exporting != tt.export || p.Endpoint != tt.endpoint || p.Disabled != tt.disabled {
				t.Fatalf("exporting %v to %q, disabled %v; want %v to %q, %v", p.Exporting, p.Endpoint, p.Disabled, tt.export, tt.endpoint, tt.disabled)
			}
		})
	}
}

func TestResolveExportIntervalAndTemporality(t *testing.T) {
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	s, err := resolveExport(testutil.Env("OTEL_METRIC_EXPORT_INTERVAL", "0", "OTEL_METRIC_EXPORT_TIMEOUT", "2500"), log)
	if err != nil {
		t.Fatal(err)
	}
	if s.interval != defaultInterval || s.timeout != 2500*time.Millisecond {
		t.Fatalf("interval %s timeout %s", s.interval, s.timeout)
	}
	if !strings.Contains(logs.String(), "OTEL_METRIC_EXPORT_INTERVAL") {
		t.Fatalf("a zero interval was not logged: %q", logs.String())
	}
	for pref, want := range map[string][2]metricdata.Temporality{
		"cumulative": {metricdata.CumulativeTemporality, metricdata.CumulativeTemporality},
		"delta":      {metricdata.DeltaTemporality, metricdata.CumulativeTemporality},
		"lowmemory":  {metricdata.CumulativeTemporality, metricdata.CumulativeTemporality},
	} {
		sel := temporalitySelector(pref)
		got := [2]metricdata.Temporality{sel(sdkmetric.InstrumentKindObservableCounter), sel(sdkmetric.InstrumentKindObservableUpDownCounter)}
		if got != want {
			t.Errorf("%s: observable counter %v, updown %v; want %v", pref, got[0], got[1], want)
		}
	}
	if temporalitySelector("lowmemory")(sdkmetric.InstrumentKindHistogram) != metricdata.DeltaTemporality {
		t.Error("lowmemory: histograms are not delta")
	}
}

// TestPrometheusExporterServes: OTEL_METRICS_EXPORTER=prometheus serves the
// spec's pull endpoint with the provider's instruments.
func TestPrometheusExporterServes(t *testing.T) {
	p, err := NewProvider(context.Background(), ProviderOptions{Getenv: testutil.Env(
		"OTEL_METRICS_EXPORTER", "prometheus", "OTEL_EXPORTER_PROMETHEUS_HOST", "127.0.0.1", "OTEL_EXPORTER_PROMETHEUS_PORT", "0")})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	c, _ := p.Meter.Int64Counter("workerscope.test.things")
	c.Add(context.Background(), 3)
	resp, err := http.Get("http://" + p.prom.ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "workerscope_test_things_total") {
		t.Fatalf("%d %s", resp.StatusCode, b)
	}
}

// TestDisabledKeepsTheResourceNames: with the SDK off, the resource (and
// so the names profiles use) still follows OTEL_RESOURCE_ATTRIBUTES.
func TestDisabledKeepsTheResourceNames(t *testing.T) {
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "service.instance.id=from-env")
	t.Setenv("OTEL_SERVICE_NAME", "agents")
	p, err := NewProvider(context.Background(), ProviderOptions{InstanceID: "random", Getenv: testutil.Env("OTEL_SDK_DISABLED", "true")})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Disabled || p.InstanceID != "from-env" || p.ServiceName != "agents" {
		t.Fatalf("disabled %v, instance %q, service %q", p.Disabled, p.InstanceID, p.ServiceName)
	}
}

func TestResourceAttributes(t *testing.T) {
	p, err := NewProvider(context.Background(), ProviderOptions{
		Version: "1.2.3", InstanceID: "inst-1",
		Getenv: testutil.Env("OTEL_METRICS_EXPORTER", "none"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	for k, want := range map[string]string{"service.name": "workerscope", "service.version": "1.2.3", "service.instance.id": "inst-1"} {
		v, ok := p.Resource.Set().Value(attribute.Key(k))
		if !ok || v.AsString() != want {
			t.Errorf("%s = %q, want %q", k, v.AsString(), want)
		}
	}
	if _, ok := p.Resource.Set().Value("host.name"); !ok {
		t.Error("host.name missing")
	}
}

// TestRuntimeProducerFreshEachCollection: two collections a few
// milliseconds apart carry different timestamps (the contrib default would
// repeat one for 15 s, which Prometheus-compatible backends can reject).
func TestRuntimeProducerFreshEachCollection(t *testing.T) {
	p := newRuntimeProducer()
	stamp := func() time.Time {
		sms, err := p.Produce(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		h := sms[0].Metrics[0].Data.(metricdata.Histogram[float64])
		return h.DataPoints[0].Time
	}
	first := stamp()
	time.Sleep(5 * time.Millisecond)
	if second := stamp(); !second.After(first) {
		t.Fatalf("second collection stamped %v, first %v", second, first)
	}
}
