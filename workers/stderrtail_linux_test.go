//go:build linux

package workers_test

import (
	"strings"
	"testing"
	"time"

	"github.com/workerscope/workerscope/internal/testutil"
)

// TestStderrTailOfALiveWorker: the tail of a live worker's stderr, bounded
// by StderrTailBytes; an unknown ID is not found.
func TestStderrTailOfALiveWorker(t *testing.T) {
	cfg := demoConfig(t)
	cfg.StderrTailBytes = 64
	m := newManager(t, cfg)
	send(t, m, "loud", `{"type":"stderr","message":"<img src=x onerror=alert(1)>","lines":20}`)
	ws, ok := snapshotOf(m, "loud")
	if !ok {
		t.Fatal("no worker for loud")
	}
	var tail string
	testutil.Eventually(t, 5*time.Second, "the last stderr line in the tail", func() bool {
		tail, ok = m.StderrTail(ws.ID)
		return ok && strings.HasSuffix(tail, "<img src=x onerror=alert(1)> 20\n")
	})
	if len(tail) > 64 {
		t.Errorf("tail is %d bytes, want at most StderrTailBytes (64): %q", len(tail), tail)
	}
	if _, ok := m.StderrTail("no-such-worker"); ok {
		t.Error("an unknown worker ID was found")
	}
}
