package otelmetrics

import (
	"os"
	"testing"

	"github.com/workerscope/workerscope/workers/demoworker"
)

// TestMain lets the test binary double as the demo worker and as an OTLP
// receiver (sinkEnv).
func TestMain(m *testing.M) {
	if os.Getenv(sinkEnv) != "" {
		os.Exit(runSink())
	}
	demoworker.TestMain(m)
}
