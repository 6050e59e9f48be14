import * as fs from "node:fs";
import { type Mount, mountFile } from "@r3map/mount";
import { readAt, writeAt } from "@r3map/mount/testing";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { leftoversOf, NbdkitRemote, randomImage, scratchDir } from "./helpers.js";

const size = 32 * 1024 * 1024;
const chunkSize = 256 * 1024;
const scratch = scratchDir();
const cleanup: Array<() => Promise<unknown>> = [];
const mounts: Mount[] = [];

// Only this file's own mounts are checked: other runs on the machine may hold theirs meanwhile.
afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step().catch(() => {});
  expect(leftoversOf(mounts.splice(0))).toEqual([]);
});
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

describe("a managed file mount whose remote dies", () => {
  it("fails reads of missing chunks with EIO in bounded time, keeps writes, and pushes them once the remote returns", async () => {
    // A slow remote (20 ms per read), so the background pull is still running when it dies.
    const image = randomImage(scratch, size);
    const original = fs.readFileSync(image);
    let remote = await NbdkitRemote.start(image, undefined, 20);
    cleanup.push(() => remote.kill());
    const mount: Mount = await mountFile({
      remote: `${remote.uri}?timeout=2000`,
      chunkSize,
      managed: { pull: { workers: 1 }, push: { intervalMs: null } },
    });
    mounts.push(mount);
    cleanup.push(() => mount.close());
    const errors: unknown[] = [];
    mount.on("error", (error) => errors.push(error));
    const file = mount.path!;

    expect(Buffer.compare(readAt(file, 0, 4096), original.subarray(0, 4096))).toBe(0);
    await remote.kill();

    // The middle chunk: the pull (one worker, 20 ms a chunk) has not reached it; open primed the last one.
    const missing = Math.floor(size / chunkSize / 2) * chunkSize;
    const started = Date.now();
    expect(() => readAt(file, missing, 4096)).toThrow(expect.objectContaining({ code: "EIO" }));
    expect(Date.now() - started).toBeLessThan(15_000);

    // Chunk 0 is local: a write to it succeeds while the remote is away, but cannot be pushed yet.
    const update = Buffer.alloc(1000, 0x5a);
    writeAt(file, 100, update);
    await expect(mount.sync()).rejects.toMatchObject({ code: "ERR_REMOTE_FAILED" });
    expect((await mount.progress())?.dirtyChunks).toBeGreaterThan(0);

    remote = await NbdkitRemote.start(image, remote.port);
    await mount.sync();
    const expected = Buffer.from(original);
    update.copy(expected, 100);
    expect(
      Buffer.compare(fs.readFileSync(image).subarray(0, chunkSize), expected.subarray(0, chunkSize)),
    ).toBe(0);
    // Reads of chunks never fetched work again, and the engine stayed healthy.
    expect(Buffer.compare(readAt(file, missing, 4096), original.subarray(missing, missing + 4096))).toBe(0);
    expect(errors.length).toBeGreaterThan(0); // the pull reported the outage
    await mount.close();
    expect(Buffer.compare(fs.readFileSync(image).subarray(100, 1100), update)).toBe(0);
  });
});
