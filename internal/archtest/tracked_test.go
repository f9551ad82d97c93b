package archtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// maxTrackedBytes is the largest file the repository may hold: the
// biggest today is a 116 KB screenshot; a built binary is 25 MB.
const maxTrackedBytes = 1 << 20

// TestNoBuildOutputTracked: no build output or other large file is
// committed (a 25 MB bin/workerscope once was, at the root), and
// .gitignore keeps the build outputs out. Skips outside a git checkout.
func TestNoBuildOutputTracked(t *testing.T) {
	root := filepath.Join("..", "..")
	cmd := exec.Command("git", "ls-files", "-z")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("not a git checkout (%v)", err)
	}
	for _, name := range bytes.Split(bytes.TrimRight(out, "\x00"), []byte{0}) {
		path := filepath.Join(root, string(name))
		st, err := os.Lstat(path)
		if err != nil {
			continue // deleted in the working tree
		}
		if st.Size() > maxTrackedBytes {
			t.Errorf("%s is tracked and %d bytes (limit %d): build output or data that belongs elsewhere", name, st.Size(), maxTrackedBytes)
		}
		if st.Mode()&0o111 != 0 && !strings.HasSuffix(string(name), ".sh") && !strings.HasPrefix(string(name), ".ci/") {
			if b, err := os.ReadFile(path); err == nil && bytes.HasPrefix(b, []byte("\x7fELF")) {
				t.Errorf("%s is a tracked executable binary", name)
			}
		}
	}
	for _, built := range []string{"workerscope", "bin/workerscope", "bin/otelcol"} {
		cmd := exec.Command("git", "check-ignore", "-q", built)
		cmd.Dir = root
		if err := cmd.Run(); err != nil {
			t.Errorf(".gitignore does not ignore %s (a build output)", built)
		}
	}
}
