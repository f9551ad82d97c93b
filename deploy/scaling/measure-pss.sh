#!/usr/bin/env bash
# Run from the repository root after `make build`: deploy/scaling/measure-pss.sh N (RSS vs PSS of N idle demo workers)
set -uo pipefail
N=${1:-50}
WORKERSCOPE_TOKEN=measure-token-0123456789 OTEL_METRICS_EXPORTER=none ${WORKERSCOPE_BIN:-bin/workerscope} --listen 127.0.0.1:17071 --demo-load=false --idle-ttl 0 --max-workers $((N+10)) >/dev/null 2>&1 & WS=$!
trap 'kill $WS 2>/dev/null; wait $WS 2>/dev/null' EXIT
sleep 1
for i in $(seq 1 $N); do curl -s -o /dev/null -H 'Authorization: Bearer measure-token-0123456789' -X POST 127.0.0.1:17071/api/sessions/p$i/rpc -d '{"type":"get_state"}'; done
sleep 3
for p in $(pgrep -P $WS); do awk '/^Rss:/{r=$2} /^Pss:/{p=$2} /^Private_Dirty:/{d=$2} END{print r, p, d}' /proc/$p/smaps_rollup; done | awk '{r+=$1;p+=$2;d+=$3;n++} END{printf "workers=%d RSS=%.2f MiB PSS=%.2f MiB Private_Dirty=%.2f MiB (mean per worker)\n", n, r/n/1024, p/n/1024, d/n/1024}'
free -m | head -2
