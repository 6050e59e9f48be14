#!/usr/bin/env bash
# Apache Cassandra 5.0 (single node) on 127.0.0.1 for tests.
# Installs the jars from Maven Central into $R3MAP_CACHE (once), writes a minimal
# cassandra.yaml into STATE_DIR and runs CassandraDaemon on the machine's Java 17.
# Password authentication (cassandra/cassandra), optional TLS on the same port.
# Restarting in the same STATE_DIR keeps the ports and the data.
# Prints CASSANDRA_HOST, CASSANDRA_PORT (native protocol), CASSANDRA_DC,
# CASSANDRA_USER, CASSANDRA_PASSWORD and CASSANDRA_CA (the TLS CA certificate).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CASSANDRA_VERSION="${CASSANDRA_VERSION:-5.0.6}"
HOME_DIR="$R3MAP_CACHE/cassandra-$CASSANDRA_VERSION"

ensure_cassandra() {
  [ -f "$HOME_DIR/lib/.complete" ] && return 0
  command -v mvn >/dev/null || ensure_debs maven
  command -v java >/dev/null || ensure_debs openjdk-17-jre-headless
  log "fetching Cassandra $CASSANDRA_VERSION and its dependencies from Maven Central"
  mkdir -p "$HOME_DIR"
  cat >"$HOME_DIR/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>r3map.test</groupId><artifactId>cassandra-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.cassandra</groupId><artifactId>cassandra-all</artifactId><version>$CASSANDRA_VERSION</version></dependency>
  </dependencies>
</project>
POM
  (cd "$HOME_DIR" && mvn -q -B dependency:copy-dependencies -DoutputDirectory=lib -DincludeScope=runtime >&2)
  touch "$HOME_DIR/lib/.complete"
}

# The --add-exports/--add-opens of Cassandra 5's conf/jvm17-server.options.
JVM17_FLAGS=(
  -Djdk.attach.allowAttachSelf=true
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
  --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
  --add-exports java.sql/java.sql=ALL-UNNAMED
  --add-exports java.base/java.lang.ref=ALL-UNNAMED
  --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
  --add-opens java.base/java.lang.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
  --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
  --add-opens java.base/jdk.internal.math=ALL-UNNAMED
  --add-opens java.base/jdk.internal.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
  --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens java.base/java.io=ALL-UNNAMED
  --add-opens java.base/java.nio=ALL-UNNAMED
  --add-opens java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED
  --add-opens java.base/java.util.concurrent.atomic=ALL-UNNAMED
  --add-opens java.base/java.lang=ALL-UNNAMED
  --add-opens java.base/java.math=ALL-UNNAMED
  --add-opens java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens java.base/java.net=ALL-UNNAMED
)

# A throwaway CA and a server key+certificate for 127.0.0.1 in one PEM (Cassandra's PEM keystore).
make_certificates() {
  ensure_debs openssl
  local t="$STATE/tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=r3map test CA" -keyout "$t/ca.key" -out "$t/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$t/server.key" -out "$t/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$t/san.ext"
  openssl x509 -req -in "$t/server.csr" -CA "$t/ca.crt" -CAkey "$t/ca.key" -CAcreateserial -days 2 \
    -extfile "$t/san.ext" -out "$t/server.crt" 2>/dev/null
  openssl pkcs8 -topk8 -nocrypt -in "$t/server.key" -out "$t/server.pk8" 2>/dev/null
  cat "$t/server.pk8" "$t/server.crt" >"$t/server.pem"
}

do_start() {
  ensure_cassandra
  local native storage
  # A restart in the same STATE_DIR keeps its ports and data (outage tests).
  if [ -f "$STATE/ports" ]; then read -r native storage <"$STATE/ports"; else
    read -r native storage < <(free_ports 2)
    echo "$native $storage" >"$STATE/ports"
  fi
  mkdir -p "$STATE"/{data,commitlog,saved_caches,hints,cdc_raw,logs,tls}
  [ -f "$STATE/tls/server.pem" ] || make_certificates
  cat >"$STATE/cassandra.yaml" <<YAML
cluster_name: r3map-test
num_tokens: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
authenticator: PasswordAuthenticator
authorizer: AllowAllAuthorizer
data_file_directories: [$STATE/data]
commitlog_directory: $STATE/commitlog
saved_caches_directory: $STATE/saved_caches
hints_directory: $STATE/hints
cdc_raw_directory: $STATE/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:$storage"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: $storage
native_transport_port: $native
start_native_transport: true
endpoint_snitch: SimpleSnitch
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 8
memtable_heap_space: 64MiB
memtable_offheap_space: 64MiB
key_cache_size: 8MiB
auto_snapshot: false
dynamic_snitch: false
# TLS is optional on the native port: the same port serves cassandra:// and cassandras://.
client_encryption_options:
  enabled: true
  optional: true
  ssl_context_factory:
    class_name: org.apache.cassandra.security.PEMBasedSslContextFactory
  keystore: $STATE/tls/server.pem
  require_client_auth: false
YAML
  cat >"$STATE/logback.xml" <<XML
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>$STATE/logs/system.log</file>
    <encoder><pattern>%-5level %date{ISO8601} %logger{20} %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
XML
  local started=$SECONDS
  setsid java -Xms256m -Xmx768m -XX:+ExitOnOutOfMemoryError -Xss512k -XX:+UseG1GC -XX:+UseStringDeduplication \
    -XX:ActiveProcessorCount=2 -XX:TieredStopAtLevel=1 \
    "${JVM17_FLAGS[@]}" \
    -Dcassandra.config="file://$STATE/cassandra.yaml" \
    -Dcassandra.storagedir="$STATE" \
    -Dlogback.configurationFile="$STATE/logback.xml" \
    -Dcassandra.logdir="$STATE/logs" \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 \
    -Dcassandra.ring_delay_ms=0 \
    -Dcassandra.superuser_setup_delay_ms=0 \
    -Dcassandra.initial_token=0 \
    -Dcassandra-foreground=yes \
    -cp "$HOME_DIR/lib/*" org.apache.cassandra.service.CassandraDaemon \
    >"$STATE/logs/stdout.log" 2>&1 </dev/null &
  record_pid $!
  local pid=$!
  local deadline=$((SECONDS + ${CASSANDRA_START_TIMEOUT:-180}))
  until port_open "$native"; do
    kill -0 "$pid" 2>/dev/null || { tail -30 "$STATE/logs/stdout.log" "$STATE/logs/system.log" >&2 || true; die "Cassandra exited during startup (logs in $STATE/logs)"; }
    [ $SECONDS -ge $deadline ] && { stop_recorded; die "Cassandra did not open port $native in time (logs in $STATE/logs)"; }
    sleep 0.2
  done
  # Logins work once the default superuser exists (created a moment after the port opens on first start).
  superuser_ready() { [ -f "$STATE/initialized" ] || grep -q "Created default superuser role" "$STATE/logs/system.log"; }
  wait_until 60 superuser_ready || { stop_recorded; die "Cassandra did not create its default superuser (logs in $STATE/logs)"; }
  touch "$STATE/initialized"
  log "Cassandra $CASSANDRA_VERSION ready on 127.0.0.1:$native after $((SECONDS - started)) s"
  printf 'CASSANDRA_HOST=127.0.0.1\nCASSANDRA_PORT=%s\nCASSANDRA_DC=datacenter1\nCASSANDRA_USER=cassandra\nCASSANDRA_PASSWORD=cassandra\nCASSANDRA_CA=%s\n' "$native" "$STATE/tls/ca.crt" >"$STATE/endpoint"
}

main "$@"
