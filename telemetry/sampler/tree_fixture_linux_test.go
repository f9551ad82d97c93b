//go:build linux

package sampler

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/workerscope/workerscope/internal/procfs"
	"github.com/workerscope/workerscope/workers"
)

// fixtureProc is one process line of a fixture (see testdata/README.md).
type fixtureProc struct {
	pid, ppid                           int
	state                               string
	utime, stime, cutime, cstime        uint64
	minflt, majflt, rss, threads, start uint64
	fds                                 int
	marker                              string
}

type fixtureExpect struct {
	id                           string
	gone                         bool
	cpu, procs, faults, rss, fds int64
	defunct                      int64
	hasDefunct                   bool
	line                         int
}

type fixturePass struct {
	procs  []fixtureProc
	expect []fixtureExpect
}

// readFixture parses a scenario of testdata/.
func readFixture(t *testing.T, path string) ([]workers.WorkerSnapshot, []fixturePass) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ws []workers.WorkerSnapshot
	var passes []fixturePass
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		fields := strings.Fields(line)
		bad := func(err error) { t.Fatalf("%s:%d: %v: %q", path, n, err, line) }
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case fields[0] == "workers":
			for _, w := range fields[1:] {
				parts := strings.Split(w, ":")
				if len(parts) != 3 {
					bad(fmt.Errorf("want id:pid:start"))
				}
				pid, _ := strconv.Atoi(parts[1])
				start, _ := strconv.ParseUint(parts[2], 10, 64)
				ws = append(ws, workers.WorkerSnapshot{ID: parts[0], Key: parts[0], PID: pid, StartTicks: start, State: workers.StateIdle})
			}
		case line == "== pass":
			passes = append(passes, fixturePass{})
		case fields[0] == "expect":
			e := fixtureExpect{id: fields[1], line: n}
			for _, kv := range fields[2:] {
				if kv == "gone" {
					e.gone = true
					continue
				}
				k, v, _ := strings.Cut(kv, "=")
				x, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					bad(err)
				}
				switch k {
				case "cpu":
					e.cpu = x
				case "procs":
					e.procs = x
				case "faults":
					e.faults = x
				case "rss":
					e.rss = x
				case "fds":
					e.fds = x
				case "defunct":
					e.defunct, e.hasDefunct = x, true
				default:
					bad(fmt.Errorf("unknown key %s", k))
				}
			}
			passes[len(passes)-1].expect = append(passes[len(passes)-1].expect, e)
		default:
			if len(fields) != 14 {
				bad(fmt.Errorf("want 14 fields, got %d", len(fields)))
			}
			var p fixtureProc
			u := make([]uint64, 14)
			for i, s := range fields {
				if i == 2 || i == 13 {
					continue
				}
				v, err := strconv.ParseUint(s, 10, 64)
				if err != nil {
					bad(err)
				}
				u[i] = v
			}
			p.pid, p.ppid, p.state = int(u[0]), int(u[1]), fields[2]
			p.utime, p.stime, p.cutime, p.cstime = u[3], u[4], u[5], u[6]
			p.minflt, p.majflt, p.rss, p.threads, p.start, p.fds = u[7], u[8], u[9], u[10], u[11], int(u[12])
			if fields[13] != "-" {
				p.marker = fields[13]
			}
			passes[len(passes)-1].procs = append(passes[len(passes)-1].procs, p)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ws, passes
}

// writeProc lays out one pass as a proc file system under root, anew.
func writeProc(t *testing.T, root string, procs []fixtureProc) {
	t.Helper()
	if err := os.RemoveAll(root); err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		dir := filepath.Join(root, strconv.Itoa(p.pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// Fields as proc(5) orders them: pid (comm) state ppid pgrp session
		// tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime cutime
		// cstime priority nice num_threads itrealvalue starttime vsize rss ...
		stat := fmt.Sprintf("%d (fixture %d) %s %d %d %d 0 -1 0 %d 0 %d 0 %d %d %d %d 20 0 %d 0 %d %d %d 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n",
			p.pid, p.pid, p.state, p.ppid, p.pid, p.pid, p.minflt, p.majflt, p.utime, p.stime, p.cutime, p.cstime,
			p.threads, p.start, p.rss*8192, p.rss)
		env := "PATH=/usr/bin\x00"
		if p.marker != "" {
			env += workers.MarkerEnv + "=" + p.marker + "\x00"
		}
		for name, data := range map[string]string{"stat": stat, "environ": env, "fd": strings.Repeat("x", p.fds)} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestTreeAttributionOnFixtures runs the Linux tree sampler over the
// scenarios in testdata/: membership by ancestry and by marker, CPU and
// faults kept across exits, PID reuse. Deterministic: no real process.
func TestTreeAttributionOnFixtures(t *testing.T) {
	scenarios, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(scenarios) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	pageSize := int64(os.Getpagesize())
	for _, path := range scenarios {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".txt"), func(t *testing.T) {
			ws, passes := readFixture(t, path)
			root := filepath.Join(t.TempDir(), "proc")
			ps := newProcTreeSampler(root)
			for i, pass := range passes {
				writeProc(t, root, pass.procs)
				out := make([]TreeStat, len(ws))
				if err := ps.SampleTrees(ws, out); err != nil {
					t.Fatalf("pass %d: %v", i+1, err)
				}
				for _, e := range pass.expect {
					k := -1
					for j, w := range ws {
						if w.ID == e.id {
							k = j
						}
					}
					if k < 0 {
						t.Fatalf("line %d: no worker %s", e.line, e.id)
					}
					st := out[k]
					if e.gone {
						if st.Err == nil {
							t.Errorf("pass %d (line %d): %s measured %+v, want gone", i+1, e.line, e.id, st)
						}
						continue
					}
					if st.Err != nil {
						t.Errorf("pass %d (line %d): %s: %v", i+1, e.line, e.id, st.Err)
						continue
					}
					got := fmt.Sprintf("cpu=%d procs=%d faults=%d rss=%d fds=%d",
						int64((st.CPUUser+st.CPUSystem)*procfs.ClockTicks+0.5), st.Processes, st.MinorFaults, st.RSSBytes/pageSize, st.FDs)
					want := fmt.Sprintf("cpu=%d procs=%d faults=%d rss=%d fds=%d", e.cpu, e.procs, e.faults, e.rss, e.fds)
					if got != want {
						t.Errorf("pass %d (line %d): %s: got %s, want %s", i+1, e.line, e.id, got, want)
					}
					if e.hasDefunct && int64(st.Defunct) != e.defunct {
						t.Errorf("pass %d (line %d): %s: defunct %d, want %d", i+1, e.line, e.id, st.Defunct, e.defunct)
					}
				}
			}
			if trees, procs, _ := ps.cacheSizes(); trees != len(ws) || procs > 10 {
				t.Errorf("caches: %d trees, %d processes", trees, procs)
			}
		})
	}
}
