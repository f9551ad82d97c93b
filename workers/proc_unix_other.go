//go:build unix && !linux

package workers

import (
	"os/exec"
	"syscall"
)

func platformSupported() error { return nil }

// startInGroup makes the worker the leader of a new process group.
func startInGroup(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

// signalGroup signals the process group led by pid.
func signalGroup(pid int, sig syscall.Signal) error { return syscall.Kill(-pid, sig) }
