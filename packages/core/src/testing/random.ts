import { randomInt } from "node:crypto";
import { onTestFailed } from "vitest";
import { patternBytes } from "./conformance.js";

/** The environment variable that replays a randomized test with a given seed. */
export const SEED_VARIABLE = "R3MAP_TEST_SEED";

/** A deterministic pseudo-random source (mulberry32): the same seed gives the same sequence. */
export interface SeededRandom {
  readonly seed: number;
  /** A number in [0, 1). */
  next(): number;
  /** An integer in [0, below). */
  below(below: number): number;
  /** `length` pseudo-random bytes, derived from the seed too. */
  bytes(length: number): Buffer;
}

export function seededRandom(seed: number): SeededRandom {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const below = (limit: number) => Math.floor(next() * limit);
  return {
    seed,
    next,
    below,
    bytes: (length) => {
      const bytes = patternBytes(length, below(2 ** 32));
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    },
  };
}

/**
 * The random source of a randomized test: seeded from `R3MAP_TEST_SEED` when
 * set (to replay a failure), else from a fresh seed, which is printed if the
 * test fails. Call it inside the test it serves.
 *
 * ```ts
 * const random = testRandom();
 * const offset = random.below(size);
 * ```
 */
export function testRandom(): SeededRandom {
  const fromEnvironment = process.env[SEED_VARIABLE];
  const seed = fromEnvironment ? Number(fromEnvironment) : randomInt(2 ** 32);
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new Error(
      `${SEED_VARIABLE} must be a non-negative integer, got ${JSON.stringify(fromEnvironment)}`,
    );
  }
  onTestFailed(({ task }) => {
    console.error(`"${task.name}" failed with random seed ${seed}; replay it with ${SEED_VARIABLE}=${seed}`);
  });
  return seededRandom(seed);
}
