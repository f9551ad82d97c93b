//go:build !linux

package sandbox

// CheckIdentityCaps fails: per-worker uids are Linux-only here.
func CheckIdentityCaps() (bool, error) { return false, errUnsupported }
