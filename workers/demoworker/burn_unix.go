//go:build unix

package demoworker

import (
	"syscall"
	"time"
)

func threadCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}

// setsid is the SysProcAttr that starts a child in a new session.
func setsid() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }
