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
  /** Cases to run (effectively unbounded when run for a duration). */
  numRuns: number;
  /**
   * When to stop starting cases, or shrinking a failure: the duration asked
   * for, else a bound far above what the cases take, so that a run that
   * found a hang still reports before vitest's timeout.
   */
  timeLimitMs: number;
  /** A failing case to replay (fast-check's `path`). */
  path: string | undefined;
  /** What the suite's test may take in all, for vitest's timeout. */
  testTimeoutMs: number;
  /** Records what the run did, for `pnpm fuzz` to print. */
  report(summary: { cases: number; startRssBytes: number; peakRssBytes: number; failure?: string }): void;
}

/** A seed for runs that do not ask for one: fixed, so that the normal test run is repeatable. */
const DEFAULT_SEED = 22;

export function fuzzSettings(suite: string, defaultRuns: number, caseTimeoutMs = 30_000): FuzzSettings {
  const env = process.env;
  const seconds = env.R3MAP_FUZZ_SECONDS ? Number(env.R3MAP_FUZZ_SECONDS) : undefined;
  const runs = env.R3MAP_FUZZ_RUNS ? Number(env.R3MAP_FUZZ_RUNS) : defaultRuns;
  // Room for a failure to be shrunk: every shrinking step replays a case.
  const timeLimitMs = seconds === undefined ? runs * 1_000 + 20 * caseTimeoutMs : seconds * 1000;
  return {
    seed: env.R3MAP_FUZZ_SEED ? Number(env.R3MAP_FUZZ_SEED) : DEFAULT_SEED,
    numRuns: seconds === undefined ? runs : Number.MAX_SAFE_INTEGER,
    timeLimitMs,
    path: env.R3MAP_FUZZ_PATH || undefined,
    testTimeoutMs: timeLimitMs + 3 * caseTimeoutMs,
    report(summary) {
      const dir = env.R3MAP_FUZZ_REPORT_DIR;
      if (!dir) return;
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, `${suite}.json`), `${JSON.stringify({ suite, ...summary })}\n`);
    },
  };
}
