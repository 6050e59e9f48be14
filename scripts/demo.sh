#!/usr/bin/env bash
# Installs everything r3map needs on this machine, builds it, and runs the demo.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
setup_all
cd "$ROOT"
exec node apps/r3map/dist/cli.js demo "$@"
