// The managed-mount checks every remote store passes (Redis, S3, Cassandra, …):
// fio verifies through a managed file mount and the store equals the file after
// close; and a store that stops mid-run gives EIO in bounded time, keeps local
// writes, and receives them once it is back. A store package runs it with
// `describeStoreMount({...})` from `@r3map/mount/testing`.
import * as fs from "node:fs";
import { type Backend, openBackend } from "@r3map/core";
import { retryUntil, testRandom } from "@r3map/core/testing";
import { afterEach, describe, expect, it } from "vitest";
import { type Mount, mountFile } from "../index.js";
import { fioVerify, readAt, writeAt } from "./file-io.js";
import { TestScope } from "./scope.js";

export interface StoreMountCase {
  /** The store's name, for test titles ("Redis"). */
  store: string;
  /** Packages the mount's engine imports to open the store's URIs. */
  schemes: string[];
  /** A URI of a fresh, empty namespace in the store with these size/chunk (and extra) parameters. */
  uri(params: Record<string, string | number>): string | Promise<string>;
  /** URI parameters for the outage test (short timeouts, few retries). */
  outageParams: Record<string, string | number>;
  /** Stops the store (a killed server, a stopped gateway). */
  stop(): Promise<void>;
  /** Starts it again at the same address. */
  start(): Promise<void>;
  /** Whether the store keeps its data across stop/start (Redis without persistence does not). */
  keepsData: boolean;
  /** Bound on the failing read while the store is away, and on sync() succeeding once it is back (ms). */
  readFailsWithinMs: number;
  backWithinMs: number;
  /** Background pull workers for the round trip. */
  pullWorkers?: number;
}

const MiB = 1024 * 1024;
const SIZE = 32 * MiB;
const CHUNK = 256 * 1024;

export function describeStoreMount(c: StoreMountCase): void {
  const scope = new TestScope();
  // Only this file's mounts are checked: other packages' tests may hold FUSE mounts of their own meanwhile.
  afterEach(async () => expect(await scope.cleanup()).toEqual([]));

  async function open(uri: string): Promise<Backend> {
    const backend = await openBackend(uri);
    return scope.add(backend, () => backend.close());
  }

  async function mount(uri: string, pull: { workers: number } | false): Promise<Mount & { path: string }> {
    const opened = await mountFile({
      remote: uri,
      schemes: c.schemes,
      chunkSize: CHUNK,
      managed: { pull, push: { intervalMs: null } },
    });
    return scope.mount(opened);
  }

  /** Reads the whole store with a client opened now (an older one may still be backing off after a restart). */
  async function stored(uri: string, length: number): Promise<Buffer> {
    const bytes = Buffer.alloc(length);
    await (await open(uri)).readAt(bytes, 0);
    return bytes;
  }

  describe(`a managed file mount over ${c.store}`, () => {
    it("passes fio verify, and the store equals the file byte for byte after close", async () => {
      const uri = await c.uri({ size: SIZE, chunk: CHUNK });
      const seed = testRandom().bytes(SIZE);
      await (await open(uri)).writeAt(seed, 0);

      const file = await mount(uri, { workers: c.pullWorkers ?? 8 });
      expect(Buffer.compare(fs.readFileSync(file.path), seed)).toBe(0); // pulled from the store
      fioVerify(file.path, SIZE);
      const model = fs.readFileSync(file.path);
      expect(Buffer.compare(model, seed)).not.toBe(0);
      await file.close();
      expect(Buffer.compare(await stored(uri, SIZE), model)).toBe(0);
    });

    it(`fails reads of remote chunks with EIO in bounded time when ${c.store} stops, keeps local writes, and pushes them once it is back`, async () => {
      const uri = await c.uri({ size: SIZE, chunk: CHUNK, ...c.outageParams });
      const random = testRandom();
      const seed = random.bytes(SIZE);
      await (await open(uri)).writeAt(seed, 0);

      // No background pull: every chunk but the ones read stays remote.
      const file = await mount(uri, false);
      expect(Buffer.compare(readAt(file.path, 0, 4096), seed.subarray(0, 4096))).toBe(0);

      await c.stop();
      const update = random.bytes(CHUNK - 200);
      try {
        const started = Date.now();
        expect(() => readAt(file.path, SIZE - 4096, 4096)).toThrow(expect.objectContaining({ code: "EIO" }));
        expect(Date.now() - started).toBeLessThan(c.readFailsWithinMs);
        // Chunk 0 is local: writing it works while the store is away; pushing it cannot.
        writeAt(file.path, 100, update);
        await expect(file.sync()).rejects.toMatchObject({ code: "ERR_REMOTE_FAILED" });
        expect((await file.progress())?.dirtyChunks).toBeGreaterThan(0);
      } finally {
        await c.start();
      }

      // The store takes a moment to come back: push until it takes the writes.
      await retryUntil(() => file.sync(), { timeoutMs: c.backWithinMs, intervalMs: 200 });
      const expected = Buffer.from(seed);
      update.copy(expected, 100);
      // A store that lost its data holds just the pushed chunk: check what it can hold.
      const length = c.keepsData ? SIZE : CHUNK;
      expect(Buffer.compare(await stored(uri, length), expected.subarray(0, length))).toBe(0);
      // The mount is still healthy: the pushed chunk reads, and so does one that failed (if the store kept it).
      expect(Buffer.compare(readAt(file.path, 0, CHUNK), expected.subarray(0, CHUNK))).toBe(0);
      if (c.keepsData) {
        expect(Buffer.compare(readAt(file.path, SIZE - 4096, 4096), seed.subarray(SIZE - 4096))).toBe(0);
      }
      await file.close();
    });
  });
}
