//go:build !unix

package workers

import (
	"errors"
	"os"
)

// tryLock is unsupported without flock: leftover recovery is off.
func tryLock(*os.File) error { return errors.ErrUnsupported }
