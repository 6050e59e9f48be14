import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Backend } from "../backend.js";
import { type ServerProcess, startServerProcess } from "./server-process.js";

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

/** The options of fast-check's `assert` for a run. */
export interface FuzzRunOptions {
  seed: number;
  numRuns: number;
  path?: string;
  interruptAfterTimeLimit: number;
  markInterruptAsFailure: false;
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

const MiB = 1024 * 1024;

/** A fuzz suite against a server in its own process. */
export interface ServerFuzz<Info, Case> {
  /** Names the suite in reports and in `pnpm fuzz --only`. */
  suite: string;
  /** What the suite checks, for the test's name. */
  title: string;
  /** The server: a fixture script that prints its address as JSON (see startServerProcess), and its arguments. */
  fixture: string;
  args: string[];
  /** Cases in the normal test run. */
  runs: number;
  /** What one case, or one check, may take. */
  caseTimeoutMs: number;
  /** Written at the start of the resource first; must read back the same after every case. */
  golden: Uint8Array;
  /** A fresh client of the server. */
  open(info: Info): Promise<Backend>;
  /** Plays one case against the server; rejects when the server does not behave (hangs, say). */
  play(info: Info, one: Case): Promise<void>;
  /**
   * fast-check's assert over the suite's cases, with this run's options:
   * `(check, options) => fc.assert(fc.asyncProperty(arbitrary, check), options)`.
   */
  assert(check: (one: Case) => Promise<void>, options: FuzzRunOptions): Promise<void>;
}

/**
 * Declares a vitest suite that starts the server, writes the golden bytes,
 * then plays the cases; after every case the server must run, its peak RSS
 * stay within 256 MiB of where it started, and a fresh client read the golden
 * bytes back (see expectServerIntact). What the run did — cases, the server's
 * start and peak RSS, a failure — is recorded for `pnpm fuzz`.
 */
export function describeServerFuzz<Info, Case>(fuzz: ServerFuzz<Info, Case>): void {
  const settings = fuzzSettings(fuzz.suite, fuzz.runs, fuzz.caseTimeoutMs);
  describe(`fuzz: ${fuzz.title}`, () => {
    let server: ServerProcess<Info>;
    let startRss = 0;
    let cases = 0;

    beforeAll(async () => {
      server = await startServerProcess<Info>(fuzz.fixture, fuzz.args);
      const client = await fuzz.open(server.info);
      await client.writeAt(fuzz.golden, 0);
      await client.close();
      startRss = server.rss();
      server.resetPeak();
    }, 60_000);
    afterAll(() => server?.stop());

    it(
      `keeps serving the right bytes within bounded memory (seed ${settings.seed})`,
      async () => {
        const check = async (one: Case) => {
          cases++;
          await fuzz.play(server.info, one);
          await within(fuzz.caseTimeoutMs, "the check after a case", () =>
            expectServerIntact(server, startRss, () => fuzz.open(server.info), fuzz.golden),
          );
        };
        let failure: string | undefined;
        try {
          await fuzz.assert(check, {
            seed: settings.seed,
            numRuns: settings.numRuns,
            ...(settings.path ? { path: settings.path } : {}),
            interruptAfterTimeLimit: settings.timeLimitMs,
            markInterruptAsFailure: false,
          });
        } catch (error) {
          failure = error instanceof Error ? error.message : String(error);
          throw error;
        } finally {
          const peakRssBytes = server.peakRss();
          settings.report({ cases, startRssBytes: startRss, peakRssBytes, ...(failure ? { failure } : {}) });
        }
      },
      settings.testTimeoutMs,
    );
  });
}

/** `work()`, or a rejection saying that `what` did not finish within `ms`. */
export async function within<T>(ms: number, what: string, work: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work(), late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * What must hold after every fuzz case: the server runs, its peak RSS is
 * within `boundBytes` of `startRss`, and a fresh client (`open`) reads the
 * protected region — the resource's first `golden.length` bytes — as it was
 * written. A changed region is written back before the failure is reported,
 * so that the next case (a shrinking step) starts clean and the case that
 * fails is the one that changed it.
 */
export async function expectServerIntact(
  server: ServerProcess<unknown>,
  startRss: number,
  open: () => Promise<Backend>,
  golden: Uint8Array,
  boundBytes = 256 * MiB,
): Promise<void> {
  expect(server.alive(), `the server died: ${server.stderr()}`).toBe(true);
  const grown = server.peakRss() - startRss;
  expect(grown, `peak RSS grew by ${(grown / MiB).toFixed(0)} MiB`).toBeLessThan(boundBytes);
  const client = await open();
  try {
    const back = new Uint8Array(golden.length);
    await client.readAt(back, 0);
    const changed = back.findIndex((byte, i) => byte !== golden[i]);
    if (changed >= 0) {
      await client.writeAt(golden, 0);
      expect.fail(`the protected region changed at byte ${changed}`);
    }
  } finally {
    await client.close();
  }
}
