//go:build !linux

package workers

// Command cost needs /proc: elsewhere RPCResult.Cost is nil.
func (p *platform) canReadTrees() bool                 { return false }
func (p *platform) readTree(*worker, *treeSample) bool { return false }
