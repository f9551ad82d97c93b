package workers

import (
	"testing"
	"time"
)

// TestReapIntervalDefault: a tenth of the TTL within [100ms, 5s]; with
// reaping off the reaper (which also reaps orphans) runs every 5 s, not
// every 100 ms (which cost 20 % of a core at 2,000 workers).
func TestReapIntervalDefault(t *testing.T) {
	for _, tt := range []struct {
		ttl, want time.Duration
	}{
		{10 * time.Minute, 5 * time.Second},
		{10 * time.Second, time.Second},
		{100 * time.Millisecond, 100 * time.Millisecond},
		{-1, 5 * time.Second},
	} {
		c := Config{IdleTTL: tt.ttl}
		c.setDefaults()
		if c.ReapInterval != tt.want {
			t.Errorf("IdleTTL %v: ReapInterval %v, want %v", tt.ttl, c.ReapInterval, tt.want)
		}
	}
}
