package otelsetup

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

func envMap(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func TestProviderEnv(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		env     []string
		wantErr string
		export  bool
	}{
		{"default exports to local collector", nil, "", true},
		{"none", []string{"OTEL_METRICS_EXPORTER", "none"}, "", false},
		{"disabled", []string{"OTEL_SDK_DISABLED", "true"}, "", false},
		{"bad disabled", []string{"OTEL_SDK_DISABLED", "perhaps"}, "OTEL_SDK_DISABLED", false},
		{"bad exporter", []string{"OTEL_METRICS_EXPORTER", "zipkin"}, "OTEL_METRICS_EXPORTER", false},
		{"http protocol", []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"}, "gRPC only", false},
		{"bad interval", []string{"OTEL_METRIC_EXPORT_INTERVAL", "10s"}, "OTEL_METRIC_EXPORT_INTERVAL", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewProvider(ctx, ProviderOptions{Getenv: envMap(tt.env...)})
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
			if p.Exporting != tt.export {
				t.Fatalf("exporting = %v", p.Exporting)
			}
		})
	}
}

func TestResourceAttributes(t *testing.T) {
	p, err := NewProvider(context.Background(), ProviderOptions{
		Version: "1.2.3", InstanceID: "inst-1",
		Getenv: envMap("OTEL_METRICS_EXPORTER", "none"),
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
