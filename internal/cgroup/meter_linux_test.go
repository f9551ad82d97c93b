//go:build linux

package cgroup

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestMeterReadsEachLayout reads usage from fake groups laid out as each
// tier makes them: which figures each layout gives, in which units, and
// what a malformed or missing file does (the figure is unset, the others
// stand, the error says why).
func TestMeterReadsEachLayout(t *testing.T) {
	cpuStat := "usage_usec 3500\nuser_usec 2500\nsystem_usec 1000\nnice_usec 0\nnr_periods 4\n"
	for _, tc := range []struct {
		name    string
		v2ct    bool
		files   map[string]string // relative to the root: v2/…, memory/…, pids/…, cpu/…
		want    Usage
		wantErr bool
		pids    []int
	}{
		{name: "v2 with controllers", v2ct: true, files: map[string]string{
			"v2/cpu.stat": cpuStat, "v2/memory.current": "1048576\n", "v2/pids.current": "7\n", "v2/cgroup.procs": "10\n11\n",
			"v2/memory.stat": "anon 700000\nfile 300000\ninactive_anon 0\nactive_anon 700000\ninactive_file 262144\nactive_file 37856\n"},
			// the working set: the charge less the inactive file pages
			want: Usage{HasCPU: true, CPUUser: 2500 * time.Microsecond, CPUSystem: time.Millisecond, HasMemory: true, MemoryBytes: 1<<20 - 262144, MemoryCharged: 1 << 20, HasTasks: true, Tasks: 7},
			pids: []int{10, 11}},
		{name: "hybrid: membership group on v2, limits on v1", files: map[string]string{
			"v2/cpu.stat": cpuStat, "v2/cgroup.procs": "10\n", "memory/memory.usage_in_bytes": "4096\n", "pids/pids.current": "3\n",
			"memory/cgroup.procs": "10\n", "pids/cgroup.procs": "10\n",
			// v1: the hierarchical total_inactive_file, not the local inactive_file
			"memory/memory.stat": "cache 2048\ninactive_file 1\nactive_file 0\ntotal_cache 2048\ntotal_inactive_file 1024\n"},
			want: Usage{HasCPU: true, CPUUser: 2500 * time.Microsecond, CPUSystem: time.Millisecond, HasMemory: true, MemoryBytes: 3072, MemoryCharged: 4096, HasTasks: true, Tasks: 3},
			pids: []int{10}},
		{name: "v1 only, cpu,cpuacct co-mounted", files: map[string]string{
			"cpu/cpuacct.usage_user": "2000000000\n", "cpu/cpuacct.usage_sys": "5\n", "cpu/cgroup.procs": "", "memory/memory.usage_in_bytes": "8192\n", "memory/cgroup.procs": "12\n"},
			// no memory.stat: the working set is the charge
			want: Usage{HasCPU: true, CPUUser: 2 * time.Second, CPUSystem: 5, HasMemory: true, MemoryBytes: 8192, MemoryCharged: 8192}, pids: []int{12}},
		{name: "inactive file pages above the charge (read a moment apart): working set 0", v2ct: true, files: map[string]string{
			"v2/cpu.stat": cpuStat, "v2/memory.current": "4096\n", "v2/memory.stat": "inactive_file 8192\n", "v2/cgroup.procs": ""},
			want: Usage{HasCPU: true, CPUUser: 2500 * time.Microsecond, CPUSystem: time.Millisecond, HasMemory: true, MemoryBytes: 0, MemoryCharged: 4096}},
		{name: "memory.stat without the key: the charge", v2ct: true, files: map[string]string{
			"v2/cpu.stat": cpuStat, "v2/memory.current": "4096\n", "v2/memory.stat": "anon 4096\n", "v2/cgroup.procs": ""},
			want: Usage{HasCPU: true, CPUUser: 2500 * time.Microsecond, CPUSystem: time.Millisecond, HasMemory: true, MemoryBytes: 4096, MemoryCharged: 4096}},
		{name: "controller-less v2 group (Cgroups=required, no limits)", files: map[string]string{"v2/cpu.stat": cpuStat, "v2/cgroup.procs": "10\n"},
			want: Usage{HasCPU: true, CPUUser: 2500 * time.Microsecond, CPUSystem: time.Millisecond}, pids: []int{10}},
		{name: "malformed memory: memory unset, CPU stands", v2ct: true, files: map[string]string{
			"v2/cpu.stat": cpuStat, "v2/memory.current": "lots\n", "v2/cgroup.procs": ""},
			want: Usage{HasCPU: true, CPUUser: 2500 * time.Microsecond, CPUSystem: time.Millisecond}, wantErr: true},
		{name: "cpu.stat without user_usec", files: map[string]string{"v2/cpu.stat": "usage_usec 3\n", "v2/cgroup.procs": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			g := &Group{Name: "w", V1: map[Controller]string{}, v2ct: tc.v2ct}
			for f, body := range tc.files {
				dir, _ := filepath.Split(f)
				d := filepath.Join(root, dir)
				switch dir {
				case "v2/":
					g.V2 = d
				case "memory/":
					g.V1[Memory] = d
				case "pids/":
					g.V1[Pids] = d
				case "cpu/":
					g.V1[CPU] = d
				}
				mk(t, root, f)
				if err := os.WriteFile(filepath.Join(root, f), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			m, err := g.OpenMeter()
			if err != nil {
				t.Fatal(err)
			}
			var u Usage
			err = m.Read(ReadAll, &u)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Read error %v, want error %v", err, tc.wantErr)
			}
			if u != tc.want {
				t.Fatalf("usage %+v, want %+v", u, tc.want)
			}
			if err := m.Read(ReadCPU, &u); !tc.wantErr && err != nil || u.HasMemory || u.HasTasks {
				t.Fatalf("ReadCPU alone: %+v, %v", u, err)
			}
			pids, err := m.PIDs(nil)
			if err != nil || !slices.Equal(pids, tc.pids) {
				t.Fatalf("PIDs %v, %v, want %v", pids, err, tc.pids)
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			if err := m.Read(ReadAll, &u); err == nil || u.HasCPU {
				t.Fatalf("a closed meter read %+v", u)
			}
		})
	}
	if _, err := (&Group{Name: "empty", V2: t.TempDir()}).OpenMeter(); err == nil {
		t.Fatal("a group without usage files opened a meter")
	}
}

// TestMeterPIDsOfABigGroup reads a cgroup.procs larger than the first
// buffer whole.
func TestMeterPIDsOfABigGroup(t *testing.T) {
	dir := t.TempDir()
	var body []byte
	var want []int
	for pid := 100000; pid < 101000; pid++ {
		body = append(strconv.AppendInt(body, int64(pid), 10), '\n')
		want = append(want, pid)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), body, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cpu.stat"), []byte("user_usec 1\nsystem_usec 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := (&Group{Name: "big", V2: dir}).OpenMeter()
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	got, err := m.PIDs(nil)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("%d pids (%v), want %d", len(got), err, len(want))
	}
}
