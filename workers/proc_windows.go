package workers

import (
	"errors"
	"os/exec"
	"syscall"
)

// ErrUnsupportedOS is returned by New on Windows.
var ErrUnsupportedOS = errors.New("workers: Windows is not supported: stopping a worker's whole process tree needs POSIX process groups and signals; run workerscope on Linux or macOS (or in WSL)")

func platformSupported() error { return ErrUnsupportedOS }

func startInGroup(*exec.Cmd) {}

func signalGroup(int, syscall.Signal) error { return ErrUnsupportedOS }
