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
	m.Observe(&Sample{UTime: 5}) // before Begin: ignored
	m.Begin(Sample{UTime: 10, STime: 3, RSS: 100, Members: [][2]uint64{{1, 1}}})
	if _, ok := m.Delta(); ok {
		t.Fatal("a delta without a reading after the start")
	}
	m.Observe(&Sample{UTime: 30, STime: 4, RSS: 300, Members: [][2]uint64{{1, 1}, {2, 7}}})
	m.Observe(&Sample{UTime: 40, STime: 2, RSS: 200, Members: [][2]uint64{{1, 1}, {2, 7}, {3, 9}}})
	d, ok := m.Delta()
	want := Delta{CPUUser: 300 * time.Millisecond, CPUSystem: 0, MemoryPeak: 300, Processes: 2}
	if !ok || d != want {
		t.Fatalf("delta %+v %v, want %+v", d, ok, want)
	}
}
