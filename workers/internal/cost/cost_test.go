package cost

import (
	"testing"
	"time"
)

func TestMeter(t *testing.T) {
	t.Parallel()
	var m Meter
	if _, ok := m.Delta(); ok {
		t.Fatal("a delta before any reading")
	}
	m.Observe(&Sample{CPUUser: Ticks(5)}) // before Begin: ignored
	m.Begin(Sample{CPUUser: Ticks(10), CPUSystem: Ticks(3), RSS: 100, Members: [][2]uint64{{1, 1}}})
	if _, ok := m.Delta(); ok {
		t.Fatal("a delta without a reading after the start")
	}
	m.Observe(&Sample{CPUUser: Ticks(30), CPUSystem: Ticks(4), RSS: 300, Members: [][2]uint64{{1, 1}, {2, 7}}})
	m.Observe(&Sample{CPUUser: Ticks(40), CPUSystem: Ticks(2), RSS: 200, Members: [][2]uint64{{1, 1}, {2, 7}, {3, 9}}})
	m.Observe(&Sample{Cgroup: true, CPUUser: time.Hour, RSS: 1 << 40}) // the other kind: ignored
	d, ok := m.Delta()
	want := Delta{CPUUser: 300 * time.Millisecond, CPUSystem: 0, MemoryPeak: 300, Processes: 2}
	if !ok || d != want {
		t.Fatalf("delta %+v %v, want %+v", d, ok, want)
	}
}

// TestMeterFromCgroup: readings from the worker's cgroup are exact to the
// microsecond, and a /proc reading (another granularity, and missing what
// escaped the walk) is not mixed into them.
func TestMeterFromCgroup(t *testing.T) {
	t.Parallel()
	var m Meter
	m.Begin(Sample{Cgroup: true, CPUUser: 1500 * time.Microsecond, CPUSystem: 20 * time.Microsecond, RSS: 4096, Members: [][2]uint64{{10, 0}}})
	m.Observe(&Sample{CPUUser: time.Second, RSS: 1 << 30}) // a /proc reading: ignored
	if _, ok := m.Delta(); ok {
		t.Fatal("a /proc reading completed a cgroup interval")
	}
	m.Observe(&Sample{Cgroup: true, CPUUser: 1750 * time.Microsecond, CPUSystem: 20 * time.Microsecond, RSS: 8192, Members: [][2]uint64{{10, 0}, {11, 0}}})
	d, ok := m.Delta()
	want := Delta{CPUUser: 250 * time.Microsecond, MemoryPeak: 8192, Processes: 1}
	if !ok || d != want {
		t.Fatalf("delta %+v %v, want %+v", d, ok, want)
	}
}
