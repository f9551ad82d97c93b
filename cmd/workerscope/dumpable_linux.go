//go:build linux

package main

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// closeToWorkers makes the supervisor non-dumpable (prctl
// PR_SET_DUMPABLE 0): the kernel then gives its /proc/PID/{environ,mem,
// fd,maps,...} to root and refuses ptrace from processes of the same uid,
// so a worker running as the supervisor's user cannot read its token or
// telemetry credentials out of its memory or environment. Workers are
// unaffected: execve makes each worker dumpable again.
func closeToWorkers() (string, error) {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return "", fmt.Errorf("prctl(PR_SET_DUMPABLE, 0): %w", err)
	}
	return "not dumpable: /proc/PID/environ, mem and fd closed to workers of the same uid, no ptrace", nil
}
