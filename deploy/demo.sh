#!/usr/bin/env bash
# make demo: the collector (printing what it receives) and workerscope with
# demo workers under light load, exporting every 5 s. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OTELCOL_DEBUG_VERBOSITY:=normal}"
export OTELCOL_DEBUG_VERBOSITY

bin/otelcol --config deploy/otel-collector.yaml &
collector=$!
trap 'kill -TERM $collector 2>/dev/null; wait $collector 2>/dev/null' EXIT
for _ in $(seq 50); do
	curl -fsS -o /dev/null "http://${OTELCOL_HEALTH_ENDPOINT:-127.0.0.1:13133}/" 2>/dev/null && break
	sleep 0.2
done
OTEL_METRIC_EXPORT_INTERVAL="${OTEL_METRIC_EXPORT_INTERVAL:-5000}" \
	OTEL_EXPORTER_OTLP_ENDPOINT="http://${OTELCOL_GRPC_ENDPOINT:-127.0.0.1:4317}" \
	bin/workerscope --demo-load=true "$@"
