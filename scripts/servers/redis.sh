#!/usr/bin/env bash
# redis-server (Debian) single node on 127.0.0.1 for tests, no persistence, with
# an ACL user (the default user is disabled, so clients must authenticate).
# Restarting in the same STATE_DIR reuses the port and password.
# Prints REDIS_URL (redis://user:password@127.0.0.1:PORT) and REDIS_PORT.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

do_start() {
  ensure_debs redis-server
  local port password
  # A restart in the same STATE_DIR comes back on the same port with the same
  # password, so clients can reconnect (outage tests).
  if [ -f "$STATE/port" ]; then
    port=$(cat "$STATE/port"); password=$(cat "$STATE/password")
  else
    port=$(free_ports 1); password="pw$RANDOM$RANDOM"
    echo "$port" >"$STATE/port"; echo "$password" >"$STATE/password"
  fi
  rm -f "$STATE/redis.pid"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "$STATE/redis.pid" --logfile "$STATE/redis.log" --dir "$STATE" \
    --user default off --user r3map on ">$password" '~*' '&*' '+@all' >&2
  wait_until 10 test -s "$STATE/redis.pid" || die "redis-server did not write its pid file (see $STATE/redis.log)"
  record_pid "$(cat "$STATE/redis.pid")"
  wait_until 10 port_open "$port" || { stop_recorded; die "redis-server did not listen on $port"; }
  printf 'REDIS_URL=redis://r3map:%s@127.0.0.1:%s/\nREDIS_PORT=%s\n' "$password" "$port" "$port" >"$STATE/endpoint"
}

main "$@"
