import { execFile } from "node:child_process";
import * as fs from "node:fs";
import { promisify } from "node:util";
import { ChunkBitmap, MemoryBackend } from "@r3map/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { backendHandlers, FuseFile } from "../src/fuse-file.js";
import { readOnThread } from "../src/thread-read.js";
import { forceCleanup, isRoot, mountsUnder, patternAt, scratchDirectory } from "./helpers.js";

const run = promisify(execFile);
const CHUNK = 64 * 1024;
const SIZE = 8 * 1024 * 1024;

/** A remote of known bytes, a local memory cache and a presence bitmap, like a managed mount. */
function cachedResource(size = SIZE) {
  const remote = patternAt(0, size);
  const local = new MemoryBackend(size);
  const presence = new ChunkBitmap(Math.ceil(size / CHUNK));
  const calls: Array<[number, number]> = [];
  const onRead = async (offset: number, length: number) => {
    calls.push([offset, length]);
    const first = Math.floor(offset / CHUNK);
    const last = Math.floor((offset + length - 1) / CHUNK);
    for (let chunk = first; chunk <= last; chunk++) {
      if (presence.has(chunk)) continue;
      const start = chunk * CHUNK;
      await local.writeAt(remote.subarray(start, Math.min(size, start + CHUNK)), start);
      presence.set(chunk);
    }
  };
  return { remote, local, presence, calls, onRead };
}

