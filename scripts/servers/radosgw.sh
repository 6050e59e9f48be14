#!/usr/bin/env bash
# Ceph radosgw (Debian) as a real S3 server on 127.0.0.1 for tests: a
# single-node memstore cluster (one mon, one osd, one rgw), no cephx.
# Prints S3_ENDPOINT, S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

start_gateway() {
  local port; port=$(cat "$STATE/rgw.port")
  rm -f "$STATE/run/client.rgw.a.pid"
  # The crc modes are required: without them radosgw loops on auth error -13.
  radosgw -c "$STATE/ceph.conf" -n client.rgw.a --ms-mon-client-mode=crc --ms-client-mode=crc >&2
  wait_until 20 test -s "$STATE/run/client.rgw.a.pid" || return 1
  record_pid "$(cat "$STATE/run/client.rgw.a.pid")"
  wait_until 90 port_open "$port"
}

# Outage tests: stop only the S3 gateway (the cluster and its data stay), then bring it back on the same port.
action_gateway_stop() {
  local pid; pid=$(cat "$STATE/run/client.rgw.a.pid")
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 15))
  while alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null || true
  grep -vx "$pid" "$STATE/pids" >"$STATE/pids.new" || true
  mv "$STATE/pids.new" "$STATE/pids"
}

action_gateway_start() {
  start_gateway || die "radosgw did not come back (see $STATE/client.rgw.a.log)"
}

do_start() {
  ensure_debs radosgw ceph-mon ceph-osd
  local d="$STATE" mon_v2 mon_v1 rgw fsid osd_uuid
  read -r mon_v2 mon_v1 rgw < <(free_ports 3)
  fsid=$(cat /proc/sys/kernel/random/uuid)
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  rm -rf "$d/mon" "$d/osd0" "$d/run" && mkdir -p "$d/mon" "$d/osd0" "$d/run"
  cat >"$d/ceph.conf" <<CONF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$mon_v2,v1:127.0.0.1:$mon_v1]
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon warn on pool no redundancy = false
osd objectstore = memstore
memstore device bytes = 2147483648
osd crush chooseleaf type = 0
public addr = 127.0.0.1
ms bind ipv6 = false
run dir = $d/run
log file = $d/\$name.log
admin socket = $d/run/\$name.asok
pid file = $d/run/\$name.pid
[mon.a]
mon data = $d/mon
[osd.0]
osd data = $d/osd0
[client.rgw.a]
# tcp_nodelay: without it small GETs on keep-alive connections wait ~40 ms (Nagle vs delayed ACK).
rgw frontends = beast endpoint=127.0.0.1:$rgw tcp_nodelay=1
rgw dns name = localhost
CONF
  local c=(-c "$d/ceph.conf")
  monmaptool --create --addv a "[v2:127.0.0.1:$mon_v2,v1:127.0.0.1:$mon_v1]" --fsid "$fsid" "$d/monmap" >&2
  ceph-mon "${c[@]}" --mkfs -i a --monmap "$d/monmap" >&2
  ceph-mon "${c[@]}" -i a >&2   # daemonizes; its pid file is run/mon.a.pid
  wait_until 20 test -s "$d/run/mon.a.pid" || die "ceph-mon did not start (see $d/mon.a.log)"
  record_pid "$(cat "$d/run/mon.a.pid")"
  timeout 60 ceph "${c[@]}" osd new "$osd_uuid" >/dev/null || { stop_recorded; die "ceph osd new failed"; }
  ceph-osd "${c[@]}" -i 0 --mkfs --osd-uuid "$osd_uuid" >/dev/null 2>&1 || { stop_recorded; die "ceph-osd --mkfs failed (see $d/osd.0.log)"; }
  ceph-osd "${c[@]}" -i 0 >&2
  wait_until 20 test -s "$d/run/osd.0.pid" || { stop_recorded; die "ceph-osd did not start (see $d/osd.0.log)"; }
  record_pid "$(cat "$d/run/osd.0.pid")"
  echo "$rgw" >"$d/rgw.port"
  start_gateway || { stop_recorded; die "radosgw did not start (see $d/client.rgw.a.log)"; }
  local key secret
  key="R3MAP$RANDOM$RANDOM"; secret="secret$RANDOM$RANDOM$RANDOM"
  timeout 60 radosgw-admin "${c[@]}" user create --uid=r3map --display-name=r3map \
    --access-key="$key" --secret-key="$secret" >/dev/null 2>"$d/user-create.log" \
    || { stop_recorded; die "radosgw-admin user create failed: $(tail -3 "$d/user-create.log")"; }
  printf 'S3_ENDPOINT=http://127.0.0.1:%s\nS3_ACCESS_KEY=%s\nS3_SECRET_KEY=%s\nS3_REGION=us-east-1\n' "$rgw" "$key" "$secret" >"$d/endpoint"
}

main "$@"
