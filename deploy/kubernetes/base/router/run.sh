#!/bin/sh
# The session router's entry point (router.yaml): nginx with the rendered workerscope.conf,
# reloaded when the upstreams' addresses change.
#
# nginx (open source, before 1.27.3's `resolve`) resolves an upstream's name once, when it reads
# its config. A workerscope pod that is recreated keeps its name but gets a new IP, so this
# script checks the names every 10 s and reloads nginx when an address changed: the hash ring
# is built from the names, so it does not change, only where each name points. A name that does
# not resolve (pod not created yet) would make nginx refuse the whole config: the script waits
# for all of them before starting nginx and does not reload while one is missing (the running
# config stays; nginx marks the unreachable server failed and its sessions go to the next one on
# the ring until the pod is back). On a reload, old nginx workers keep their open event streams
# for up to worker_shutdown_timeout.
set -u
conf=${WORKERSCOPE_ROUTER_CONF:-/etc/nginx/conf.d/workerscope.conf}
names=$(sed -n 's/^ *server \([^ :;]*\):.*/\1/p' "$conf" | sort -u)
addresses() {
	for n in $names; do
		getent hosts "$n" || echo "unresolved $n"
	done
}
now=$(addresses)
while echo "$now" | grep -q '^unresolved'; do
	echo "waiting for the upstreams' DNS names:" $(echo "$now" | sed -n 's/^unresolved //p') >&2
	sleep 2
	now=$(addresses)
done
nginx -g 'daemon off; worker_shutdown_timeout 20m;' &
pid=$!
# SIGTERM from the kubelet: graceful stop (SIGQUIT), in-flight requests finish.
trap 'kill -QUIT "$pid"; wait "$pid"; exit 0' TERM INT
last=$now
while kill -0 "$pid" 2>/dev/null; do
	sleep 10 &
	wait $!
	now=$(addresses)
	case $now in *unresolved*) continue ;; esac
	if [ "$now" != "$last" ]; then
		echo "upstream addresses changed, reloading nginx:" $now >&2
		nginx -s reload && last=$now
	fi
done
wait "$pid"
