/**
 * File mounts over NBD: the FUSE threads read what is not local from the
 * server on a connection of their own (every read of a direct mount, a
 * managed mount's misses while it pulls); when that connection fails, reads
 * take the engine's path again, with its errors, timeouts and reconnects.
 */
import * as fs from "node:fs";
import { testRandom, waitFor } from "@r3map/core/testing";
import {
  type FileDevice,
  MountCore,
  type MountDescription,
  mountSlice,
  type SliceDevice,
} from "@r3map/mount";
import { TestScope } from "@r3map/mount/testing";
import { readOnThread, touchOnThread } from "@r3map/native";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { NbdkitRemote, randomImage, scratchDir } from "./helpers.js";

const size = 8 * 1024 * 1024;
const scratch = scratchDir();
const scope = new TestScope();

// Only this file's own mounts are checked: other packages' tests may hold theirs meanwhile.
afterEach(async () => {
  expect(await scope.cleanup()).toEqual([]);
});
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));

/** Reads through the FUSE file without blocking this thread, which serves the engine. */
async function read(path: string, offset: number, length: number): Promise<Buffer> {
  const handle = await fs.promises.open(path, fs.constants.O_RDONLY | fs.constants.O_DIRECT);
  try {
    const bytes = Buffer.alloc(length);
    expect((await handle.read(bytes, 0, length, offset)).bytesRead).toBe(length);
    return bytes;
  } finally {
    await handle.close();
  }
}

/** A file mount whose engine runs on this thread, so its stats are at hand. */
async function openFile(description: MountDescription) {
  const core = await MountCore.open("file", description, { readAheadKb: 0 });
  const { engine } = core;
  scope.add(engine, () => engine.close());
  const device = scope.mount(core.device as FileDevice);
  return { engine, device };
}

const open = (uri: string) => openFile({ remote: uri, chunkSize: 64 * 1024 });

describe("direct file mount over NBD", () => {
  it("is read by the FUSE threads from the server, not through the engine", async () => {
    const image = randomImage(scratch, size);
    const original = fs.readFileSync(image);
    const remote: NbdkitRemote = scope.add(await NbdkitRemote.start(image), () => remote.kill());
    const { device } = await open(remote.uri);
    const before = device.stats();
    for (const offset of [0, 4096, 3 * 1024 * 1024 + 8192, size - 4096]) {
      expect(
        Buffer.compare(await read(device.path, offset, 4096), original.subarray(offset, offset + 4096)),
      ).toBe(0);
    }
    const after = device.stats();
    expect(after.remoteReads - before.remoteReads).toBeGreaterThanOrEqual(4);
    expect(after.forwardedReads).toBe(before.forwardedReads);
  });

  it("falls back to the engine when the server goes away: EIO while it is gone, data once it is back", async () => {
    const image = randomImage(scratch, size);
    const original = fs.readFileSync(image);
    const remote: NbdkitRemote = scope.add(await NbdkitRemote.start(image), () => remote.kill());
    const { device } = await open(`${remote.uri}?timeout=1000`);
    expect(Buffer.compare(await read(device.path, 0, 4096), original.subarray(0, 4096))).toBe(0);
    await remote.kill();
    const started = Date.now();
    await expect(readOnThread(device.path, 65536, 4096)).rejects.toMatchObject({ errno: "EIO" });
    expect(Date.now() - started).toBeLessThan(15_000);
    await remote.restart();
    const offset = 5 * 1024 * 1024;
    expect(
      Buffer.compare(await read(device.path, offset, 4096), original.subarray(offset, offset + 4096)),
    ).toBe(0);
    expect(device.stats().forwardedReads).toBeGreaterThan(0); // the engine answered, over its new connection
  });

  it("a server that stops answering: the read is handed to the engine after the timeout, and fails with EIO in bounded time", async () => {
    const image = randomImage(scratch, size);
    const remote: NbdkitRemote = scope.add(await NbdkitRemote.start(image), async () => {
      remote.resume();
      await remote.kill();
    });
    const { device } = await open(`${remote.uri}?timeout=1000`);
    await read(device.path, 0, 4096);
    remote.pause();
    const started = Date.now();
    await expect(readOnThread(device.path, 131072, 4096)).rejects.toMatchObject({ errno: "EIO" });
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(15_000);
    expect(device.stats().forwardedReads).toBeGreaterThan(0);
  });
});

