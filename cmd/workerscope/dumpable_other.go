//go:build !linux

package main

// closeToWorkers has no portable equivalent of Linux's PR_SET_DUMPABLE;
// on macOS a same-uid process cannot read another's environment without
// task_for_pid rights, which workers lack.
func closeToWorkers() (string, error) { return "unchanged (not Linux)", nil }
