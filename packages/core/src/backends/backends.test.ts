import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ChunkedStage } from "../stages/chunked.js";
import { describeBackendConformance, patternBytes, Tmpfs } from "../testing/index.js";
import { DirectoryBackend } from "./directory.js";
import { FileBackend } from "./file.js";
import { MEMORY_SEGMENT_SIZE, MemoryBackend } from "./memory.js";

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "r3map-core-"));
afterAll(() => fs.rmSync(scratch, { recursive: true, force: true }));
let serial = 0;

describeBackendConformance("memory", async (size) => new MemoryBackend(size));

{
  const file = path.join(scratch, "conformance.img");
  describeBackendConformance(
    "file",
    async (size) => {
      fs.rmSync(file, { force: true });
      return FileBackend.open(file, { size, create: true });
    },
    { reopen: async (size) => FileBackend.open(file, { size }) },
  );
}

{
  const dir = path.join(scratch, "conformance-dir");
  const chunkSize = 64 * 1024;
  describeBackendConformance(
    "directory",
    async (size) => {
      fs.rmSync(dir, { recursive: true, force: true });
      return DirectoryBackend.open(dir, { size, chunkSize, maxOpenFiles: 4 });
    },
    { reopen: async (size) => DirectoryBackend.open(dir, { size, chunkSize, maxOpenFiles: 4 }) },
  );
}

describeBackendConformance(
  "chunked memory",
  async (size) => new ChunkedStage(new MemoryBackend(size), 4096),
  {
    wholeChunks: 4096,
  },
);

describe("MemoryBackend", () => {
  it("spans segment boundaries", async () => {
    const size = MEMORY_SEGMENT_SIZE + 8192;
    const backend = new MemoryBackend(size);
    expect(backend.segments.length).toBe(2);
    const data = patternBytes(8192, 5);
    await backend.writeAt(data, MEMORY_SEGMENT_SIZE - 4096);
    const back = new Uint8Array(8192);
    await backend.readAt(back, MEMORY_SEGMENT_SIZE - 4096);
    expect(Buffer.compare(back, data)).toBe(0);
    await backend.close();
  });

  it("refuses writes when read-only", async () => {
    const backend = MemoryBackend.from(patternBytes(4096, 1), { readOnly: true });
    await expect(backend.writeAt(new Uint8Array(1), 0)).rejects.toMatchObject({ code: "ERR_READ_ONLY" });
    const back = new Uint8Array(4096);
    await backend.readAt(back, 0);
    expect(Buffer.compare(back, patternBytes(4096, 1))).toBe(0);
  });

  it("serves memory it was given (over), in place, and runs onClose once closed", async () => {
    const memory = Buffer.from(patternBytes(8192, 2));
    let closed = 0;
    const backend = MemoryBackend.over([memory], { onClose: () => closed++ });
    expect(backend.size).toBe(8192);
    const back = new Uint8Array(100);
    await backend.readAt(back, 4000);
    expect(Buffer.compare(back, memory.subarray(4000, 4100))).toBe(0);
    await backend.writeAt(new Uint8Array(10).fill(9), 10);
    expect(memory[10]).toBe(9); // written where the caller can see it
    expect(backend.view(0, 8192)?.buffer).toBe(memory.buffer);
    await backend.close();
    await backend.close();
    expect(closed).toBe(1);
  });

  it("refuses given segments of the wrong size", () => {
    expect(() => MemoryBackend.over([new Uint8Array(4096), new Uint8Array(4096)])).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_ARGUMENT" }),
    );
  });
});

