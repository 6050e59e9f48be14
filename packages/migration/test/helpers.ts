import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { SeededRandom } from "@r3map/core/testing";
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

/**
 * Writes random ranges into a file through the kernel (fs.promises: a libuv
 * pool thread blocks on the mount, never this thread, which may run its
 * engine) until stopped, keeping `model` equal to what the file should hold.
 */
export class FileWriter {
  readonly #done: Promise<number>;
  #stopping = false;

  constructor(file: string, model: Buffer, random: SeededRandom, maxLength = 200_000) {
    const done = (async () => {
      const handle = await fs.promises.open(file, "r+");
      let writes = 0;
      try {
        while (!this.#stopping) {
          const length = 1 + random.below(maxLength);
          const offset = random.below(model.length - length);
          const data = random.bytes(length);
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
