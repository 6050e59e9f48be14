// A managed file mount whose remote is S3 (Ceph radosgw): fio verifies through the
// mount, the bucket equals the file after close, and a gateway outage mid-run gives
// EIO without a hang while local writes are kept and pushed once it returns.
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import { type Backend, openBackend } from "@r3map/core";
import { type Mount, mountFile } from "@r3map/mount";
import { afterEach, describe, expect, inject, it } from "vitest";
import { serverAction } from "../../../scripts/servers/harness.js";
import { fioVerify, readAt, syncUntil, TestScope, writeAt } from "../../mount/test/helpers.js";
import "../src/index.js"; // registers s3: for the direct checks in this thread
import { s3Uri } from "./helpers.js";

const MiB = 1024 * 1024;
const SIZE = 32 * MiB;
const CHUNK = 256 * 1024;
const SCHEMES = ["@r3map/backend-s3"];

const scope = new TestScope();
// Only this file's mounts are checked: other packages' tests may hold FUSE mounts of their own meanwhile.
afterEach(async () => expect(await scope.cleanup()).toEqual([]));

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

describe("a managed file mount over S3", () => {
  it("passes fio verify, and the bucket equals the file byte for byte after close", async () => {
    const uri = s3Uri({ size: SIZE, chunk: CHUNK });
    const seed = randomBytes(SIZE);
    await (await open(uri)).writeAt(seed, 0);

    const file = await mount(uri, { workers: 8 });
    expect(Buffer.compare(fs.readFileSync(file.path!), seed)).toBe(0); // pulled from radosgw
    fioVerify(file.path!, SIZE);
    const model = fs.readFileSync(file.path!);
    expect(Buffer.compare(model, seed)).not.toBe(0);
    await file.close();

    const stored = Buffer.alloc(SIZE);
    await (await open(uri)).readAt(stored, 0);
    expect(Buffer.compare(stored, model)).toBe(0);
  });
});

describe("a managed file mount whose S3 gateway stops", () => {
  it("fails reads of remote chunks with EIO in bounded time, keeps local writes, and pushes them once the gateway is back", async () => {
    const state = inject("s3").state;
    const uri = s3Uri({ size: SIZE, chunk: CHUNK, timeoutMs: 2000, maxAttempts: 2 });
    const seed = randomBytes(SIZE);
    const direct = await open(uri);
    await direct.writeAt(seed, 0);

    // No background pull: every chunk but the ones read stays remote.
    const file = await mount(uri, false);
    const path = file.path!;
    expect(Buffer.compare(readAt(path, 0, 4096), seed.subarray(0, 4096))).toBe(0);

    await serverAction("radosgw", "gateway-stop", state);
    const update = randomBytes(CHUNK - 200);
    try {
      const started = Date.now();
      expect(() => readAt(path, SIZE - 4096, 4096)).toThrow(expect.objectContaining({ code: "EIO" }));
      expect(Date.now() - started).toBeLessThan(15_000);
      // Chunk 0 is local: writing it works while the gateway is away; pushing it cannot.
      writeAt(path, 100, update);
      await expect(file.sync()).rejects.toMatchObject({ code: "ERR_REMOTE_FAILED" });
      expect((await file.progress())?.dirtyChunks).toBeGreaterThan(0);
    } finally {
      await serverAction("radosgw", "gateway-start", state);
    }

    await syncUntil(file, 30_000);
    // The objects survived the outage; chunk 0 now carries the write.
    const expected = Buffer.from(seed);
    update.copy(expected, 100);
    const stored = Buffer.alloc(SIZE);
    await (await open(uri)).readAt(stored, 0); // a client opened after the restart
    expect(Buffer.compare(stored, expected)).toBe(0);
    // The mount is still healthy: the chunk that failed reads now.
    expect(Buffer.compare(readAt(path, SIZE - 4096, 4096), seed.subarray(SIZE - 4096))).toBe(0);
    await file.close();
  });
});
