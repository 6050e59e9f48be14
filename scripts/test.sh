#!/usr/bin/env bash
# Runs the whole test suite, installing first whatever this machine lacks.
# Ends with one line: "N passed, N failed[, N skipped]".
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
setup_all
cd "$ROOT"
mkdir -p .test-results
status=0
checks_failed=0
# Whole-tree checks count as tests: lint/format (Biome) and types (every package's
# sources and tests, and the shared scripts). Skipped when the caller picks tests.
if [ $# -eq 0 ]; then
  say "checking lint and format"
  pnpm exec biome check . >&2 || { checks_failed=$((checks_failed + 1)); status=1; }
  say "checking types"
  pnpm --silent typecheck >&2 || { checks_failed=$((checks_failed + 1)); status=1; }
fi
say "running tests"
pnpm exec vitest run --reporter=default --reporter=json --outputFile.json=.test-results/vitest.json "$@" || status=$?
node scripts/summarize-tests.mjs .test-results/vitest.json "$checks_failed" || status=1
exit "$status"
