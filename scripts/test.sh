#!/usr/bin/env bash
# Runs the whole test suite, installing first whatever this machine lacks.
# Ends with one line: "N passed, N failed[, N skipped]".
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
setup_all
cd "$ROOT"
mkdir -p .test-results
say "running tests"
status=0
pnpm exec vitest run --reporter=default --reporter=json --outputFile.json=.test-results/vitest.json "$@" || status=$?
node scripts/summarize-tests.mjs .test-results/vitest.json || status=1
exit "$status"
