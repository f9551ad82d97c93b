//go:build !linux

package sampler

// NewProcessSampler returns the platform's ProcessSampler: gopsutil where
// there is no /proc.
func NewProcessSampler() (ProcessSampler, error) { return NewGopsutilSampler(), nil }