describe("FileBackend", () => {
  it("reads zeros past the end of a shorter file and takes its size by default", async () => {
    const file = path.join(scratch, `short-${serial++}.img`);
    fs.writeFileSync(file, Buffer.from([1, 2, 3]));
    const readOnly = FileBackend.open(file, { readOnly: true });
    expect(readOnly.size).toBe(3);
    await readOnly.close();
    const backend = FileBackend.open(file, { size: 8, readOnly: true });
    const back = new Uint8Array(8).fill(9);
    await backend.readAt(back, 0);
    expect([...back]).toEqual([1, 2, 3, 0, 0, 0, 0, 0]);
    await backend.close();
  });

  it("names the path when it cannot open", () => {
    expect(() => FileBackend.open(path.join(scratch, "missing", "x.img"))).toThrow(/missing/);
    try {
      FileBackend.open(path.join(scratch, "missing", "x.img"));
    } catch (error) {
      expect(error).toMatchObject({ code: "ERR_IO", errno: "ENOENT" });
    }
  });

  const losetup = hasLoopDevices();
  it.skipIf(!losetup)("works on a block device (a loop device), sizing it from sysfs", async () => {
    const image = path.join(scratch, `loop-${serial++}.img`);
    fs.writeFileSync(image, Buffer.alloc(4 * 1024 * 1024));
    const device = execFileSync("losetup", ["-f", "--show", image], { encoding: "utf8" }).trim();
    try {
      const backend = FileBackend.open(device);
      expect(backend.size).toBe(4 * 1024 * 1024);
      const data = patternBytes(65536, 3);
      await backend.writeAt(data, 1024 * 1024);
      await backend.sync();
      await backend.close();
      const onDisk = fs.readFileSync(image).subarray(1024 * 1024, 1024 * 1024 + 65536);
      expect(Buffer.compare(onDisk, data)).toBe(0);
      expect(() => FileBackend.open(device, { size: 8 * 1024 * 1024 })).toThrow(/smaller/);
    } finally {
      execFileSync("losetup", ["-d", device]);
    }
  });
});

describe("DirectoryBackend", () => {
  it("stores one file per chunk named by offset, creates none on read, and caps open files", async () => {
    const dir = path.join(scratch, `dir-${serial++}`);
    const backend = DirectoryBackend.open(dir, { size: 10 * 4096, chunkSize: 4096, maxOpenFiles: 2 });
    await backend.readAt(new Uint8Array(4096 * 3), 0);
    expect(fs.readdirSync(dir)).toEqual([]);
    for (const chunk of [0, 3, 7, 9]) await backend.writeAt(patternBytes(10, chunk), chunk * 4096 + 5);
    expect(fs.readdirSync(dir).sort()).toEqual(["0", "12288", "28672", "36864"]);
    expect(backend.openFiles).toBe(2);
    const back = new Uint8Array(10);
    await backend.readAt(back, 3 * 4096 + 5);
    expect(Buffer.compare(back, patternBytes(10, 3))).toBe(0);
    await backend.trim(3 * 4096, 4096);
    expect(fs.existsSync(path.join(dir, "12288"))).toBe(false);
    await backend.close();
  });
});

describe.skipIf(process.getuid?.() !== 0)("DirectoryBackend on a full disk", () => {
  it("keeps a chunk's old bytes when replacing it fails with ENOSPC, and leaves no temporary file", async () => {
    const chunkSize = 64 * 1024;
    const disk = Tmpfs.mount(512 * 1024);
    try {
      const backend = DirectoryBackend.open(path.join(disk.dir, "chunks"), {
        size: 4 * 1024 * 1024,
        chunkSize,
      });
      // The chunk's file holds its first 4 KiB only: written in place, the rest would need new blocks.
      const old = patternBytes(4096, 1);
      await backend.writeAt(old, 0);
      disk.fill();
      const update = patternBytes(chunkSize, 2);
      await expect(backend.writeAt(update, 0)).rejects.toMatchObject({
        code: "ERR_NO_SPACE",
        errno: "ENOSPC",
      });
      const back = new Uint8Array(chunkSize);
      await backend.readAt(back, 0);
      const expected = new Uint8Array(chunkSize);
      expected.set(old);
      expect(Buffer.compare(back, expected)).toBe(0);
      expect(fs.readdirSync(path.join(disk.dir, "chunks"))).toEqual(["0"]);

      fs.rmSync(path.join(disk.dir, "filler"));
      await backend.writeAt(update, 0);
      await backend.sync();
      await backend.readAt(back, 0);
      expect(Buffer.compare(back, update)).toBe(0);
      await backend.close();
    } finally {
      disk.dispose();
    }
  });
});

function hasLoopDevices(): boolean {
  try {
    execFileSync("losetup", ["--version"], { stdio: "ignore" });
    return process.getuid?.() === 0 && fs.existsSync("/dev/loop-control");
  } catch {
    return false;
  }
}
