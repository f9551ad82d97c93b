//go:build unix

package testutil

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// PublicDir is a temporary directory every uid can enter (t.TempDir's
// parent is 0700), removed at cleanup: for worker uids (tier 2).
func PublicDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "workerscope-iso-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// PublicExe copies the calling test binary (which doubles as demo worker
// and sandbox helper) into a PublicDir: go test builds it under a 0700
// directory that a worker uid cannot enter.
func PublicExe(t testing.TB) string {
	t.Helper()
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	exe := filepath.Join(PublicDir(t), filepath.Base(os.Args[0]))
	dst, err := os.OpenFile(exe, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return exe
}
