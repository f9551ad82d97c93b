package telemetry

import (
	"os"
	"testing"

	"github.com/workerscope/workerscope/workers/demoworker"
)

// TestMain lets the test binary double as the demo worker.
func TestMain(m *testing.M) {
	if os.Getenv(demoworker.RoleEnv) != "" {
		os.Exit(demoworker.Main())
	}
	os.Exit(m.Run())
}
