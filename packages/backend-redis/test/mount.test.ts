// A managed file mount whose remote is Redis: fio verifies through the mount, the
// store equals the file after close, and an outage mid-run gives EIO without a hang.
import { randomBytes, randomUUID } from "node:crypto";
import * as fs from "node:fs";
import { type Backend, openBackend } from "@r3map/core";
import { type Mount, mountFile } from "@r3map/mount";
import { afterEach, describe, expect, inject, it } from "vitest";
import { startServer, type TestServer } from "../../../scripts/servers/harness.js";
import { fioVerify, readAt, syncUntil, TestScope, writeAt } from "../../mount/test/helpers.js";
import "../src/index.js"; // registers redis: for the direct checks in this thread

const MiB = 1024 * 1024;
const SIZE = 32 * MiB;
const CHUNK = 256 * 1024;
const SCHEMES = ["@r3map/backend-redis"];

const scope = new TestScope();
// Only this file's mounts are checked: other packages' tests may hold FUSE mounts of their own meanwhile.
afterEach(async () => expect(await scope.cleanup()).toEqual([]));

/** A fresh prefix on the server at `base`, chunked like the mount. */
function storeUri(base: string, params: Record<string, string | number> = {}): string {
  const url = new URL(base);
  const all = { size: SIZE, chunk: CHUNK, prefix: `mount:${randomUUID()}:`, ...params };
  for (const [name, value] of Object.entries(all)) url.searchParams.set(name, String(value));
  return url.toString();
}

async function open(uri: string): Promise<Backend> {
  const backend = await openBackend(uri);
  return scope.add(backend, () => backend.close());
}

async function mount(uri: string, pull: { workers: number } | false): Promise<Mount> {
  const opened = await mountFile({
    remote: uri,
    schemes: SCHEMES,
    chunkSize: CHUNK,
    managed: { pull, push: { intervalMs: null } },
  });
  return scope.mount(opened);
}

describe("a managed file mount over Redis", () => {
  it("passes fio verify, and the store equals the file byte for byte after close", async () => {
    const uri = storeUri(inject("redisUrl"));
    const seed = randomBytes(SIZE);
    const direct = await open(uri);
    await direct.writeAt(seed, 0);

    const file = await mount(uri, { workers: 4 });
    expect(Buffer.compare(fs.readFileSync(file.path!), seed)).toBe(0); // pulled from Redis
    fioVerify(file.path!, SIZE);
    const model = fs.readFileSync(file.path!);
    expect(Buffer.compare(model, seed)).not.toBe(0);
    await file.close();

    const stored = Buffer.alloc(SIZE);
    await (await open(uri)).readAt(stored, 0);
    expect(Buffer.compare(stored, model)).toBe(0);
  });
});

describe("a managed file mount whose Redis server stops", () => {
  let server: TestServer | undefined;
  afterEach(async () => {
    await server?.stop();
    server = undefined;
  });

  it("fails reads of remote chunks with EIO in bounded time, keeps local writes, and pushes them once Redis is back", async () => {
    server = await startServer("redis");
    const uri = storeUri(server.env.REDIS_URL!, { timeoutMs: 1000 });
    const seed = randomBytes(SIZE);
    const direct = await open(uri);
    await direct.writeAt(seed, 0);

    // No background pull: every chunk but the ones read stays remote.
    const file = await mount(uri, false);
    const path = file.path!;
    expect(Buffer.compare(readAt(path, 0, 4096), seed.subarray(0, 4096))).toBe(0);

    await server.kill();
    const started = Date.now();
    expect(() => readAt(path, SIZE - 4096, 4096)).toThrow(expect.objectContaining({ code: "EIO" }));
    expect(Date.now() - started).toBeLessThan(10_000);

    // Chunk 0 is local: writing it works while Redis is away; pushing it cannot.
    const update = randomBytes(CHUNK - 200);
    writeAt(path, 100, update);
    await expect(file.sync()).rejects.toMatchObject({ code: "ERR_REMOTE_FAILED" });
    expect((await file.progress())?.dirtyChunks).toBeGreaterThan(0);

    // The server returns empty (no persistence): the push must bring chunk 0 back whole.
    await server.start();
    await syncUntil(file, 15_000);
    const expected = Buffer.from(seed.subarray(0, CHUNK));
    update.copy(expected, 100);
    const stored = Buffer.alloc(CHUNK);
    await (await open(uri)).readAt(stored, 0); // a client opened after the restart
    expect(Buffer.compare(stored, expected)).toBe(0);
    // The mount is still healthy: reading the pushed chunk works, and so does closing.
    expect(Buffer.compare(readAt(path, 0, CHUNK), expected)).toBe(0);
    await file.close();
  });
});