describe.skipIf(!isRoot())("FuseFile", () => {
  let dir: string;
  beforeEach(() => {
    dir = scratchDirectory("fuse");
  });
  afterEach(() => {
    const left = mountsUnder(dir);
    forceCleanup(dir);
    expect(left).toEqual([]);
  });

  it("serves misses through onRead once, then present chunks natively", async () => {
    const r = cachedResource();
    await using file = await FuseFile.mount({
      mountPoint: dir,
      size: SIZE,
      local: { chunkSize: CHUNK, presence: r.presence, segments: r.local.segments },
      onRead: r.onRead,
    });
    expect(fs.statSync(file.path).size).toBe(SIZE);
    expect(fs.readdirSync(dir)).toEqual(["disk"]);

    const first = await fs.promises.readFile(file.path);
    expect(Buffer.compare(first, r.remote)).toBe(0);
    expect(r.calls.length).toBeGreaterThan(0);
    expect(r.presence.cardinality()).toBe(SIZE / CHUNK);

    const jsCalls = r.calls.length;
    const before = file.stats().nativeReads;
    // O_DIRECT bypasses the page cache, so every read reaches the server.
    await run("dd", [`if=${file.path}`, "of=/dev/null", "bs=128k", "iflag=direct", "status=none"]);
    expect(r.calls.length).toBe(jsCalls);
    expect(file.stats().nativeReads - before).toBe(SIZE / (128 * 1024));
  });

  it("stores writes to present chunks natively and marks them in local.dirty; others go to onWrite", async () => {
    const r = cachedResource();
    const dirty = new ChunkBitmap(SIZE / CHUNK);
    for (const chunk of [2, 3]) {
      await r.local.writeAt(r.remote.subarray(chunk * CHUNK, (chunk + 1) * CHUNK), chunk * CHUNK);
      r.presence.set(chunk);
    }
    const forwarded: Array<[number, number]> = [];
    await using file = await FuseFile.mount({
      mountPoint: dir,
      size: SIZE,
      local: { chunkSize: CHUNK, presence: r.presence, segments: r.local.segments, dirty },
      onRead: r.onRead,
      onWrite: async (offset, data) => {
        forwarded.push([offset, data.length]);
      },
    });
    // Writes come from dd, another process: a forwarded one is answered by this thread.
    const write = async (data: Buffer, offset: number) => {
      const source = `${dir}.write`;
      fs.writeFileSync(source, data);
      await run("dd", [
        `if=${source}`,
        `of=${file.path}`,
        `bs=${data.length}`,
        `seek=${offset}`,
        "oflag=direct,seek_bytes",
        "conv=notrunc",
        "status=none",
      ]);
      fs.rmSync(source);
    };
    const data = Buffer.alloc(CHUNK + 8192, 0x6b);
    await write(data, 2 * CHUNK + 4096); // spans chunks 2 and 3, both present: stored here, no JavaScript
    expect(file.stats().nativeWrites).toBe(1);
    expect(forwarded).toEqual([]);
    expect([2, 3].every((chunk) => dirty.has(chunk))).toBe(true);
    expect(Buffer.compare(Buffer.from(r.local.view(2 * CHUNK + 4096, data.length)!), data)).toBe(0);
    await write(Buffer.alloc(4096, 1), 7 * CHUNK); // chunk 7 is not present: onWrite gets it, no bit is set
    expect(forwarded).toEqual([[7 * CHUNK, 4096]]);
    expect(dirty.has(7)).toBe(false);
  });

  it("is read from a native thread (readOnThread) while this thread answers the miss", async () => {
    const resource = cachedResource();
    await using file = await FuseFile.mount({
      mountPoint: dir,
      size: SIZE,
      local: { chunkSize: CHUNK, segments: resource.local.segments, presence: resource.presence },
      onRead: resource.onRead,
    });
    // A synchronous read here would deadlock: this thread serves the miss.
    expect(await readOnThread(file.path, 3 * CHUNK, 8192)).toBe(8192);
    expect(resource.calls.length).toBe(1);
    expect(resource.presence.has(3)).toBe(true);
    await expect(readOnThread(file.path, 1000, 4096)).rejects.toMatchObject({ code: "ERR_MISALIGNED" });
    await expect(readOnThread(`${dir}/missing`, 0, 4096)).rejects.toMatchObject({ errno: "ENOENT" });
  });

  it("answers present chunks from a file descriptor cache", async () => {
    const remote = patternAt(0, SIZE);
    const cachePath = `${dir}.cache`;
    fs.writeFileSync(cachePath, remote.subarray(0, SIZE / 2)); // first half local; the rest reads as a miss
    const fd = fs.openSync(cachePath, "r");
    const presence = new ChunkBitmap(SIZE / CHUNK);
    for (let chunk = 0; chunk < SIZE / 2 / CHUNK; chunk++) presence.set(chunk);
    const misses: number[] = [];
    try {
      await using file = await FuseFile.mount({
        mountPoint: dir,
        size: SIZE,
        local: { chunkSize: CHUNK, presence, fd },
        onRead: async (offset, length) => {
          misses.push(offset);
          return remote.slice(offset, offset + length);
        },
      });
      const back = await fs.promises.readFile(file.path);
      expect(Buffer.compare(back, remote)).toBe(0);
      expect(misses.length).toBeGreaterThan(0);
      expect(Math.min(...misses)).toBeGreaterThanOrEqual(SIZE / 2);
      expect(file.stats().nativeReads).toBeGreaterThan(0);
    } finally {
      fs.closeSync(fd);
      fs.rmSync(cachePath, { force: true });
    }
  });

  it("forwards writes, fsync and flush; refuses to change the size", async () => {
    const backend = new MemoryBackend(SIZE);
    let fsyncs = 0;
    let flushes = 0;
    await using file = await FuseFile.mount({
      mountPoint: dir,
      size: SIZE,
      onRead: async (offset, length) => {
        const bytes = new Uint8Array(length);
        await backend.readAt(bytes, offset);
        return bytes;
      },
      onWrite: (offset, data) => backend.writeAt(data, offset),
      onFsync: async () => {
        fsyncs++;
      },
      onFlush: async () => {
        flushes++;
      },
    });
    const data = patternAt(12345, 300_000);
    const handle = await fs.promises.open(file.path, "r+");
    await handle.write(data, 0, data.length, 12345);
    await handle.sync();
    await handle.close();
    expect(fsyncs).toBe(1);
    expect(flushes).toBeGreaterThanOrEqual(1);
    const stored = new Uint8Array(data.length);
    await backend.readAt(stored, 12345);
    expect(Buffer.compare(stored, data)).toBe(0);

    await expect(fs.promises.truncate(file.path, 4096)).rejects.toMatchObject({ code: "EPERM" });
    await expect(fs.promises.writeFile(`${dir}/other`, "x")).rejects.toMatchObject({ code: "EPERM" });
    expect(fs.statSync(file.path).size).toBe(SIZE);
  });

  it("exposes any Backend through backendHandlers", async () => {
    const backend = new MemoryBackend(SIZE);
    await backend.writeAt(patternAt(0, SIZE), 0);
    await using file = await FuseFile.mount({ mountPoint: dir, size: SIZE, ...backendHandlers(backend) });
    const handle = await fs.promises.open(file.path, "r+");
    try {
      const data = patternAt(999, 70_000, 3);
      await handle.write(data, 0, data.length, 4096 * 3 + 7);
      await handle.sync();
    } finally {
      await handle.close();
    }
    const expected = patternAt(0, SIZE);
    expected.set(patternAt(999, 70_000, 3), 4096 * 3 + 7);
    const stored = new Uint8Array(SIZE);
    await backend.readAt(stored, 0);
    expect(Buffer.compare(stored, expected)).toBe(0);
    expect(Buffer.compare(await fs.promises.readFile(file.path), expected)).toBe(0);
  });

  it("turns a handler's failure into the errno the reader sees", async () => {
    await using file = await FuseFile.mount({
      mountPoint: dir,
      size: SIZE,
      directIo: true,
      onRead: async () => {
        throw Object.assign(new Error("remote down"), { code: "ETIMEDOUT" });
      },
      onWrite: async () => {
        throw new Error("unknown failure");
      },
    });
    const handle = await fs.promises.open(file.path, "r+");
    try {
      await expect(handle.read(new Uint8Array(4096), 0, 4096, 0)).rejects.toMatchObject({
        code: "ETIMEDOUT",
      });
      await expect(handle.write(new Uint8Array(4096), 0, 4096, 0)).rejects.toMatchObject({ code: "EIO" });
    } finally {
      await handle.close();
    }
  });

  it("answers a handler that never settles with ETIMEDOUT, and aborts its signal", async () => {
    let aborted: unknown;
    await using file = await FuseFile.mount({
      mountPoint: dir,
      size: SIZE,
      directIo: true,
      requestTimeoutMs: 200,
      onRead: (_offset, _length, signal) =>
        new Promise<undefined>(() => {
          signal.addEventListener("abort", () => {
            aborted = signal.reason;
          });
        }),
    });
    const handle = await fs.promises.open(file.path, "r");
    try {
      await expect(handle.read(new Uint8Array(4096), 0, 4096, 0)).rejects.toMatchObject({
        code: "ETIMEDOUT",
      });
      expect(aborted).toBeDefined();
    } finally {
      await handle.close();
    }
  });

  it("canonicalises the mount point", async () => {
    const spelled = `${dir}/../${dir.split("/").pop()}/`;
    await using file = await FuseFile.mount({
      mountPoint: spelled,
      size: SIZE,
      onRead: async (_o, l) => new Uint8Array(l),
    });
    expect(file.mountPoint).toBe(fs.realpathSync(dir));
    expect(file.path).toBe(`${fs.realpathSync(dir)}/disk`);
  });

  it("unmounts when its signal aborts, also during the mount", async () => {
    const early = new AbortController();
    const mounting = FuseFile.mount({ mountPoint: dir, size: SIZE, signal: early.signal });
    early.abort();
    await expect(mounting).rejects.toMatchObject({ code: "ERR_ABORTED" });
    expect(mountsUnder(dir)).toEqual([]);

    const later = new AbortController();
    const file = await FuseFile.mount({ mountPoint: dir, size: SIZE, signal: later.signal });
    expect(mountsUnder(dir)).toEqual([file.mountPoint]);
    later.abort();
    await file.close(); // the same close the abort started
    expect(mountsUnder(dir)).toEqual([]);
  });

  it("is read-only without onWrite", async () => {
    await using file = await FuseFile.mount({
      mountPoint: dir,
      size: SIZE,
      onRead: async (_o, l) => new Uint8Array(l),
    });
    await expect(fs.promises.open(file.path, "r+")).rejects.toMatchObject({ code: "EROFS" });
  });

  it("unmounts on close even while the file is open, and close is idempotent", async () => {
    const file = await FuseFile.mount({
      mountPoint: dir,
      size: SIZE,
      onRead: async (_o, l) => new Uint8Array(l),
    });
    const handle = await fs.promises.open(file.path, "r");
    await Promise.all([file.close(), file.close()]);
    expect(mountsUnder(dir)).toEqual([]);
    await expect(handle.read(new Uint8Array(10), 0, 10, 0)).rejects.toMatchObject({ code: "ENOTCONN" });
    await handle.close().catch(() => {}); // FLUSH fails with ENOTCONN too
  });

  it("rejects a second mount over a live one with a typed error", async () => {
    await using _file = await FuseFile.mount({
      mountPoint: dir,
      size: SIZE,
      onRead: async (_o, l) => new Uint8Array(l),
    });
    await expect(FuseFile.mount({ mountPoint: dir, size: SIZE })).rejects.toMatchObject({
      name: "R3mapError",
    });
  });
});
