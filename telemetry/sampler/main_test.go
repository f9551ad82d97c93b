package sampler

import (
	"os"
	"testing"

	"github.com/workerscope/workerscope/internal/sandbox"
	"github.com/workerscope/workerscope/workers/demoworker"
)

// TestMain lets the test binary double as the demo worker.
func TestMain(m *testing.M) {
	if os.Getenv(sandbox.RoleEnv) != "" { // the sandbox helper of isolated workers
		os.Exit(sandbox.Main())
	}
	demoworker.TestMain(m)
}
