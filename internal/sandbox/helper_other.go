//go:build !linux

package sandbox

import (
	"errors"
	"fmt"
	"os"
)

var errUnsupported = errors.New("sandbox: worker isolation (uids, Landlock) is supported on Linux only")

// ABI reports that Landlock is Linux-only.
func ABI() (int, error) { return 0, errUnsupported }

// Supported reports whether this platform can run the helper at all.
func Supported() bool { return false }

// Main fails: the helper exists on Linux only.
func Main() int {
	fmt.Fprintln(os.Stderr, "workerscope sandbox:", errUnsupported)
	return 126
}