describe("managed file mount over NBD, while the pull runs", () => {
  it("answers a miss from the server without the engine, and the pull fetches that chunk next", async () => {
    const chunkSize = 64 * 1024;
    const image = randomImage(scratch, size);
    const original = fs.readFileSync(image);
    // 20 ms per read and one pull worker: the sweep needs about 2.6 s to reach the last chunks.
    const remote: NbdkitRemote = scope.add(await NbdkitRemote.start(image, undefined, 20), () =>
      remote.kill(),
    );
    const { engine, device } = await openFile({
      remote: remote.uri,
      chunkSize,
      managed: { pull: { workers: 1, requestBytes: chunkSize }, push: false },
    });
    const chunk = 100;
    const before = device.stats();
    const bytes = await read(device.path, chunk * chunkSize + 4096, 4096);
    expect(Buffer.compare(bytes, original.subarray(chunk * chunkSize + 4096, chunk * chunkSize + 8192))).toBe(
      0,
    );
    expect(device.stats().remoteReads).toBe(before.remoteReads + 1);
    expect(device.stats().forwardedReads).toBe(before.forwardedReads);
    // Not stored by the read, but pulled next: local while the sweep is still far from it.
    await waitFor(() => engine.pipeline!.presence.has(chunk), `chunk ${chunk} to be pulled`);
    expect(engine.pipeline!.presence.has(chunk - 10)).toBe(false);
  });

  it("without a pull, a managed mount's misses go through the engine (the cache must keep what was read)", async () => {
    const image = randomImage(scratch, size);
    const remote: NbdkitRemote = scope.add(await NbdkitRemote.start(image), () => remote.kill());
    const { engine, device } = await openFile({
      remote: remote.uri,
      chunkSize: 65536,
      managed: { pull: false },
    });
    await read(device.path, 3 * 65536, 4096);
    expect(device.stats().remoteReads).toBe(0);
    expect(engine.pipeline!.presence.has(3)).toBe(true);
  });
});

describe("managed file over NBD, writes racing the pull", () => {
  it("whole-chunk writes are stored natively, partial ones by the engine, and none is overwritten by a fetch", async () => {
    const chunkSize = 64 * 1024;
    const image = randomImage(scratch, size);
    const model = fs.readFileSync(image);
    // 50 ms a read, one chunk at a time: the pull's front chunk is in flight while the first writes pass it.
    const remote: NbdkitRemote = scope.add(await NbdkitRemote.start(image, undefined, 50), () =>
      remote.kill(),
    );
    const { engine, device } = await openFile({
      remote: remote.uri,
      chunkSize,
      managed: { pull: { workers: 1, requestBytes: chunkSize }, push: { intervalMs: null } },
    });
    const random = testRandom();
    const handle = await fs.promises.open(device.path, "r+");
    const write = async (data: Buffer, offset: number) => {
      await handle.write(data, 0, data.length, offset);
      data.copy(model, offset);
    };
    try {
      // Chunks the pull is fetching right now, written whole: each must wait for its fetch.
      const { inFlight, presence } = engine.nativeCache()!;
      const fetching = () => {
        const chunk = [...Array(size / chunkSize).keys()].find((c) => inFlight.has(c) && !presence.has(c));
        return chunk === undefined ? undefined : { chunk };
      };
      for (let hits = 0; hits < 3; hits++) {
        const { chunk } = await waitFor(fetching, { intervalMs: 1, message: "a chunk the pull is fetching" });
        await write(random.bytes(chunkSize), chunk * chunkSize);
      }
      // Whole chunks from the start, right behind (and into) the pull's front.
      for (let chunk = 0; chunk < 32; chunk++) await write(random.bytes(chunkSize), chunk * chunkSize);
      for (let i = 0; i < 300; i++) {
        const whole = i % 2 === 0;
        const offset = whole ? random.below(size / chunkSize - 4) * chunkSize : random.below(size - 3000);
        const length = whole ? (1 + random.below(4)) * chunkSize : 1 + random.below(3000);
        await write(random.bytes(length), offset);
      }
    } finally {
      await handle.close();
    }
    expect(device.stats().nativeWrites).toBeGreaterThan(0);
    await waitFor(() => engine.progress()!.chunksLocal === engine.progress()!.chunksTotal, {
      timeoutMs: 60_000,
      message: "the pull to finish",
    });
    expect(Buffer.compare(await read(device.path, 0, size), model)).toBe(0);
    await device.close();
    await engine.close();
    expect(Buffer.compare(remote.contents(), model)).toBe(0);
  });
});

