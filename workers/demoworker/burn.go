package demoworker

import (
	"context"
	"runtime"
	"time"
)

// burnCPU spins until this thread has used d of CPU time (not wall time, so
// a loaded machine still gets the exact amount), or ctx ends.
func burnCPU(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start, ok := threadCPU()
	deadline := time.Now().Add(d) // fallback where thread CPU time is unknown
	x := uint64(1)
	for i := 0; ; i++ {
		for j := 0; j < 20000; j++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
		if ctx.Err() != nil {
			return
		}
		if ok {
			if now, _ := threadCPU(); now-start >= d {
				break
			}
		} else if time.Now().After(deadline) {
			break
		}
	}
	runtime.KeepAlive(x)
}
