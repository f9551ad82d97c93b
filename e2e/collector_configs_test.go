//go:build linux

package e2e

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// collectorConfigEnv are dummies for every variable a shipped collector
// config requires (validate checks structure and component settings; it
// connects to nothing).
var collectorConfigEnv = []string{
	"OTELCOL_FILE_PATH=/nonexistent/otel.jsonl",
	"GRAFANA_CLOUD_OTLP_ENDPOINT=https://otlp-gateway.invalid/otlp",
	"GRAFANA_CLOUD_BASIC_AUTH=aWQ6dG9rZW4=",
	"HONEYCOMB_API_KEY=dummy-key",
	"OTELCOL_GATEWAY_ENDPOINT=https://otel-gateway.invalid:4318",
	"OTELCOL_GATEWAY_TOKEN=dummy-token",
	"OTELCOL_QUEUE_DIR=/nonexistent/queue",
}

// TestCollectorConfigsValidate runs `otelcol validate` on every shipped
// combination of collector configs, with the collector built from
// deploy/otelcol, so a component missing from the build, a misspelt key
// or a pipeline naming an unknown component fails here and not on a host.
func TestCollectorConfigsValidate(t *testing.T) {
	bin := collectorBinary(t)
	d := filepath.Join(repoRoot(t), "deploy")
	combos := map[string][]string{
		"base":                  {"otel-collector.yaml"},
		"base+test":             {"otel-collector.yaml", "otel-collector.test.yaml"},
		"base+prometheus":       {"otel-collector.yaml", "otel-collector.prometheus.yaml"},
		"base+grafana-cloud":    {"otel-collector.yaml", "backends/grafana-cloud.yaml"},
		"base+honeycomb":        {"otel-collector.yaml", "backends/honeycomb.yaml"},
		"agent":                 {"otel-collector.yaml", "backends/gateway.yaml"},
		"gateway":               {"otel-collector-gateway.yaml"},
		"gateway+grafana-cloud": {"otel-collector-gateway.yaml", "gateway/grafana-cloud.yaml"},
		"gateway+honeycomb":     {"otel-collector-gateway.yaml", "gateway/honeycomb.yaml"},
		"gateway+prometheus":    {"otel-collector-gateway.yaml", "gateway/prometheus.yaml"},
	}
	validate := func(env []string, files ...string) (string, error) {
		args := []string{"validate"}
		for _, f := range files {
			args = append(args, "--config", filepath.Join(d, f))
		}
		cmd := exec.Command(bin, args...)
		cmd.Env = append(cmd.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// Every shipped overlay is in some combination: a new file in
	// backends/ or gateway/ fails here until it is validated.
	overlays, _ := filepath.Glob(filepath.Join(d, "backends", "*.yaml"))
	more, _ := filepath.Glob(filepath.Join(d, "gateway", "*.yaml"))
	for _, o := range append(overlays, more...) {
		rel, _ := filepath.Rel(d, o)
		found := false
		for _, files := range combos {
			found = found || slices.Contains(files, rel)
		}
		if !found {
			t.Errorf("overlay %s is in no validated combination", rel)
		}
	}
	for name, files := range combos {
		t.Run(name, func(t *testing.T) {
			if out, err := validate(collectorConfigEnv, files...); err != nil {
				t.Fatalf("otelcol validate %s: %v\n%s", strings.Join(files, " + "), err, out)
			}
		})
	}
	// Every shipped overlay is in some combination above, so a new file
	// cannot go unvalidated.
	t.Run("every-shipped-config-covered", func(t *testing.T) {
		covered := map[string]bool{}
		for _, files := range combos {
			for _, f := range files {
				covered[f] = true
			}
		}
		for _, pattern := range []string{"*.yaml", "backends/*.yaml", "gateway/*.yaml"} {
			found, _ := filepath.Glob(filepath.Join(d, pattern))
			for _, f := range found {
				rel, _ := filepath.Rel(d, f)
				if rel == "otelcol-builder.yaml" {
					continue // the builder manifest, not a collector config
				}
				if !covered[rel] {
					t.Errorf("deploy/%s is in no validated combination", rel)
				}
			}
		}
	})
	// The check is not vacuous: a required variable left empty fails.
	t.Run("agent-without-endpoint-fails", func(t *testing.T) {
		if _, err := validate(append(collectorConfigEnv, "OTELCOL_GATEWAY_ENDPOINT="), combos["agent"]...); err == nil {
			t.Fatal("the agent config validated without OTELCOL_GATEWAY_ENDPOINT")
		}
	})
}
