// Package cgroup creates, limits, inspects and kills per-worker control
// groups on Linux, on a pure cgroup v2 (unified) hierarchy or on a cgroup v1
// / hybrid layout where the limits come from v1 controller hierarchies and
// an optional controller-less v2 mount supplies exact membership and
// cgroup.kill.
//
// It talks to cgroupfs directly (a few files per group) instead of through
// a cgroup library: see docs/limits.md for why. Everything takes the
// cgroupfs mount root as a parameter, so tier selection can be tested on
// fake trees in temporary directories. The package is Linux-only; on other
// systems it is empty. It imports only the standard library and
// golang.org/x/sys, and knows nothing of workers or telemetry.
package cgroup
