//go:build !linux

package workers

import (
	"github.com/workerscope/workerscope/workers/internal/cost"
)

// Command cost needs /proc: elsewhere RPCResult.Cost is nil.
func (p *platform) canReadTrees() bool                  { return false }
func (p *platform) readTree(*worker, *cost.Sample) bool { return false }
