package demoworker

import (
	"errors"
	"syscall"
	"time"
)

// threadCPU is unknown here: burns fall back to wall time.
func threadCPU() (time.Duration, bool) { return 0, false }

// setsid: there are no sessions; the child starts as usual.
func setsid() *syscall.SysProcAttr { return nil }

// escape: there are no sessions to leave.
func escape(int) (int, error) { return 0, errors.New("escape: not on Windows") }
