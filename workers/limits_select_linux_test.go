//go:build linux

package workers

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/workerscope/workerscope/internal/cgroup"
)

// fakeFS builds a fake cgroupfs: files maps relative paths to contents
// ("/" suffix: a directory).
func fakeFS(t *testing.T, files map[string]string) string {
	root := t.TempDir()
	for p, content := range files {
		full := filepath.Join(root, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

var (
	hybridFiles = map[string]string{
		"memory/cgroup.procs": "", "memory/process_api/abc/cgroup.procs": "",
		"pids/cgroup.procs": "", "cpu/cgroup.procs": "",
		"unified/cgroup.procs": "", "unified/cgroup.kill": "",
	}
	hybridSelf = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n1:cpu,cpuacct:/\n0::/\n"
	v2Self     = "0::/system.slice/ws.service\n"
)

func TestSelectTier(t *testing.T) {
	sh := "/bin/sh"
	for _, tc := range []struct {
		name    string
		files   map[string]string
		self    string
		cfg     Config
		tier    Tier
		enforce map[string]string
		errSub  string // New must fail
		reason  string
	}{
		{name: "no limits: membership groups", files: hybridFiles, self: hybridSelf, cfg: Config{Cgroups: CgroupsAuto},
			tier: TierCgroup1, reason: "no limits set (hybrid layout); membership and kill-all on the v2 hierarchy"},
		{name: "no limits, v2: membership groups", self: v2Self, files: map[string]string{
			"cgroup.controllers": "cpu memory pids", "system.slice/ws.service/cgroup.controllers": "",
			"system.slice/ws.service/cgroup.subtree_control": ""},
			cfg: Config{Cgroups: CgroupsAuto}, tier: TierCgroup2, reason: "no limits set; membership and kill-all in cgroup v2 groups in %ROOT%/system.slice/ws.service"},
		{name: "no limits, nothing mounted", files: map[string]string{"x/": ""}, self: hybridSelf, cfg: Config{Cgroups: CgroupsAuto},
			tier: TierOff, reason: "no limits set; no cgroups for exact membership and kill-all: no usable cgroups"},
		{name: "no limits, off", files: hybridFiles, self: hybridSelf, cfg: Config{Cgroups: CgroupsOff},
			tier: TierOff, reason: "no limits set; no cgroups for exact membership and kill-all: cgroups off by configuration"},
		{name: "hybrid all", files: hybridFiles, self: hybridSelf,
			cfg:  Config{Cgroups: CgroupsAuto, MemoryMax: 1 << 30, PidsMax: 10, CPUMax: 1},
			tier: TierCgroup1, enforce: map[string]string{"memory": "cgroup1", "pids": "cgroup1", "cpu": "cgroup1"}, reason: "membership"},
		{name: "hybrid without pids", files: map[string]string{"memory/cgroup.procs": "", "memory/process_api/abc/": ""}, self: hybridSelf,
			cfg:  Config{Cgroups: CgroupsAuto, MemoryMax: 1 << 30, PidsMax: 10, CPUMax: 1},
			tier: TierCgroup1, enforce: map[string]string{"memory": "cgroup1", "pids": "watchdog", "cpu": "none"}, reason: "pids controller not mounted"},
		{name: "hybrid without pids required", files: map[string]string{"memory/cgroup.procs": "", "memory/process_api/abc/": ""}, self: hybridSelf,
			cfg: Config{Cgroups: CgroupsRequired, MemoryMax: 1 << 30, PidsMax: 10}, errSub: "pids controller not mounted"},
		{name: "off", files: hybridFiles, self: hybridSelf, cfg: Config{Cgroups: CgroupsOff, MemoryMax: 1 << 30, CPUMax: 1},
			tier: TierWatchdog, enforce: map[string]string{"memory": "watchdog", "cpu": "none"}, reason: "off by configuration"},
		{name: "nothing mounted", files: map[string]string{"x/": ""}, self: hybridSelf, cfg: Config{Cgroups: CgroupsAuto, PidsMax: 5},
			tier: TierWatchdog, enforce: map[string]string{"pids": "watchdog"}, reason: "no usable cgroups"},
		{name: "nothing mounted required", files: map[string]string{"x/": ""}, self: hybridSelf, cfg: Config{Cgroups: CgroupsRequired, PidsMax: 5},
			errSub: "required"},
		{name: "required without limits: membership groups", files: hybridFiles, self: hybridSelf, cfg: Config{Cgroups: CgroupsRequired},
			tier: TierCgroup1},
		{name: "v2 delegated", self: v2Self, files: map[string]string{
			"cgroup.controllers": "cpu memory pids", "system.slice/ws.service/cgroup.controllers": "cpu io memory pids",
			"system.slice/ws.service/cgroup.subtree_control": "", "system.slice/ws.service/cgroup.kill": ""},
			cfg:  Config{Cgroups: CgroupsAuto, MemoryMax: 1 << 30, CPUMax: 0.5},
			tier: TierCgroup2, enforce: map[string]string{"memory": "cgroup2", "cpu": "cgroup2"}, reason: "ws.service"},
		{name: "v2 controller not delegated", self: v2Self, files: map[string]string{
			"cgroup.controllers": "cpu memory pids", "system.slice/ws.service/cgroup.controllers": "memory",
			"system.slice/ws.service/cgroup.subtree_control": ""},
			cfg:  Config{Cgroups: CgroupsAuto, MemoryMax: 1 << 30, PidsMax: 9},
			tier: TierWatchdog, enforce: map[string]string{"memory": "watchdog", "pids": "watchdog"}, reason: "pids not delegated"},
		{name: "v2 internal processes", self: v2Self, files: map[string]string{
			"cgroup.controllers": "cpu memory pids", "system.slice/ws.service/cgroup.controllers": "memory pids",
			// a directory: the write fails as EBUSY would
			"system.slice/ws.service/cgroup.subtree_control/": ""},
			cfg: Config{Cgroups: CgroupsRequired, MemoryMax: 1 << 30}, errSub: "cannot enable +memory"},
		{name: "v2 supervisor leaf", self: "0::/system.slice/ws.service/supervisor\n", files: map[string]string{
			"cgroup.controllers": "cpu memory pids",
			"system.slice/ws.service/supervisor/cgroup.controllers":      "memory pids",
			"system.slice/ws.service/supervisor/cgroup.subtree_control/": "",
			"system.slice/ws.service/cgroup.controllers":                 "memory pids",
			"system.slice/ws.service/cgroup.subtree_control":             "memory pids"},
			cfg:  Config{Cgroups: CgroupsRequired, PidsMax: 9},
			tier: TierCgroup2, enforce: map[string]string{"pids": "cgroup2"}, reason: "groups in " + "%ROOT%/system.slice/ws.service"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeFS(t, tc.files)
			l := cgroup.Detect(root, []byte(tc.self))
			li, plan, err := selectTier(&tc.cfg, l, sh)
			if tc.errSub != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSub) {
					t.Fatalf("err = %v, want one containing %q", err, tc.errSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if li.Tier != tc.tier {
				t.Fatalf("tier %q (%s), want %q", li.Tier, li.Reason, tc.tier)
			}
			if want := strings.ReplaceAll(tc.reason, "%ROOT%", root); !strings.Contains(li.Reason, want) {
				t.Fatalf("reason %q does not mention %q", li.Reason, want)
			}
			for k, v := range tc.enforce {
				if li.Enforcement[k] != v {
					t.Fatalf("enforcement %v, want %s=%s", li.Enforcement, k, v)
				}
			}
			if (plan != nil) != li.Cgroups {
				t.Fatalf("plan %v with Cgroups=%v", plan, li.Cgroups)
			}
			// No probe groups are left behind.
			_ = filepath.WalkDir(root, func(p string, d os.DirEntry, _ error) error {
				if strings.Contains(p, "workerscope-probe") {
					t.Errorf("probe left: %s", p)
				}
				return nil
			})
		})
	}
}
