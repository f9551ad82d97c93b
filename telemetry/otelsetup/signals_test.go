package otelsetup

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// warnings records what a warnFunc was told, one variable=value a line.
type warnings []string

func (w *warnings) warn(key, v, why string, def any) { *w = append(*w, key+"="+v) }

func mapEnv(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestResolveSignal: traces and logs resolve like metrics, signal-specific
// variables first; an unknown value is warned about and the default used;
// a signal's bare host:port over http/protobuf gets the signal's path.
func TestResolveSignal(t *testing.T) {
	for _, tc := range []struct {
		env                 map[string]string
		signal              string
		exporters, endpoint string
		warn                string // a warning names it
	}{
		{map[string]string{}, "TRACES", "[otlp]", "http://localhost:4317", ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "LOGS", "[otlp]", "http://localhost:4318/v1/logs", ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": "https://gw.example/otlp"}, "TRACES", "[otlp]", "https://gw.example:443/otlp/v1/traces", ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector:4317", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4317"}, "TRACES", "[otlp]", "https://collector:4317", ""},
		{map[string]string{"OTEL_LOGS_EXPORTER": "none"}, "LOGS", "[]", "http://localhost:4317", ""},
		{map[string]string{"OTEL_TRACES_EXPORTER": "console,otlp"}, "TRACES", "[console otlp]", "http://localhost:4317", ""},
		{map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, "TRACES", "[otlp]", "http://localhost:4317", "OTEL_TRACES_EXPORTER"},
		{map[string]string{"OTEL_TRACES_EXPORTER": "zipkin,console"}, "TRACES", "[console]", "http://localhost:4317", "OTEL_TRACES_EXPORTER"},
		{map[string]string{"OTEL_EXPORTER_OTLP_LOGS_COMPRESSION": "br"}, "LOGS", "[otlp]", "http://localhost:4317", "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION"},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, "LOGS", "[otlp]", "http://localhost:4317", "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "127.0.0.1:4318"}, "TRACES", "[otlp]", "http://127.0.0.1:4318/v1/traces", ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "logs.example.net:4318"}, "LOGS", "[otlp]", "https://logs.example.net:4318/v1/logs", ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://gw:4318/custom"}, "LOGS", "[otlp]", "http://gw:4318/custom", ""},
	} {
		var w warnings
		s, err := resolveSignal(mapEnv(tc.env), tc.signal, slog.New(slog.DiscardHandler))
		// The same warnings, recorded: resolveSignal's parts.
		exportersFromEnv(mapEnv(tc.env), tc.signal, w.warn, "otlp", "console")
		_, _ = resolveOTLP(mapEnv(tc.env), tc.signal, w.warn)
		if got := strings.Join(w, " "); len(w) > 1 || (tc.warn == "") != (got == "") || !strings.Contains(got, tc.warn) {
			t.Errorf("%v: warnings %q, want one naming %q", tc.env, got, tc.warn)
		}
		if err != nil {
			t.Errorf("%v: %v", tc.env, err)
			continue
		}
		if got := strings.Join(append([]string{}, s.exporters...), " "); "["+got+"]" != tc.exporters {
			t.Errorf("%v: exporters %v, want %s", tc.env, s.exporters, tc.exporters)
		}
		if s.endpoint.String() != tc.endpoint {
			t.Errorf("%v: endpoint %s, want %s", tc.env, s.endpoint, tc.endpoint)
		}
	}
}

// TestSamplerFromEnv: the spec's samplers; an unknown sampler or a bad
// ratio is warned about and the default used (parentbased_always_on, ratio 1).
func TestSamplerFromEnv(t *testing.T) {
	for _, tc := range []struct{ name, arg, want string }{
		{"", "", "ParentBased{root:AlwaysOnSampler"},
		{"always_off", "", "AlwaysOffSampler"},
		{"traceidratio", "0.25", "TraceIDRatioBased{0.25}"},
		{"parentbased_traceidratio", "0.5", "ParentBased{root:TraceIDRatioBased{0.5}"},
	} {
		var w warnings
		s := samplerFromEnv(mapEnv(map[string]string{"OTEL_TRACES_SAMPLER": tc.name, "OTEL_TRACES_SAMPLER_ARG": tc.arg}), w.warn)
		if len(w) != 0 || !strings.HasPrefix(s.Description(), tc.want) {
			t.Errorf("%s/%s: %v (warnings %q), want %s", tc.name, tc.arg, s, w, tc.want)
		}
	}
	for _, tc := range []struct {
		env        map[string]string
		warn, want string
	}{
		{map[string]string{"OTEL_TRACES_SAMPLER": "sometimes"}, "OTEL_TRACES_SAMPLER=sometimes", "ParentBased{root:AlwaysOnSampler"},
		{map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, "OTEL_TRACES_SAMPLER_ARG=2", "TraceIDRatioBased{1}"},
		{map[string]string{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "half"}, "OTEL_TRACES_SAMPLER_ARG=half", "ParentBased{root:TraceIDRatioBased{1}"},
	} {
		var w warnings
		s := samplerFromEnv(mapEnv(tc.env), w.warn)
		if len(w) != 1 || w[0] != tc.warn || !strings.HasPrefix(s.Description(), tc.want) {
			t.Errorf("%v: %s (warnings %q), want %s and a warning %s", tc.env, s.Description(), w, tc.want, tc.warn)
		}
	}
}

// TestPropagatorFromEnv: OTEL_PROPAGATORS picks what is read from (and
// written to) request headers: tracecontext and baggage by default, none,
// or one of them; an unknown one is warned about and skipped.
func TestPropagatorFromEnv(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	h := http.Header{}
	h.Set("traceparent", tp)
	h.Set("baggage", "tenant=acme")
	for _, tc := range []struct {
		env                   string
		trace, baggage, warns bool
	}{
		{"", true, true, false},
		{"tracecontext,baggage", true, true, false},
		{"tracecontext", true, false, false},
		{" Baggage ", false, true, false},
		{"none", false, false, false},
		{"b3,tracecontext", true, false, true},
		{"b3", false, false, true},
	} {
		var w warnings
		p := propagatorFromEnv(mapEnv(map[string]string{"OTEL_PROPAGATORS": tc.env}), w.warn)
		ctx := p.Extract(t.Context(), propagation.HeaderCarrier(h))
		gotTrace := trace.SpanContextFromContext(ctx).TraceID().String() == "4bf92f3577b34da6a3ce929d0e0e4736"
		gotBaggage := baggage.FromContext(ctx).Member("tenant").Value() == "acme"
		if gotTrace != tc.trace || gotBaggage != tc.baggage || (len(w) > 0) != tc.warns {
			t.Errorf("OTEL_PROPAGATORS=%q: trace %v, baggage %v, warnings %q; want %v, %v, warning %v", tc.env, gotTrace, gotBaggage, w, tc.trace, tc.baggage, tc.warns)
		}
	}
}
