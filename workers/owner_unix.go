//go:build unix

package workers

import (
	"os"
	"syscall"
)

// fileOwner returns the uid owning the file st describes.
func fileOwner(st os.FileInfo) (int, bool) {
	s, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(s.Uid), true
}
