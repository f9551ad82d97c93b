// Package httpapi is workerscope's HTTP surface: session RPC, Server-Sent
// Events of a session's worker events, stopping a worker, the pool snapshot,
// and liveness, all on one http.ServeMux behind one token.
//
// Every route but GET /healthz requires the token, as
// "Authorization: Bearer <token>" or as the password of HTTP Basic auth
// (any user name) so that a browser can open the pages. Other packages mount
// further routes on the same mux, with the same authentication, through
// Server.Handle.
//
// It drives a workers.Manager and must not import OpenTelemetry or anything
// under telemetry/: telemetry routes are mounted by cmd/workerscope.
package httpapi
