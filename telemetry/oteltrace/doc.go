// Package oteltrace turns every command the supervisor routes to a worker
// into an OpenTelemetry span (kind client, named after the command type)
// carrying the worker's identity and what the command cost the worker's
// whole process tree (workers.Cost), with the worker's streamed events as
// span events; and it continues a caller's W3C trace (traceparent) from an
// HTTP request into those spans.
//
// It implements workers.CommandTracer: the Manager calls it, so every
// command becomes a span whoever sent it (the HTTP API, the demo load, an
// embedding program). It reads workers' types and writes to an OTel
// trace.TracerProvider; it must not import the OTel SDK set-up
// (telemetry/otelsetup), any exporter, httpapi or the other telemetry
// packages but the attribute keys (telemetry/attrkey).
package oteltrace
