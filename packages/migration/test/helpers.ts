import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, expect } from "vitest";

/** A temporary directory for one test file; removed with `rm`. */
export function scratchDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "r3map-migration-test-"));
}

/**
 * A test file's scratch directory and cleanup steps: the steps run after
 * every test, the directory goes after the file.
 */
export function testFileScope(): { scratch: string; cleanup: Cleanup } {
  const scratch = scratchDir();
  const cleanup = new Cleanup();
  afterEach(() => cleanup.run());
  afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));
  return { scratch, cleanup };
}

/** Cleanup steps run in reverse order, every one of them even when some fail. */
export class Cleanup {
  readonly #steps: Array<() => unknown> = [];

  add<T>(value: T, step: (value: T) => unknown): T {
    this.#steps.push(() => step(value));
    return value;
  }

  async run(): Promise<void> {
    for (const step of this.#steps.splice(0).reverse()) {
      try {
        await step();
      } catch {
        // the next step still runs
      }
    }
  }
}

/** A seeded generator (mulberry32): the same seed gives the same writes, so a failure can be replayed. */
export function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed for this run: `R3MAP_TEST_SEED` replays one; printed by `expect` messages on failure. */
export function testSeed(): number {
  const given = process.env.R3MAP_TEST_SEED;
  return given ? Number(given) : Math.floor(Math.random() * 2 ** 31);
}

export function randomBytesFrom(next: () => number, length: number): Buffer {
  const bytes = Buffer.alloc(length);
  for (let i = 0; i < length; i += 4)
    bytes.writeUInt32LE(Math.floor(next() * 2 ** 32) >>> 0, Math.min(i, length - 4));
  return bytes;
}

/**
 * Writes random ranges into a file through the kernel (fs.promises: a libuv
 * pool thread blocks on the mount, never this thread, which may run its
 * engine) until stopped, keeping `model` equal to what the file should hold.
 */
export class FileWriter {
  readonly #done: Promise<number>;
  #stopping = false;

  constructor(file: string, model: Buffer, next: () => number, maxLength = 200_000) {
    const done = (async () => {
      const handle = await fs.promises.open(file, "r+");
      let writes = 0;
      try {
        while (!this.#stopping) {
          const length = 1 + Math.floor(next() * maxLength);
          const offset = Math.floor(next() * (model.length - length));
          const data = randomBytesFrom(next, length);
          await handle.write(data, 0, length, offset);
          data.copy(model, offset);
          writes++;
        }
      } finally {
        await handle.close();
      }
      return writes;
    })();
    // A failure surfaces in stop(); until then it must not count as unhandled.
    done.catch(() => {});
    this.#done = done;
  }

  /** Stops after the write in progress; resolves with the number of writes made. */
  stop(): Promise<number> {
    this.#stopping = true;
    return this.#done;
  }
}

/** Waits for `condition` to hold, checking every few milliseconds, failing after `timeoutMs`. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Compares a file's bytes (read through the kernel, off this thread) with the expected ones. */
export async function expectFileEquals(file: string, expected: Buffer, seed: number): Promise<void> {
  const actual = await fs.promises.readFile(file);
  const first = firstDifference(actual, expected);
  expect(first, `first differing byte (seed ${seed})`).toBe(-1);
}

export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  if (Buffer.compare(a, b) === 0) return -1;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}
