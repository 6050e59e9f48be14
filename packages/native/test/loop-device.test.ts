/**
 * The path device on this kernel: a loop device over the FUSE file, used as a
 * real disk (ext4). Every step runs in child processes or native threads, so
 * the FUSE engine on this thread stays free to answer.
 */
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { ChunkBitmap, MemoryBackend } from "@r3map/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FuseFile } from "../src/fuse-file.js";
import { detachLoopDevice, LoopDevice, listLoopDevices, loopStatus } from "../src/loop-device.js";
import { forceCleanup, isRoot, loopDevicesUnder, mountsUnder, scratchDirectory } from "./helpers.js";

const run = promisify(execFile);
const CHUNK = 256 * 1024;
const MiB = 1024 * 1024;

/** A managed-style FUSE file over memory: misses mark chunks local (the remote is all zeros), writes land locally. */
async function mountMemoryFile(mountPoint: string, size: number) {
  const local = new MemoryBackend(size);
  const presence = new ChunkBitmap(Math.ceil(size / CHUNK));
  const markLocal = (offset: number, length: number) => {
    for (let c = Math.floor(offset / CHUNK); c <= Math.floor((offset + length - 1) / CHUNK); c++)
      presence.set(c);
  };
  const file = await FuseFile.mount({
    mountPoint,
    size,
    local: { chunkSize: CHUNK, presence, segments: local.segments },
    onRead: async (offset, length) => markLocal(offset, length),
    onWrite: async (offset, data) => {
      await local.writeAt(data, offset);
      markLocal(offset, data.length);
    },
    onFsync: () => local.sync(),
  });
  return { file, local };
}

describe.skipIf(!isRoot())("LoopDevice over a FuseFile", () => {
  let dir: string;
  let fuseDir: string;
  const cleanups: Array<() => Promise<unknown>> = [];

  beforeEach(() => {
    dir = scratchDirectory("loop");
    fuseDir = path.join(dir, "fuse");
    fs.mkdirSync(fuseDir);
  });

  afterEach(async () => {
    // Undo in reverse order, whatever failed; then prove nothing is left.
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
    const mounts = mountsUnder(dir);
    const loops = loopDevicesUnder(dir);
    forceCleanup(dir);
    expect({ mounts, loops }).toEqual({ mounts: [], loops: [] });
  });

  it("attaches, reports its status and detaches", async () => {
    const { file } = await mountMemoryFile(fuseDir, 16 * MiB);
    cleanups.push(() => file.close());
    const loop = await LoopDevice.attach(file.path, { directIo: true });
    cleanups.push(() => loop.close());
    const status = await loop.status();
    expect(status).toMatchObject({
      backingFile: file.path,
      directIo: true,
      readOnly: false,
      autoclear: false,
    });
    expect(listLoopDevices()).toContainEqual({ device: loop.path, backingFile: file.path });
    const { stdout } = await run("blockdev", ["--getsize64", loop.path]);
    expect(Number(stdout.trim())).toBe(16 * MiB);
    expect(await loop.close()).toBe(true);
    expect(listLoopDevices().map((l) => l.device)).not.toContain(loop.path);
    await expect(loopStatus(loop.path)).rejects.toMatchObject({ name: "R3mapError", errno: "ENXIO" });
  });

  it("carries ext4: mkfs, mount, 256 MiB written with fsync, caches dropped, read back equal", async () => {
    const { file } = await mountMemoryFile(fuseDir, 384 * MiB);
    cleanups.push(() => file.close());
    const loop = await LoopDevice.attach(file.path, { directIo: true });
    cleanups.push(() => loop.close());
    const source = path.join(dir, "source");
    await run("dd", ["if=/dev/urandom", `of=${source}`, "bs=1M", "count=256", "status=none"]);
    cleanups.push(async () => fs.rmSync(source, { force: true }));

    await run("mkfs.ext4", ["-F", "-q", loop.path]);
    const ext4 = path.join(dir, "ext4");
    fs.mkdirSync(ext4);
    await run("mount", [loop.path, ext4]);
    cleanups.push(() => run("umount", [ext4]));

    await run("dd", [`if=${source}`, `of=${ext4}/data`, "bs=1M", "conv=fsync", "status=none"]);
    fs.writeFileSync("/proc/sys/vm/drop_caches", "3");
    await run("cmp", [source, `${ext4}/data`]); // rejects on any difference
    expect(file.stats().nativeReads).toBeGreaterThan(0);
  });

  it("is accepted by mkswap and swapon", async () => {
    const { file } = await mountMemoryFile(fuseDir, 32 * MiB);
    cleanups.push(() => file.close());
    const loop = await LoopDevice.attach(file.path, { directIo: true });
    cleanups.push(() => loop.close());
    await run("mkswap", [loop.path]);
    await run("swapon", [loop.path]);
    cleanups.push(() => run("swapoff", [loop.path]));
    expect(fs.readFileSync("/proc/swaps", "utf8")).toContain(loop.path);
    await run("swapoff", [loop.path]);
    expect(fs.readFileSync("/proc/swaps", "utf8")).not.toContain(loop.path);
  });

  it("detaches a device by path, as after a crash", async () => {
    const { file } = await mountMemoryFile(fuseDir, 8 * MiB);
    cleanups.push(() => file.close());
    const loop = await LoopDevice.attach(file.path, { readOnly: true });
    const status = await loop.status();
    expect(status.readOnly).toBe(true);
    expect(await detachLoopDevice(loop.path)).toBe(false); // our handle still holds it (autoclear now)
    expect(await loop.close()).toBe(true);
  });

  it("rejects a missing file with a typed error", async () => {
    await expect(LoopDevice.attach(path.join(dir, "missing"))).rejects.toMatchObject({
      name: "R3mapError",
      errno: "ENOENT",
    });
  });
});
