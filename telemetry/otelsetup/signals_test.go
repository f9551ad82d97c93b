package otelsetup

import (
	"strings"
	"testing"
)

func mapEnv(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestResolveSignal: traces and logs resolve like metrics, signal-specific
// variables first.
func TestResolveSignal(t *testing.T) {
	for _, tc := range []struct {
		env                 map[string]string
		signal              string
		exporters, endpoint string
		err                 string
	}{
		{map[string]string{}, "TRACES", "[otlp]", "http://localhost:4317", ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "LOGS", "[otlp]", "http://localhost:4318/v1/logs", ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": "https://gw.example/otlp"}, "TRACES", "[otlp]", "https://gw.example:443/otlp/v1/traces", ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector:4317", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://other:4317"}, "TRACES", "[otlp]", "https://collector:4317", ""},
		{map[string]string{"OTEL_LOGS_EXPORTER": "none"}, "LOGS", "[]", "http://localhost:4317", ""},
		{map[string]string{"OTEL_TRACES_EXPORTER": "console,otlp"}, "TRACES", "[console otlp]", "http://localhost:4317", ""},
		{map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, "TRACES", "", "", "OTEL_TRACES_EXPORTER"},
		{map[string]string{"OTEL_EXPORTER_OTLP_LOGS_COMPRESSION": "br"}, "LOGS", "", "", "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION"},
	} {
		s, err := resolveSignal(mapEnv(tc.env), tc.signal)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%v: error %v, want one naming %s", tc.env, err, tc.err)
			}
			continue
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

// TestSamplerFromEnv: the spec's samplers, and a bad one named.
func TestSamplerFromEnv(t *testing.T) {
	for _, tc := range []struct{ name, arg, want string }{
		{"", "", "ParentBased{root:AlwaysOnSampler"},
		{"always_off", "", "AlwaysOffSampler"},
		{"traceidratio", "0.25", "TraceIDRatioBased{0.25}"},
		{"parentbased_traceidratio", "0.5", "ParentBased{root:TraceIDRatioBased{0.5}"},
	} {
		s, err := samplerFromEnv(mapEnv(map[string]string{"OTEL_TRACES_SAMPLER": tc.name, "OTEL_TRACES_SAMPLER_ARG": tc.arg}))
		if err != nil || !strings.HasPrefix(s.Description(), tc.want) {
			t.Errorf("%s/%s: %v %v, want %s", tc.name, tc.arg, s, err, tc.want)
		}
	}
	for _, env := range []map[string]string{{"OTEL_TRACES_SAMPLER": "sometimes"}, {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}} {
		if _, err := samplerFromEnv(mapEnv(env)); err == nil {
			t.Errorf("%v accepted", env)
		}
	}
}
