#!/usr/bin/env bash
# Run from the repository root after `make build collector`: deploy/scaling/measure-host.sh N SECONDS
# Measures: demo-worker RSS per worker (from /api/metrics), supervisor CPU per worker at the
# default 10 s export interval, exporting OTLP to the real collector.
set -uo pipefail
trap 'kill $WS $COL 2>/dev/null' EXIT
N=${1:-100}; SECS=${2:-60}
D=$(mktemp -d)
OTELCOL_GRPC_ENDPOINT=127.0.0.1:14317 OTELCOL_HTTP_ENDPOINT=127.0.0.1:14318 OTELCOL_HEALTH_ENDPOINT=127.0.0.1:14133 \
  OTELCOL_METRICS_LEVEL=none OTELCOL_LOG_LEVEL=warn \
  ${OTELCOL_BIN:-bin/otelcol} --config deploy/otel-collector.yaml >$D/otelcol.log 2>&1 & COL=$!
sleep 2
WORKERSCOPE_TOKEN=measure-token-0123456789 OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:14317 \
  ${WORKERSCOPE_BIN:-bin/workerscope} --listen 127.0.0.1:17070 --demo-load=false --idle-ttl 0 --max-workers $((N+10)) >$D/ws.log 2>&1 & WS=$!
sleep 1
for i in $(seq 1 $N); do curl -s -o /dev/null -H 'Authorization: Bearer measure-token-0123456789' -X POST 127.0.0.1:17070/api/sessions/m$i/rpc -d '{"type":"get_state"}'; done
sleep 12
t0=$(awk '{print $14+$15}' /proc/$WS/stat); s0=$(date +%s.%N)
sleep $SECS
t1=$(awk '{print $14+$15}' /proc/$WS/stat); s1=$(date +%s.%N)
curl -s -H 'Authorization: Bearer measure-token-0123456789' 127.0.0.1:17070/api/metrics > $D/metrics.json
python3 - "$D/metrics.json" "$t0" "$t1" "$s0" "$s1" "$N" "$WS" <<'PY'
import json,sys,os
m=json.load(open(sys.argv[1])); t0,t1=float(sys.argv[2]),float(sys.argv[3]); s0,s1=float(sys.argv[4]),float(sys.argv[5]); n=int(sys.argv[6]); pid=sys.argv[7]
tick=os.sysconf('SC_CLK_TCK'); rss=[w['rss_bytes'] for w in m['workers'] if w.get('rss_bytes')]
sup=[l for l in open(f'/proc/{pid}/status') if l.startswith('VmRSS')][0].split()[1]
cpu=(t1-t0)/tick; wall=s1-s0
print(f"workers={len(m['workers'])} rss_per_worker_MiB: mean={sum(rss)/len(rss)/2**20:.2f} min={min(rss)/2**20:.2f} max={max(rss)/2**20:.2f}" if rss else f"workers=0")
print(f"supervisor RSS={int(sup)/1024:.1f} MiB  CPU={cpu:.2f}s over {wall:.1f}s = {100*cpu/wall:.3f}% of one core")
PY
kill $WS; wait $WS 2>/dev/null || true; kill $COL; wait $COL 2>/dev/null || true
rm -rf $D
