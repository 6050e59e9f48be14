# Shared by the test-server scripts in this folder. Each script is called as
#   <server>.sh start STATE_DIR   → installs what is missing, starts the server on
#                                   127.0.0.1 with free ports, prints KEY=VALUE lines
#                                   (the endpoint) on stdout; idempotent: a server
#                                   already running in STATE_DIR is reused.
#   <server>.sh stop STATE_DIR    → stops every process recorded in STATE_DIR/pids.
#   <server>.sh ACTION STATE_DIR  → a script's extra action (e.g. radosgw.sh gateway-stop).
# Everything the server writes lives in STATE_DIR. Diagnostics go to stderr.
set -euo pipefail

SERVERS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SERVER_SCRIPT="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
REPO_ROOT="$(cd "$SERVERS_DIR/../.." && pwd)"
R3MAP_CACHE="${R3MAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/r3map}"

log() { printf '[servers] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Installs the Debian packages given that are not installed yet (fast path: dpkg-query only).
ensure_debs() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
    as_root apt-get update -qq >/dev/null
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Prints N distinct free TCP ports on 127.0.0.1 (bound and released; a small race is accepted).
free_ports() {
  node -e '
    const net = require("node:net");
    const n = Number(process.argv[1]); const servers = [];
    (async () => {
      for (let i = 0; i < n; i++) {
        const s = net.createServer(); await new Promise((r) => s.listen(0, "127.0.0.1", r)); servers.push(s);
      }
      console.log(servers.map((s) => s.address().port).join(" "));
      for (const s of servers) s.close();
    })();' "${1:-1}"
}

# Polls `cmd…` until it succeeds or SECONDS pass: wait_until SECONDS cmd…
wait_until() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.1
  done
}

# True if 127.0.0.1:PORT accepts TCP connections.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Records a PID to stop later.
record_pid() { echo "$1" >>"$STATE/pids"; }

# True if PID is a live process (a zombie waiting for its reaper counts as gone).
alive() {
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $stat != Z* ]]
}

# Stops every recorded process: TERM, then KILL after a bounded wait.
stop_recorded() {
  local pids pid
  [ -f "$STATE/pids" ] || return 0
  pids=$(tac "$STATE/pids")
  for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in $pids; do
    local deadline=$((SECONDS + 15))
    while alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.05; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  rm -f "$STATE/pids" "$STATE/endpoint"
}

# True if every recorded process is still alive (so a running server can be reused).
recorded_alive() {
  [ -f "$STATE/pids" ] && [ -f "$STATE/endpoint" ] || return 1
  local pid
  for pid in $(cat "$STATE/pids"); do alive "$pid" || return 1; done
}

# When R3MAP_SERVER_OWNER_PID is set (the test process), a detached watchdog
# stops the server once that process is gone, even if it died without teardown.
start_watchdog() {
  # The first owner stays the owner: a restart from a test worker must not tie the
  # server's life to that worker.
  [ -f "$STATE/owner" ] || [ -z "${R3MAP_SERVER_OWNER_PID:-}" ] || echo "$R3MAP_SERVER_OWNER_PID" >"$STATE/owner"
  local owner
  owner=$(cat "$STATE/owner" 2>/dev/null) || return 0
  [ -f "$STATE/watchdog.pid" ] && kill -0 "$(cat "$STATE/watchdog.pid")" 2>/dev/null && return 0
  # (ps, not kill -0: an owner that died but is not yet reaped is a zombie, and gone.)
  setsid bash -c 'while [[ $(ps -o stat= -p "$1" 2>/dev/null) == [^Z]* ]] && [ -d "$3" ]; do sleep 2; done
    [ -d "$3" ] && exec bash "$2" stop "$3"' \
    watchdog "$owner" "$SERVER_SCRIPT" "$STATE" </dev/null >/dev/null 2>&1 &
  echo $! >"$STATE/watchdog.pid"
}

# Common entry point: server scripts define do_start (prints KEY=VALUE lines to
# $STATE/endpoint) and call `main "$@"`.
main() {
  local action="${1:-}"; STATE="${2:-}"
  [ -n "$action" ] && [ -n "$STATE" ] || die "usage: $0 start|stop STATE_DIR"
  mkdir -p "$STATE"; STATE="$(cd "$STATE" && pwd)"
  case "$action" in
    start)
      if recorded_alive; then cat "$STATE/endpoint"; return 0; fi
      stop_recorded
      do_start
      start_watchdog
      cat "$STATE/endpoint"
      ;;
    stop)
      # (Unless this is the watchdog itself, which execs `stop` once its owner is gone.)
      if [ -f "$STATE/watchdog.pid" ] && [ "$(cat "$STATE/watchdog.pid")" != "$$" ]; then
        kill "$(cat "$STATE/watchdog.pid")" 2>/dev/null || true
      fi
      rm -f "$STATE/watchdog.pid"
      stop_recorded
      ;;
    *)
      # Scripts may offer more actions as functions named action_<name> (dashes as underscores).
      local fn="action_${action//-/_}"
      declare -F "$fn" >/dev/null || die "unknown action $action"
      "$fn"
      ;;
  esac
}
