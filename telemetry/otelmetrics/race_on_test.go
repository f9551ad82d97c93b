//go:build race

package otelmetrics

// raceEnabled: the race detector slows every spawned (instrumented) demo
// worker several-fold; the full-size churn runs without it (make churn).
const raceEnabled = true
