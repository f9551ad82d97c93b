//go:build unix

package workers

import (
	"os"
	"syscall"
)

// tryLock takes an exclusive lock on f without waiting; it fails when
// another process holds one. The lock lives as long as the process keeps
// f open, and dies with it.
func tryLock(f *os.File) error { return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) }
