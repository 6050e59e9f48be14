# Shared by the scripts in this folder: quiet, idempotent installation of what a
# fresh Debian machine with only Node 20 and npm lacks.
set -euo pipefail
shopt -s nullglob
trap 'echo "[r3map] setup failed at line $LINENO: $BASH_COMMAND" >&2' ERR

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PNPM_VERSION="10.34.9"

say() { printf '\033[1m[r3map]\033[0m %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_pnpm() {
  if command -v pnpm >/dev/null 2>&1 && [ "$(pnpm --version 2>/dev/null)" = "$PNPM_VERSION" ]; then return; fi
  say "installing pnpm $PNPM_VERSION"
  as_root npm install --global --no-fund --no-audit "pnpm@$PNPM_VERSION" >/dev/null 2>&1
}

# Debian packages named in the system-deps.txt of every package and app (one per line, # comments).
ensure_system_packages() {
  local wanted missing=() lists=("$ROOT"/packages/*/system-deps.txt "$ROOT"/apps/*/system-deps.txt)
  [ ${#lists[@]} -eq 0 ] && return
  wanted=$(sed 's/#.*//' "${lists[@]}" | tr -s ' \n' '\n' | sort -u)
  for pkg in $wanted; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return
  say "installing Debian packages: ${missing[*]}"
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
    as_root apt-get update -qq >/dev/null
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_workspace() {
  cd "$ROOT"
  say "installing dependencies"
  pnpm install --frozen-lockfile --reporter=silent
  say "building"
  pnpm exec turbo run build --output-logs=errors-only --log-prefix=none >&2
}

setup_all() {
  ensure_pnpm
  ensure_system_packages
  ensure_workspace
}
