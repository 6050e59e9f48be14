#!/usr/bin/env bash
# redis-server (Debian) single node on 127.0.0.1 for tests, no persistence, with
# an ACL user (the default user is disabled, so clients must authenticate).
# Restarting in the same STATE_DIR reuses the port and password.
# Also listens with TLS (a throwaway CA in STATE_DIR).
# Prints REDIS_URL (redis://user:password@127.0.0.1:PORT), REDIS_PORT and
# REDIS_TLS_URL (rediss://…?ca=STATE_DIR/ca.crt).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# A throwaway CA and a server certificate for 127.0.0.1 (for the rediss:// tests).
make_certificates() {
  ensure_debs openssl
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=r3map test CA" \
    -keyout "$STATE/ca.key" -out "$STATE/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$STATE/server.key" -out "$STATE/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$STATE/san.ext"
  openssl x509 -req -in "$STATE/server.csr" -CA "$STATE/ca.crt" -CAkey "$STATE/ca.key" -CAcreateserial \
    -days 2 -extfile "$STATE/san.ext" -out "$STATE/server.crt" 2>/dev/null
}

do_start() {
  ensure_debs redis-server
  local port tls_port password
  # A restart in the same STATE_DIR comes back on the same port with the same
  # password, so clients can reconnect (outage tests).
  if [ -f "$STATE/port" ]; then
    read -r port tls_port <"$STATE/port"; password=$(cat "$STATE/password")
  else
    read -r port tls_port < <(free_ports 2); password="pw$RANDOM$RANDOM"
    echo "$port $tls_port" >"$STATE/port"; echo "$password" >"$STATE/password"
  fi
  [ -f "$STATE/server.crt" ] || make_certificates
  rm -f "$STATE/redis.pid"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --tls-port "$tls_port" --tls-cert-file "$STATE/server.crt" --tls-key-file "$STATE/server.key" \
    --tls-ca-cert-file "$STATE/ca.crt" --tls-auth-clients no \
    --pidfile "$STATE/redis.pid" --logfile "$STATE/redis.log" --dir "$STATE" \
    --user default off --user r3map on ">$password" '~*' '&*' '+@all' >&2
  wait_until 10 test -s "$STATE/redis.pid" || die "redis-server did not write its pid file (see $STATE/redis.log)"
  record_pid "$(cat "$STATE/redis.pid")"
  wait_until 10 port_open "$port" || { stop_recorded; die "redis-server did not listen on $port"; }
  printf 'REDIS_URL=redis://r3map:%s@127.0.0.1:%s/\nREDIS_PORT=%s\n' "$password" "$port" "$port" >"$STATE/endpoint"
  printf 'REDIS_TLS_URL=rediss://r3map:%s@127.0.0.1:%s/?ca=%s\n' "$password" "$tls_port" "$STATE/ca.crt" >>"$STATE/endpoint"
}

main "$@"
