//go:build linux

package cgroup

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSelf(t *testing.T) {
	v2, v1 := ParseSelf([]byte("12:cpu,cpuacct:/a\n4:memory:/process_api/x\n9:name=systemd:/\n0::/user.slice\nbogus\n"))
	if v2 != "/user.slice" || v1["cpu"] != "/a" || v1["cpuacct"] != "/a" || v1["memory"] != "/process_api/x" || v1["name=systemd"] != "/" {
		t.Fatalf("v2 %q v1 %v", v2, v1)
	}
}

func mk(t *testing.T, root string, files ...string) {
	for _, f := range files {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCreateV1AndShim creates a group on a fake hybrid tree, checks the
// limit files, runs the placement shim for real (it writes 0 to each
// cgroup.procs, then execs the command) and removes the group.
func TestCreateV1AndShim(t *testing.T) {
	root := t.TempDir()
	mk(t, root, "memory/cgroup.procs", "pids/cgroup.procs", "cpu/cgroup.procs", "unified/cgroup.procs", "unified/cgroup.kill")
	l := Detect(root, []byte("8:pids:/\n4:memory:/\n1:cpu,cpuacct:/\n0::/\n"))
	p, err := PlanV1(l, []Controller{Memory, Pids, CPU})
	if err != nil || p.V2Base == "" || !p.Kill || len(p.Enforced) != 3 {
		t.Fatalf("plan %+v, %v", p, err)
	}
	// In a real cgroup the kernel creates the control files; here they are
	// made by hand, so the group is assembled without Create's mkdir.
	name := "workerscope-wtest-1"
	g := &Group{Name: name, V2: filepath.Join(root, "unified", name), V1: map[Controller]string{}, kill: true}
	mk(t, g.V2, "cgroup.procs")
	for c, files := range map[Controller][]string{Memory: {"memory.limit_in_bytes", "cgroup.procs"}, Pids: {"pids.max", "cgroup.procs"},
		CPU: {"cpu.cfs_period_us", "cpu.cfs_quota_us", "cgroup.procs"}} {
		g.V1[c] = filepath.Join(root, string(c), name)
		mk(t, g.V1[c], files...)
	}
	if err := g.apply(&p, Limits{MemoryBytes: 64 << 20, Pids: 40, CPUCores: 0.5}); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{"memory/" + name + "/memory.limit_in_bytes": "67108864", "pids/" + name + "/pids.max": "40",
		"cpu/" + name + "/cpu.cfs_quota_us": "50000", "cpu/" + name + "/cpu.cfs_period_us": "100000"} {
		if b, _ := os.ReadFile(filepath.Join(root, f)); string(b) != want {
			t.Errorf("%s = %q, want %q", f, b, want)
		}
	}
	argv := g.ShimArgs("/bin/sh", []string{"/bin/sh", "-c", `echo "ran $1"`, "x", "arg with space"})
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ran arg with space" {
		t.Fatalf("shim: %q %v", out, err)
	}
	for _, f := range g.V1Procs() {
		if b, _ := os.ReadFile(f); strings.TrimSpace(string(b)) != "0" {
			t.Errorf("%s = %q, want the shim's 0", f, b)
		}
	}
	if lo := FindLeftovers(l.Bases(), "workerscope-wtest-"); len(lo) != 1 || len(lo[0].Dirs) != 4 {
		t.Fatalf("leftovers %+v", lo)
	}
	// A shim that cannot join a group fails instead of running unconfined.
	bad := &Group{V1: map[Controller]string{Memory: filepath.Join(root, "nonexistent")}}
	argv = bad.ShimArgs("/bin/sh", []string{"/bin/echo", "unconfined"})
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err == nil || strings.Contains(string(out), "unconfined") {
		t.Fatalf("shim ran the worker outside its cgroup: %q %v", out, err)
	}
}
