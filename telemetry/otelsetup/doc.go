// Package otelsetup builds the OpenTelemetry SDK from the standard OTEL_*
// environment: the resource (service.name, service.version,
// service.instance.id, host.name, OTEL_RESOURCE_ATTRIBUTES), the
// MeterProvider with its OTLP gRPC exporter and periodic reader (plus any
// extra readers, such as the Prometheus one), and the Go runtime metrics.
// Failed exports are counted and logged without flooding.
//
// It knows nothing of workers or of what is measured: the instruments come
// from telemetry/otelmetrics, registered on the Meter this package returns.
package otelsetup
