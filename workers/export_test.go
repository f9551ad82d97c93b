package workers

import (
	"sync"
	"time"
)

// FakeClock is a clock the test moves: the pool's idle times, back-off,
// running window and reaper read it instead of the wall clock.
type FakeClock struct {
	mu sync.Mutex
	t  time.Time
}

// NewFakeClock starts at a fixed moment.
func NewFakeClock() *FakeClock {
	return &FakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// Now is the clock's time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// NewWithClock is New with c as the pool's clock.
func NewWithClock(cfg Config, c *FakeClock) (*Manager, error) { return newWithClock(cfg, c.Now) }

// ReapNow runs one pass of the reaper at the Manager's clock's time.
func ReapNow(m *Manager) { m.reapOnce(m.now()) }

// Unexported names the external tests check against.
const CrashLoopCrashes = crashLoopCrashes
