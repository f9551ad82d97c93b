//go:build linux

package workerseries

import (
	"context"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/workerscope/workerscope/telemetry/otelmetrics"
	"github.com/workerscope/workerscope/telemetry/otelsetup"
	"github.com/workerscope/workerscope/telemetry/sampler"
	"github.com/workerscope/workerscope/workers/workerstest"
)

// TestPrometheusExposesTheSeries: the Prometheus exposition the binary
// serves (otelsetup.NewPrometheus with the series' producer) carries the
// per-worker series, with the worker's labels and the meter's scope.
func TestPrometheusExposesTheSeries(t *testing.T) {
	m := workerstest.NewDemoManager(t)
	workerstest.MustSend(t, m, "alpha", `{"type":"get_state"}`)
	series := New(instrumentation.Scope{Name: otelsetup.MeterName, Version: "v9"})
	reader, handler, err := otelsetup.NewPrometheus(series.Producer)
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	smp, err := sampler.New(m, sampler.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := otelmetrics.NewMetrics(mp.Meter(otelsetup.MeterName), otelmetrics.MetricsOptions{Sampler: smp, Stats: m, WorkerSeries: series}); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	var found bool
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "workerscope_worker_memory_usage_bytes{") {
			found = true
			for _, want := range []string{`workerscope_worker_key="alpha"`, `otel_scope_name="` + otelsetup.MeterName + `"`, `otel_scope_version="v9"`, "process_pid="} {
				if !strings.Contains(line, want) {
					t.Errorf("%s lacks %s", line, want)
				}
			}
		}
	}
	if !found || !strings.Contains(string(body), "workerscope_worker_count{") {
		t.Fatalf("no per-worker or pool series in the exposition:\n%s", body)
	}
}
