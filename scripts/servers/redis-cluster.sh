#!/usr/bin/env bash
# A 3-master Redis Cluster (Debian redis-server) on 127.0.0.1 for tests: no
# replicas, no persistence, free client and cluster-bus ports.
# Prints REDIS_CLUSTER_URL (redis+cluster://127.0.0.1:P1/?seed=127.0.0.1:P2&seed=127.0.0.1:P3).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

do_start() {
  ensure_debs redis-server
  local ports=() nodes=() i port bus
  read -r -a ports < <(free_ports 6)
  for i in 0 1 2; do
    port=${ports[$i]}; bus=${ports[$((i + 3))]}
    mkdir -p "$STATE/node$i"
    redis-server --port "$port" --cluster-port "$bus" --bind 127.0.0.1 --save '' --appendonly no \
      --cluster-enabled yes --cluster-config-file "$STATE/node$i/nodes.conf" --cluster-node-timeout 2000 \
      --daemonize yes --pidfile "$STATE/node$i/redis.pid" --logfile "$STATE/node$i/redis.log" --dir "$STATE/node$i" >&2
    wait_until 10 test -s "$STATE/node$i/redis.pid" || die "cluster node $i did not start (see $STATE/node$i/redis.log)"
    record_pid "$(cat "$STATE/node$i/redis.pid")"
    nodes+=("127.0.0.1:$port")
  done
  for port in "${ports[@]:0:3}"; do wait_until 10 port_open "$port" || { stop_recorded; die "cluster node on $port did not listen"; }; done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$STATE/create.log" 2>&1 \
    || { stop_recorded; die "redis-cli --cluster create failed: $(tail -5 "$STATE/create.log")"; }
  cluster_ok() { redis-cli -p "${ports[0]}" cluster info | grep -q 'cluster_state:ok'; }
  wait_until 20 cluster_ok || { stop_recorded; die "the cluster did not reach cluster_state:ok"; }
  # WHATWG URLs cannot hold a comma-separated host list: extra nodes are seeds.
  printf 'REDIS_CLUSTER_URL=redis+cluster://%s/?seed=%s&seed=%s\n' "${nodes[0]}" "${nodes[1]}" "${nodes[2]}" >"$STATE/endpoint"
}

main "$@"
