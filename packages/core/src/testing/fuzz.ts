import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * How a fuzz suite runs. In the normal test run: a fixed number of cases from
 * a fixed seed, so that CI is repeatable. Under `pnpm fuzz` (scripts/fuzz.mjs)
 * the environment asks for a seed, a number of cases or a duration, and a
 * report: R3MAP_FUZZ_SEED, R3MAP_FUZZ_RUNS, R3MAP_FUZZ_SECONDS,
 * R3MAP_FUZZ_PATH (replays one case of a failure) and R3MAP_FUZZ_REPORT_DIR.
 */
export interface FuzzSettings {
  seed: number;
  /** Cases to run (effectively unbounded when `timeLimitMs` is set). */
  numRuns: number;
  /** Stop starting new cases after this long; undefined in the normal test run. */
  timeLimitMs: number | undefined;
  /** A failing case to replay (fast-check's `path`). */
  path: string | undefined;
  /** What the suite's test may take in all, for vitest's timeout. */
  testTimeoutMs: number;
  /** Records what the run did, for `pnpm fuzz` to print. */
  report(summary: { cases: number; peakRssBytes: number; failure?: string }): void;
}

/** A seed for runs that do not ask for one: fixed, so that the normal test run is repeatable. */
const DEFAULT_SEED = 22;

export function fuzzSettings(suite: string, defaultRuns: number, caseTimeoutMs = 30_000): FuzzSettings {
  const env = process.env;
  const seconds = env.R3MAP_FUZZ_SECONDS ? Number(env.R3MAP_FUZZ_SECONDS) : undefined;
  const runs = env.R3MAP_FUZZ_RUNS ? Number(env.R3MAP_FUZZ_RUNS) : defaultRuns;
  const timeLimitMs = seconds === undefined ? undefined : seconds * 1000;
  return {
    seed: env.R3MAP_FUZZ_SEED ? Number(env.R3MAP_FUZZ_SEED) : DEFAULT_SEED,
    numRuns: timeLimitMs === undefined ? runs : Number.MAX_SAFE_INTEGER,
    timeLimitMs,
    path: env.R3MAP_FUZZ_PATH || undefined,
    // Room for a failure to be shrunk: every shrinking step replays a case.
    testTimeoutMs: (timeLimitMs ?? runs * 1_000) + 100 * caseTimeoutMs,
    report(summary) {
      const dir = env.R3MAP_FUZZ_REPORT_DIR;
      if (!dir) return;
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `${suite}.json`), `${JSON.stringify({ suite, ...summary })}\n`);
    },
  };
}
