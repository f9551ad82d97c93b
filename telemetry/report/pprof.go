package report

import (
	"net/http"
	"net/http/pprof"

	pyroscopepprof "github.com/grafana/pyroscope-go/http/pprof"
)

// Pprof serves net/http/pprof under /api/debug/pprof/ on the app's
// own mux (never http.DefaultServeMux). pprof.Index only recognises paths
// under /debug/pprof/, so the /api prefix is stripped first; the index's
// relative links then work under /api/debug/pprof/.
func Pprof() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // index and every named profile
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.Handle("/debug/pprof/profile", CPUProfile()) // cooperates with Pyroscope's CPU profiling
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return http.StripPrefix("/api", mux)
}

// CPUProfile serves a CPU profile like net/http/pprof.Profile
// (?seconds=N, default 30) but cooperates with continuous profiling: Go
// allows one CPU profile at a time, so net/http/pprof's handler answers 500
// "cpu profiling already in use" while Pyroscope's CPU profiling runs. This
// one pauses the background profile for the request (its samples still go
// to Pyroscope) and works the same when profiling is off. Serve it as
// /api/debug/pprof/profile.
func CPUProfile() http.Handler { return http.HandlerFunc(pyroscopepprof.Profile) }
