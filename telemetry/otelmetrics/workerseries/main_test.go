package workerseries

import (
	"testing"

	"github.com/workerscope/workerscope/workers/demoworker"
)

// TestMain lets the test binary double as the demo worker.
func TestMain(m *testing.M) { demoworker.TestMain(m) }
