// Package procfs reads the few /proc fields that workerscope needs, fast.
//
// gopsutil answers the same questions, but a fresh gopsutil Process costs
// 300–670 µs of CPU for Times+MemoryInfo+NumThreads+Status+NumFDs and its
// Children() rescans all of /proc per call. One read of /proc/PID/stat
// (4–15 µs) already holds state, ppid, pgrp, session, utime, stime, cutime,
// cstime, page faults, num_threads, starttime, vsize and rss, so the hot path reads that
// file once per process into a reused buffer and nothing else.
//
// It imports only the standard library and golang.org/x/sys, and knows nothing
// of workers, OpenTelemetry or HTTP.
package procfs
