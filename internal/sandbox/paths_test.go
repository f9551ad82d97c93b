package sandbox

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestCommandTrees: an npm-installed CLI (a symlink in node_modules/.bin
// to a "#!/usr/bin/env node" script) needs its node_modules tree and the
// interpreter's installation prefix.
func TestCommandTrees(t *testing.T) {
	root := t.TempDir()
	nodeBin := filepath.Join(root, "node", "bin")
	pkg := filepath.Join(root, "app", "node_modules", "@x", "cli", "dist")
	binDir := filepath.Join(root, "app", "node_modules", ".bin")
	for _, d := range []string{nodeBin, pkg, binDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(nodeBin, "node"), []byte("\x7fELF"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pkg, "cli.js"), []byte("#!/usr/bin/env node\nconsole.log(1)\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../@x/cli/dist/cli.js", filepath.Join(binDir, "cli")); err != nil {
		t.Fatal(err)
	}
	got := CommandTrees("cli", binDir+":"+nodeBin)
	for _, want := range []string{binDir, filepath.Join(root, "app", "node_modules"), filepath.Join(root, "node")} {
		if !slices.Contains(got, want) {
			t.Errorf("CommandTrees = %v, lacks %s", got, want)
		}
	}
	if CommandTrees("no-such-program", binDir) != nil {
		t.Error("a missing program has trees")
	}
}

func TestOthersCanExec(t *testing.T) {
	dir := t.TempDir() // 0700
	exe := filepath.Join(dir, "w")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := OthersCanExec(exe); err == nil || !strings.Contains(err.Error(), "o+x") {
		t.Fatalf("OthersCanExec under a 0700 directory = %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Chmod(filepath.Dir(dir), 0o755) != nil || OthersCanReach(filepath.Dir(filepath.Dir(dir))) != nil {
		t.Skip("the temporary directory's parents are not reachable by others here")
	}
	if err := OthersCanExec(exe); err != nil {
		t.Fatalf("OthersCanExec = %v", err)
	}
	if err := os.Chmod(exe, 0o751); err != nil {
		t.Fatal(err)
	}
	if err := OthersCanExec(exe); err == nil || !strings.Contains(err.Error(), "script") {
		t.Fatalf("OthersCanExec of an unreadable script = %v", err)
	}
}
