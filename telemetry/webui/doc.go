// Package webui is the browser side of GET /metrics: one self-contained
// HTML page, embedded in the binary, that polls GET /api/metrics every two
// seconds and shows the supervisor's health and one row per worker
// (sortable, with CPU and RSS sparklines, zombies and defunct processes
// flagged).
//
// The page needs nothing from the network but its own origin: the style
// sheet and the script are inlined into the HTML at start-up and allowed by
// their SHA-256 hashes in a strict Content-Security-Policy, so there is one
// route, no nonce, and the response is the same bytes every time. The script
// inserts every report value as text (never as HTML): session keys, states
// and error texts are worker-controlled.
//
// It embeds static files and must not import workers, OpenTelemetry or the
// other telemetry packages: it reads only GET /api/metrics, in the browser.
package webui
