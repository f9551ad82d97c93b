#!/usr/bin/env bash
# make demo: Prometheus 3 (OTLP receiver, workerscope's alert rules), the
# collector (printing what it receives and pushing metrics to Prometheus) and
# workerscope with demo workers under light load, exporting every 5 s.
# Everything listens on 127.0.0.1 only. Ctrl-C stops them all.
#
# Watch alerts fire at http://127.0.0.1:9090/alerts, e.g. a zombie:
#   make demo ARGS='--idle-ttl 30s --stop-grace 10m'
#   curl -H "Authorization: Bearer $T" -d '{"type":"ignore_sigterm"}' 127.0.0.1:7070/api/sessions/stuck/rpc
#
# Environment: PROMETHEUS (binary; make demo passes the one `make prometheus`
# built), PROMETHEUS_LISTEN (default 127.0.0.1:9090), PROMETHEUS_EVAL_INTERVAL
# (rule evaluation, default 15s), plus the collector's OTELCOL_* variables.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OTELCOL_DEBUG_VERBOSITY:=normal}"
export OTELCOL_DEBUG_VERBOSITY
: "${PROMETHEUS:=$HOME/.cache/workerscope/prometheus-v0.316.0/prometheus}"
: "${PROMETHEUS_LISTEN:=127.0.0.1:9090}"
: "${PROMETHEUS_EVAL_INTERVAL:=15s}"
case "$PROMETHEUS_LISTEN" in
127.0.0.1:* | localhost:* | \[::1\]:*) ;;
*)
	echo "PROMETHEUS_LISTEN=$PROMETHEUS_LISTEN: the demo serves on loopback only" >&2
	exit 2
	;;
esac
if [ ! -x "$PROMETHEUS" ]; then
	echo "no Prometheus at $PROMETHEUS: run make prometheus (or make demo)" >&2
	exit 1
fi

pids=()
tmp=$(mktemp -d)
cleanup() {
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

cat >"$tmp/prometheus.yml" <<EOF
global:
  evaluation_interval: $PROMETHEUS_EVAL_INTERVAL
rule_files:
  - $PWD/deploy/prometheus/workerscope.rules.yaml
EOF
"$PROMETHEUS" --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
	--web.listen-address="$PROMETHEUS_LISTEN" --web.enable-otlp-receiver \
	--log.level=warn &
pids+=($!)
for _ in $(seq 100); do
	curl -fsS -o /dev/null "http://$PROMETHEUS_LISTEN/-/ready" 2>/dev/null && break
	sleep 0.2
done

OTELCOL_PROMETHEUS_ENDPOINT="http://$PROMETHEUS_LISTEN/api/v1/otlp" \
	bin/otelcol --config deploy/otel-collector.yaml --config deploy/otel-collector.prometheus.yaml &
pids+=($!)
for _ in $(seq 50); do
	curl -fsS -o /dev/null "http://${OTELCOL_HEALTH_ENDPOINT:-127.0.0.1:13133}/" 2>/dev/null && break
	sleep 0.2
done

echo "Prometheus: http://$PROMETHEUS_LISTEN (alerts: http://$PROMETHEUS_LISTEN/alerts, rules: http://$PROMETHEUS_LISTEN/rules)"
OTEL_METRIC_EXPORT_INTERVAL="${OTEL_METRIC_EXPORT_INTERVAL:-5000}" \
	OTEL_EXPORTER_OTLP_ENDPOINT="http://${OTELCOL_GRPC_ENDPOINT:-127.0.0.1:4317}" \
	bin/workerscope --demo-load=true "$@"
