// Package otelsetup builds the OpenTelemetry SDK from the standard OTEL_*
// environment: the resource (service.name, service.version,
// service.instance.id, host.name, OTEL_RESOURCE_ATTRIBUTES), the
// MeterProvider with its OTLP gRPC exporter and periodic reader (plus any
// extra readers, such as the Prometheus one), the Go runtime metrics, and
// the TracerProvider and LoggerProvider (OTEL_TRACES_*, OTEL_LOGS_*, the
// sampler), resolved like the metrics' export.
// Failed exports are counted and logged without flooding. The metrics'
// OTLP/gRPC request is encoded straight from the SDK's data (otlpEncoder),
// the exporter sending it. Loading this package sets grpc-go's gzip
// compressor, one per process, to gzip's fastest level.
//
// It knows nothing of workers or of what is measured: the instruments come
// from telemetry/otelmetrics, registered on the Meter this package returns.
package otelsetup
