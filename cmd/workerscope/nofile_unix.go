//go:build unix

package main

import "syscall"

// nofileLimit is the process's soft RLIMIT_NOFILE (0 when unknown). Go
// raises the soft limit to the hard one at start-up, so this is the limit
// the server actually runs with.
func nofileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return uint64(rl.Cur)
}
