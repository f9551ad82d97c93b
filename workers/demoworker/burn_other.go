//go:build !linux && !windows

package demoworker

const rusageThread = 0 // RUSAGE_SELF: whole-process time, close enough here