describe("slice over NBD", () => {
  it("fetches a miss natively — stored in the cache, marked present, mapped, reported — without the engine", async () => {
    const chunkSize = 64 * 1024;
    const image = randomImage(scratch, size);
    const original = fs.readFileSync(image);
    const remote: NbdkitRemote = scope.add(await NbdkitRemote.start(image), () => remote.kill());
    const core = await MountCore.open("slice", {
      remote: remote.uri,
      chunkSize,
      managed: { pull: false, push: false },
    });
    const device = core.device as SliceDevice;
    scope.add(core, () => core.close());
    const before = device.region.stats();
    const chunks = [3, 40, 100];
    // Touched on native threads: this thread runs the engine, which must not be needed.
    for (const chunk of chunks) await touchOnThread(device.region.view(chunk * chunkSize + 4096, 4096), 0);
    const after = device.region.stats();
    // Both at once, so a failure shows where the touches went.
    expect({
      fetchedNatively: after.remoteFetches - before.remoteFetches,
      handedToTheEngine: after.misses - before.misses,
    }).toEqual({ fetchedNatively: chunks.length, handedToTheEngine: 0 });
    // The notices of the landings cross from the native threads in their own time.
    await waitFor(
      () => device.engine.progress()?.chunksLocal === chunks.length,
      "the notices of the landings",
    );
    for (const chunk of chunks) {
      expect(device.engine.pipeline!.presence.has(chunk)).toBe(true);
      // Mapped now, so this thread may read it.
      const bytes = device.buffer.subarray(chunk * chunkSize, (chunk + 1) * chunkSize);
      expect(Buffer.compare(bytes, original.subarray(chunk * chunkSize, (chunk + 1) * chunkSize))).toBe(0);
    }
    expect(device.engine.progress()?.chunksLocal).toBe(chunks.length);
  });

  it("writes made while the pull, native fetches and the engine race for chunks are never overwritten", async () => {
    const image = randomImage(scratch, size);
    const model = fs.readFileSync(image);
    // A slow remote (2 ms a read) and small chunks: many runs in flight while the writes fault chunks in.
    const remote: NbdkitRemote = scope.add(await NbdkitRemote.start(image, undefined, 2), () =>
      remote.kill(),
    );
    const mount = await mountSlice({
      remote: remote.uri,
      chunkSize: 4096,
      managed: { pull: { workers: 8, requestBytes: 64 * 1024 }, push: { intervalMs: null } },
    });
    scope.add(mount, () => mount.close());
    const random = testRandom(); // the seed is printed if this fails; R3MAP_TEST_SEED replays it
    for (let i = 0; i < 3000; i++) {
      const offset = random.below(size - 300);
      const data = random.bytes(1 + random.below(300));
      data.copy(mount.buffer, offset);
      data.copy(model, offset);
    }
    await waitFor(
      async () => {
        const progress = await mount.progress();
        return progress && progress.chunksLocal === progress.chunksTotal;
      },
      { timeoutMs: 60_000, intervalMs: 20, message: "the pull to finish" },
    );
    expect(Buffer.compare(mount.buffer, model)).toBe(0);
    await mount.close();
    expect(Buffer.compare(remote.contents(), model)).toBe(0);
  });
});
